"""Structured pruning that removes what it prunes: coupled channel groups, their masks, and the smaller model.

A channel can only be taken out when every layer reading or writing it loses it too: its batch norm, the next
layer's input columns and, through a residual addition or a depthwise convolution, the other convolutions added
to it or sharing it. A **channel group** is one of torch-pruning's pruning groups (its dependency graph traces one
forward pass): the conv/linear layers whose output rows are the channels (*producers*), their batch norms, and
the conv/linear layers reading them (*consumers*). Masks have ``MagnitudePruner.masks``' format
(``{layer name: bool tensor shaped like the weight}``, whole output rows False); ``channel_masks`` gives all
producers of a group the same rows, so a pruned channel is dead in the whole group and ``rebuild`` removes it.

A group with a producer outside the prunable layers (the first conv, the last layer) stays **dense**: none of its
members loses a channel. A ResNet's first-stage stream is the stem's output, added in every block of the stage,
so with the stem dense it keeps its width (the blocks' inner channels are still pruned): zeroing those rows of
the blocks' second convolutions while the stem's channel flows through the identity would cost accuracy and
remove nothing. A dense layer's input channels follow their producers: the classifier loses the columns of
channels pruned before it, and is never pruned by its own weights.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import nn

from ceag.training.models import build_model
from ceag.training.pruning import ROUNDING, MaskedBatchNorm2d, count_to_prune, zero_dead_channels

MODES = ("layerwise", "global")
_OUT_FNS = (tp.prune_conv_out_channels, tp.prune_linear_out_channels, tp.prune_depthwise_conv_out_channels)
_IN_FNS = (tp.prune_conv_in_channels, tp.prune_linear_in_channels)


@dataclass(frozen=True)
class ChannelGroup:
    """Channels pruned together; ``name``: the first producer. ``producers``: conv/linear layers whose output rows
    (weight dim 0) are the ``channels`` channels; ``consumers``: layers reading them; ``batch_norms``: theirs;
    ``dense_members``: producers outside the prunable layers (the group is then never pruned). Module order."""

    name: str
    channels: int
    producers: tuple[str, ...]
    consumers: tuple[str, ...] = ()
    batch_norms: tuple[str, ...] = ()
    dense_members: tuple[str, ...] = ()

    @property
    def prunable(self) -> bool:
        return not self.dense_members


def channel_groups(model: nn.Module, layers: Iterable[str], input_shape: tuple[int, ...]) -> list[ChannelGroup]:
    """The channel groups of ``model`` for inputs of ``input_shape`` (one sample: (C, H, W) or (features,)).

    ``layers``: names of the prunable conv/linear layers (``MagnitudePruner.layers``); every other conv/linear
    producer makes its group dense. Groups come in module order of their first producer. Traces one forward
    pass on zeros (no random numbers drawn; the model's training mode is restored).
    Raises ValueError for a name that is not a conv/linear layer reached by the forward pass, or a coupling
    other than one-to-one channel indices among producers (e.g. a concatenation).
    """
    return _groups(model, dependency_graph(model, input_shape), set(layers))


def channel_masks(model: nn.Module, groups: list[ChannelGroup], sparsity: float, *, mode: str = "layerwise",
                  rounding: str = "round", masks: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Keep-masks pruning a fraction ``sparsity`` in [0, 1) of the channels of the prunable ``groups``.

    A channel's score is the L2 norm of its output rows over the group's producers, sqrt(sum_m ||W_m[c] *
    mask_m[c]||^2): torch-pruning's group magnitude (p = 2, summed over members) on output rows only, so a
    one-layer group ranks as ``MagnitudePruner``'s structured mode and a pruned channel scores exactly 0.
    ``mode="layerwise"``: each group loses ``round(sparsity * channels)`` (or ceil, ``rounding``), at most all
    but one. ``mode="global"``: ``round(sparsity * total)`` channels of all prunable groups, the lowest by
    score / sqrt(mean over the group's channels of score^2) (share of the group's squared weight relative to an
    even split; invariant to rescaling a group, as batch norm allows); each group keeps its best channel.
    Ties: lower index, earlier group. ``masks``: the current masks (default all True); a row masked there stays
    masked. Returns ``{layer: mask shaped like its weight}`` for every prunable producer (all True in dense
    groups). Raises ValueError for a bad sparsity, mode, rounding, or masks that do not fit."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be a fraction in [0, 1), not {sparsity!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if rounding not in ROUNDING:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDING)}, not {rounding!r}")
    weights = {n: _layer(model, n).weight.detach() for g in groups for n in g.producers if n not in g.dense_members}
    current = _check_masks(weights, masks)
    rows: dict[str, torch.Tensor] = {}  # group name -> (channels,) keep
    scores, alive = {}, {}
    for g in groups:
        if not g.prunable:
            continue
        with torch.no_grad():
            sq = sum(_rows(weights[n] * current[n]).pow(2).sum(1).double() for n in g.producers)
        scores[g.name] = torch.as_tensor(sq).sqrt().cpu()
        alive[g.name] = torch.stack([_rows(current[n]).any(1) for n in g.producers]).any(0).cpu()
    if mode == "layerwise":
        for g in groups:
            if g.prunable:
                n_prune = min(count_to_prune(sparsity, g.channels, rounding), g.channels - 1)
                rows[g.name] = _drop_lowest(scores[g.name], alive[g.name], n_prune)
    else:
        rows.update(_global_rows(scores, alive, sparsity, rounding))
    out = {}
    for g in groups:
        for n in (p for p in g.producers if p not in g.dense_members):
            keep = rows[g.name] if g.prunable else torch.ones(g.channels, dtype=torch.bool)
            shape = (-1,) + (1,) * (current[n].dim() - 1)
            out[n] = keep.to(current[n].device).view(shape).expand_as(current[n]) & current[n]
    return out


def _drop_lowest(score: torch.Tensor, alive: torch.Tensor, n_prune: int) -> torch.Tensor:
    key = torch.where(alive, score, torch.full_like(score, -1.0))  # dead channels first: cumulative
    keep = torch.ones_like(alive)
    keep[torch.sort(key, stable=True).indices[:n_prune]] = False
    return keep & alive


def _global_rows(scores: dict, alive: dict, sparsity: float, rounding: str) -> dict[str, torch.Tensor]:
    names = list(scores)
    total = sum(len(scores[n]) for n in names)
    dead = sum(int((~alive[n]).sum()) for n in names)
    keys, owners = [], []
    for n in names:
        rms = scores[n].pow(2).mean().sqrt()
        norm = scores[n] / rms if rms > 0 else torch.zeros_like(scores[n])
        candidate = alive[n].clone()
        if candidate.any():  # the group's best live channel stays
            candidate[torch.where(alive[n], scores[n], torch.full_like(scores[n], -1.0)).argmax()] = False
        keys.append(torch.where(candidate, norm, torch.full_like(norm, float("inf"))))
        owners.append(candidate)
    ok = torch.cat(owners)
    n_new = max(0, min(count_to_prune(sparsity, total, rounding) - dead, int(ok.sum())))
    drop = torch.zeros_like(ok)
    drop[torch.sort(torch.cat(keys), stable=True).indices[:n_new]] = True
    return {n: alive[n] & ~d for n, d in zip(names, drop.split([len(scores[n]) for n in names]), strict=True)}


# -- rebuilding --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShrinkPlan:
    """How a rebuilt model differs from the dense architecture, enough to re-create it from a state dict.
    ``input_shape``: one sample's, as traced; ``removed``: group name -> output channels removed (the dense
    model's numbering, ascending); ``widths``: every conv/linear layer's output channels after removal."""

    input_shape: tuple[int, ...]
    removed: dict[str, tuple[int, ...]] = field(default_factory=dict)
    widths: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"input_shape": list(self.input_shape), "removed": {k: list(v) for k, v in self.removed.items()},
                "widths": dict(self.widths)}

    @classmethod
    def from_json(cls, data: Mapping | str) -> ShrinkPlan:
        """From ``to_json()``'s dict or its JSON text. Raises ValueError when a field is missing or malformed."""
        d = json.loads(data) if isinstance(data, str) else data
        try:
            return cls(tuple(int(x) for x in d["input_shape"]),
                       {str(k): tuple(int(i) for i in v) for k, v in d["removed"].items()},
                       {str(k): int(v) for k, v in d["widths"].items()})
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"not a shrink plan: {e!r}") from e


def removal_plan(model: nn.Module, masks: Mapping[str, torch.Tensor], input_shape: tuple[int, ...]) -> ShrinkPlan:
    """Which channels ``rebuild`` removes: in each group whose producers are all in ``masks``, every channel whose
    rows are False in all producers (one stays if all are). Raises ValueError when masks do not fit, a masked
    weight is non-zero, or removal is not exact: a dead channel must output exactly 0 in eval mode (ReLU and
    ReLU6 keep 0 at 0). After a batch norm it outputs beta + gamma (bias - running_mean) / sqrt(var + eps)
    unless the batch norm is masked (``MagnitudePruner(masked_bn=True)``); without one, its bias must be 0
    (``zero_pruned_biases_``)."""
    weights = {n: _layer(model, n).weight.detach() for n in masks}
    current = _check_masks(weights, masks)
    for n, w in weights.items():
        if w.masked_fill(current[n], 0).any():
            raise ValueError(f"layer {n!r} has non-zero weights where its mask is False: apply the masks first "
                             "(MagnitudePruner.apply_)")
    dg = dependency_graph(model, input_shape)
    groups = _groups(model, dg, set(masks))
    removed, problems = {}, []
    for g in (g for g in groups if g.prunable):
        dead = torch.stack([~_rows(current[n]).any(1) for n in g.producers]).all(0).cpu()
        idxs = [int(i) for i in torch.nonzero(dead).flatten()]
        if len(idxs) == g.channels:
            idxs = idxs[1:]  # one channel stays (it outputs zero)
        if not idxs:
            continue
        for n in g.producers:
            const = dead_output(model, dg, n, idxs)
            if (const != 0).any():
                problems.append(f"{n}: {int((const != 0).sum())} of {len(idxs)} dead channels output up to "
                                f"{float(const.abs().max()):.3g}")
        removed[g.name] = tuple(idxs)
    if problems:
        raise ValueError("cannot remove dead channels exactly, they do not output zero in eval mode ("
                         + "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "") + "): prune with "
                         "masked batch norm (MagnitudePruner(..., masked_bn=True)) and zero the biases of pruned "
                         "channels in layers without a batch norm after them (zero_pruned_biases_)")
    cut = {n: len(removed.get(g.name, ())) for g in groups for n in g.producers}
    widths = {n: _out_channels(m) - cut.get(n, 0) for n, m in model.named_modules()
              if isinstance(m, (nn.Conv2d, nn.Linear))}
    return ShrinkPlan(tuple(int(x) for x in input_shape), removed, widths)


def rebuild(model: nn.Module, masks: Mapping[str, torch.Tensor], input_shape: tuple[int, ...], *,
            check: bool = True, rtol: float = 1e-4, plan: ShrinkPlan | None = None) -> nn.Module:
    """A new, physically smaller copy of the masked ``model`` (left unchanged), in eval mode: the channels of
    ``plan`` (default: ``removal_plan(model, masks, input_shape)``, made once) removed by torch-pruning. Masked
    batch norms become plain ones with zero scale and shift in dead channels (exact in eval mode; kept for those
    that could not go), so its state dict loads into ``apply_plan(fresh model, plan)``. ``check``: compare both
    models' eval logits on 2 seeded random inputs; raise ValueError when they differ by more than ``rtol`` x
    max(1, largest logit). Raises ValueError as ``removal_plan`` does."""
    plan = plan if plan is not None else removal_plan(model, masks, input_shape)
    small = copy.deepcopy(model)
    small.zero_grad(set_to_none=True)
    _bake_masked_bn(small)
    apply_plan(small, plan)
    small.eval()
    if check:
        ref = next(model.parameters())
        x = torch.randn((2, *input_shape), generator=torch.Generator().manual_seed(0)).to(ref.device, ref.dtype)
        was_training = model.training
        model.eval()
        with torch.no_grad():
            want, got = model(x), small(x)
        model.train(was_training)
        err, scale = float((want - got).abs().max()), max(1.0, float(want.abs().max()))
        if err > rtol * scale:
            raise ValueError(f"the rebuilt model's logits differ from the masked model's by {err:.3g} "
                             f"(largest logit {scale:.3g}, rtol {rtol:g})")
    return small


def apply_plan(model: nn.Module, plan: ShrinkPlan) -> nn.Module:
    """Remove ``plan``'s channels from ``model`` in place (a dense model of the architecture the plan was made
    from, e.g. a fresh ``build_model``) and return it. Raises ValueError when the plan does not fit the model."""
    dg = dependency_graph(model, plan.input_shape)
    for name, idxs in plan.removed.items():
        module = _layer(model, name)
        if idxs and max(idxs) >= _out_channels(module):
            raise ValueError(f"the plan removes channel {max(idxs)} of {name!r}, which has {_out_channels(module)}: "
                             "the plan was made for another architecture, or was applied already")
        fn = tp.prune_conv_out_channels if isinstance(module, nn.Conv2d) else tp.prune_linear_out_channels
        with torch.no_grad():
            dg.get_pruning_group(module, fn, list(idxs)).prune(record_history=False)
    widths = {n: _out_channels(m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    if widths != plan.widths:
        wrong = sorted(n for n in set(widths) | set(plan.widths) if widths.get(n) != plan.widths.get(n))
        raise ValueError(f"after the plan, layer widths differ from the plan's at {', '.join(wrong[:5])}")
    return model


def load_rebuilt(model_name: str, num_classes: int, plan: ShrinkPlan | Mapping | str,
                 state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """A rebuilt model from its plan (ShrinkPlan, ``to_json()`` or JSON text) and state dict: a fresh ``build_model(
    model_name, plan.input_shape, num_classes, seed=0)``, ``apply_plan``, the state dict loaded strictly; eval
    mode. Raises ValueError when the plan or state dict does not fit."""
    if not isinstance(plan, ShrinkPlan):
        plan = ShrinkPlan.from_json(plan)
    model = apply_plan(build_model(model_name, plan.input_shape, num_classes, seed=0), plan)
    try:
        model.load_state_dict(dict(state_dict), strict=True)
    except RuntimeError as e:
        raise ValueError(f"the state dict does not fit the rebuilt {model_name}: {e}") from e
    return model.eval()


@torch.no_grad()
def zero_pruned_biases_(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Zero the bias of every channel whose weight rows are all False in ``masks`` (in place)."""
    for name, mask in masks.items():
        layer = _layer(model, name)
        if layer.bias is not None:
            layer.bias.mul_(_rows(mask).any(1).to(layer.bias))


# -- helpers -----------------------------------------------------------------------------------
def dependency_graph(model: nn.Module, input_shape: tuple[int, ...]) -> tp.DependencyGraph:
    if not input_shape or any(int(d) < 1 for d in input_shape):
        raise ValueError(f"input_shape must be one sample's shape, e.g. (3, 32, 32), not {input_shape!r}")
    ref = next(model.parameters())
    x = torch.zeros((1, *(int(d) for d in input_shape)), device=ref.device, dtype=ref.dtype)
    was_training = model.training
    try:
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(model, example_inputs=x, verbose=False)
    except RuntimeError as e:
        raise ValueError(f"the model does not run on inputs of shape {tuple(input_shape)}: {e}") from e
    finally:
        model.train(was_training)


def _groups(model: nn.Module, dg: tp.DependencyGraph, prunable: set[str]) -> list[ChannelGroup]:
    names = {m: n for n, m in model.named_modules()}
    for n in sorted(n for n in prunable if _layer(model, n) not in dg.module2node):
        raise ValueError(f"layer {n!r} is not reached by the model's forward pass")
    groups, seen = [], set()
    order = {n: i for i, (n, _) in enumerate(model.named_modules())}
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)) or name in seen or module not in dg.module2node:
            continue
        fn = tp.prune_conv_out_channels if isinstance(module, nn.Conv2d) else tp.prune_linear_out_channels
        channels = _out_channels(module)
        producers, consumers, norms = set(), set(), set()
        for item in dg.get_pruning_group(module, fn, list(range(channels))):
            target, handler = item.dep.target.module, item.dep.handler
            member = names.get(target)
            if member is None:
                continue
            if isinstance(target, (nn.Conv2d, nn.Linear)) and handler in _OUT_FNS:
                if list(item.idxs) != list(item.root_idxs) or _out_channels(target) != channels:
                    raise ValueError(f"layers {name!r} and {member!r} are coupled other than channel by channel "
                                     "(e.g. by a concatenation), which is not supported")
                producers.add(member)
            elif isinstance(target, (nn.Conv2d, nn.Linear)) and handler in _IN_FNS:
                consumers.add(member)
            elif isinstance(target, nn.modules.batchnorm._BatchNorm):
                norms.add(member)
        seen |= producers
        ordered = tuple(sorted(producers, key=order.__getitem__))
        groups.append(ChannelGroup(ordered[0], channels, ordered, tuple(sorted(consumers, key=order.__getitem__)),
                                   tuple(sorted(norms, key=order.__getitem__)),
                                   tuple(n for n in ordered if n not in prunable)))
    return groups


def dead_output(model: nn.Module, dg: tp.DependencyGraph, name: str, idxs: list[int]) -> torch.Tensor:
    """Eval-mode output of producer ``name``'s channels ``idxs`` (zero weight rows) after its batch norm, if any."""
    layer = _layer(model, name)
    index = torch.tensor(idxs, device=layer.weight.device)
    bias = layer.bias.detach()[index] if layer.bias is not None else torch.zeros(len(idxs), device=index.device)
    outputs = dg.module2node[layer].outputs
    bn = outputs[0].module if len(outputs) == 1 else None
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
        return bias.cpu()
    alive = getattr(bn, "alive_channels", None)
    factor = alive[index].to(bias) if isinstance(alive, torch.Tensor) else torch.ones_like(bias)
    beta = bn.bias.detach()[index] if bn.affine else torch.zeros_like(bias)
    if bn.running_mean is None or bn.running_var is None:
        return (factor * beta).cpu()  # batch statistics of a constant channel: x_hat = 0
    gamma = bn.weight.detach()[index] if bn.affine else torch.ones_like(bias)
    x_hat = (bias - bn.running_mean[index]) / torch.sqrt(bn.running_var[index] + bn.eps)
    return (factor * (gamma * x_hat + beta)).cpu()


def _bake_masked_bn(model: nn.Module) -> None:
    """Turn masked batch norms back into plain ones with zero scale and shift in dead channels."""
    for name, bn in model.named_modules():
        alive = getattr(bn, "alive_channels", None)
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or not isinstance(alive, torch.Tensor):
            continue
        if not bool(alive.all()):
            if not bn.affine:
                raise ValueError(f"batch norm {name!r} is masked but has no scale and shift to zero")
            with torch.no_grad():
                bn.weight.mul_(alive.to(bn.weight))
                bn.bias.mul_(alive.to(bn.bias))
        del bn._buffers["alive_channels"]
        bn.__dict__.pop("all_alive", None)
        for key in [k for k, hook in bn._forward_hooks.items() if hook is zero_dead_channels]:
            del bn._forward_hooks[key]
        if type(bn) is MaskedBatchNorm2d:
            plain: nn.Module = bn
            plain.__class__ = nn.BatchNorm2d


def _check_masks(weights: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor] | None) -> dict:
    if masks is None:
        return {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    if set(masks) != set(weights):
        raise ValueError(f"masks do not match the prunable layers (extra: {sorted(set(masks) - set(weights))[:5]}, "
                         f"missing: {sorted(set(weights) - set(masks))[:5]})")
    out = {}
    for n, m in masks.items():
        if tuple(m.shape) != tuple(weights[n].shape):
            raise ValueError(f"mask of {n!r} has shape {tuple(m.shape)}, its weight {tuple(weights[n].shape)}")
        out[n] = m.to(weights[n].device, torch.bool)
    return out


def _layer(model: nn.Module, name: str) -> nn.Conv2d | nn.Linear:
    try:
        module = model.get_submodule(name)
    except AttributeError as e:
        raise ValueError(f"the model has no layer {name!r}") from e
    if not isinstance(module, (nn.Conv2d, nn.Linear)):
        raise ValueError(f"layer {name!r} is a {type(module).__name__}, not a Conv2d or Linear")
    return module


def _rows(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _out_channels(module: nn.Conv2d | nn.Linear) -> int:
    return int(module.out_channels if isinstance(module, nn.Conv2d) else module.out_features)
