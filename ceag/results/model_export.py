"""A run's model as a file: the reported model rebuilt without its pruned channels, kept beside the run and
exported for use elsewhere.

``small_model`` rebuilds a masked model (``ceag.training.structured.rebuild``, which compares the logits of both
models and raises when they differ). With channel-group pruning ("channels", "channels_global") every pruned
channel goes. "structured" masks each layer on its own: only a channel pruned in every layer of its group, and
outputting exactly zero there (a masked batch norm, or a zero bias), can go; the others stay and keep outputting
their constant, so such a model mostly keeps its size. Unstructured kinds remove nothing: the model keeps its
size, its masked batch norms turned into plain ones that compute the same. The classifier's outputs are the
classes and are never removed.

A run of a structured kind keeps its small model as a state dict (``SMALL_MODEL``) and the ``ShrinkPlan`` that
re-creates its architecture from ``build_model`` (``SHRINK_PLAN``): never a pickled module.

``export_model`` writes one file: {"state_dict", "plan", "model", "num_classes", "input_shape", "class_names",
"group_names", "run_id"} of tensors and plain types, which ``torch.load(path, weights_only=True)`` reads and
``load_exported`` turns back into a module; for an unstructured run, the masked full-size model. An ``.onnx``
file holds the same model as ONNX (needs the onnx package).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ceag.config.run_config import RunConfig
from ceag.config.vocabulary import STRUCTURED_PRUNING
from ceag.results.files import load_torch, save_torch, write_json
from ceag.results.layout import MODEL, SHRINK_PLAN, SMALL_MODEL, SUMMARY, resolve_results, run_dir
from ceag.results.predictions import RunNotFound
from ceag.results.record import read_config
from ceag.training.models import build_model
from ceag.training.pruning import prunable_layers, restore_masked_bn
from ceag.training.structured import ShrinkPlan, dead_output, dependency_graph, load_rebuilt, rebuild, removal_plan

EXPORT_KEYS = ("state_dict", "plan", "model", "num_classes", "input_shape", "class_names", "group_names", "run_id")


def small_model(model: nn.Module, masks: Mapping[str, torch.Tensor], input_shape: tuple[int, ...],
                kind: str) -> tuple[nn.Module, ShrinkPlan]:
    """``model`` (masked: pruned weights zero, masked batch norms in sync with ``masks``; left unchanged) rebuilt
    without the channels its pruning ``kind`` lets go, in eval mode, with its plan. ``masks``: the pruner's
    (``{layer: bool mask shaped like its weight}``). Raises ValueError when the rebuilt model's logits differ
    from the masked model's, or the masks do not fit."""
    shape = tuple(int(d) for d in input_shape)
    if kind in STRUCTURED_PRUNING:
        last = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))][-1]
        chosen = {n: m for n, m in masks.items() if n != last}  # the classes stay
        if kind == "structured":
            chosen = exact_masks(model, chosen, shape)
    else:
        chosen = {}  # every group dense: nothing removed
    plan = removal_plan(model, chosen, shape)
    return rebuild(model, chosen, shape, plan=plan), plan


def exact_masks(model: nn.Module, masks: Mapping[str, torch.Tensor],
                input_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """``masks`` with every pruned output row (all False) that would not output exactly zero in eval mode (its
    batch norm's shift, its bias) marked kept: it stays in the rebuilt model, outputting its constant, so
    ``removal_plan`` takes out only the channels whose removal is exact."""
    dg = dependency_graph(model, input_shape)
    out = {}
    for name, mask in masks.items():
        rows = mask.reshape(mask.shape[0], -1).any(1)
        idxs = [int(i) for i in torch.nonzero(~rows).flatten()]
        if idxs:
            stays = torch.zeros_like(rows)
            stays[idxs] = (dead_output(model, dg, name, idxs) != 0).to(stays.device)
            mask = mask | stays.view(-1, *([1] * (mask.dim() - 1)))
        out[name] = mask
    return out


def save_small(folder: Path, small: nn.Module, plan: ShrinkPlan) -> None:
    """Keep the small model in a run folder: its state dict (``SMALL_MODEL``) and plan (``SHRINK_PLAN``)."""
    save_torch(folder / SMALL_MODEL, {k: v.detach().cpu() for k, v in small.state_dict().items()})
    write_json(folder / SHRINK_PLAN, plan.to_json())


def masks_from_weights(model: nn.Module, cfg: RunConfig) -> dict[str, torch.Tensor]:
    """The masks of a pruned model loaded from a state dict, read off its zero weights (a weight pruned is
    exactly zero), with its masked batch norms restored when the run used them."""
    layers = prunable_layers(model, dense_first_conv=cfg.dense_first_conv, dense_last_layer=cfg.dense_last_layer)
    if cfg.masked_bn:
        restore_masked_bn(model, dense_first_conv=cfg.dense_first_conv, dense_last_layer=cfg.dense_last_layer)
    return {n: m.weight.detach() != 0 for n, m in layers.items()}


def export_model(results: str | os.PathLike | None, run_id: str, out: str | os.PathLike) -> Path:
    """Write run ``run_id``'s model to ``out`` (``.pt``, ``.pth``: the dict of ``EXPORT_KEYS``; ``.onnx``: ONNX)
    and return the path. A structured run's small model (its saved one, else rebuilt from ``model.pt``: a run
    derived from another, NFT+ES, CEAG+VS, or one made before small models were kept); an unstructured run's
    masked full-size model. Raises RunNotFound for a run that has not finished here, ValueError for another
    suffix, for ONNX without the onnx package, or when the model cannot be rebuilt exactly."""
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix not in (".pt", ".pth", ".onnx"):
        raise ValueError(f"a model is written as FILE.pt (a state dict and its plan, for load_exported) or "
                         f"FILE.onnx, not {str(out)!r}")
    if suffix == ".onnx":
        _need_onnx()
    payload = exported(results, run_id)
    if suffix == ".onnx":
        _write_onnx(load_exported_payload(payload), payload, path)
    else:
        save_torch(path, payload)
    return path


def exported(results: str | os.PathLike | None, run_id: str) -> dict[str, Any]:
    """The dict ``export_model`` writes (``EXPORT_KEYS``), for run ``run_id`` of ``results``."""
    folder = run_dir(resolve_results(results), run_id)
    if not (folder / SUMMARY).is_file() or not (folder / MODEL).is_file():
        raise RunNotFound(f"run {run_id} has no finished model in {folder.parent}")
    cfg = read_config(folder)
    summary = json.loads((folder / SUMMARY).read_text())
    if (folder / SMALL_MODEL).is_file() and (folder / SHRINK_PLAN).is_file():
        state = load_torch(folder / SMALL_MODEL)
        plan = ShrinkPlan.from_json((folder / SHRINK_PLAN).read_text())
    else:
        shape = _input_shape(cfg, summary, results)
        weights = load_torch(folder / MODEL)
        model = build_model(cfg.model, shape, _classes(weights), seed=0)
        model.load_state_dict(weights)
        small, plan = small_model(model, masks_from_weights(model, cfg), shape, cfg.pruning)
        state = {k: v.detach().cpu() for k, v in small.state_dict().items()}
    return {"state_dict": state, "plan": plan.to_json(), "model": cfg.model,
            "num_classes": _classes(state), "input_shape": list(plan.input_shape),
            "class_names": [str(c) for c in summary.get("class_names") or []],
            "group_names": [str(g) for g in summary.get("group_names") or []], "run_id": run_id}


def load_exported(path: str | os.PathLike) -> nn.Module:
    """The model in a file ``export_model`` wrote (``.pt``), in eval mode on the CPU. Raises ValueError when the
    file is not one."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is "not an exported model"
        raise ValueError(f"{path} is not a model exported by ceag (torch.load failed: {err})") from err
    return load_exported_payload(payload, str(path))


def load_exported_payload(payload: Any, where: str = "the export") -> nn.Module:
    """``load_exported`` of the dict itself."""
    if not isinstance(payload, dict) or set(EXPORT_KEYS) - set(payload):
        have = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{where} is not a model exported by ceag: it needs keys {', '.join(EXPORT_KEYS)}, "
                         f"has {have}")
    return load_rebuilt(payload["model"], int(payload["num_classes"]), payload["plan"], payload["state_dict"])


def _classes(state: Mapping[str, torch.Tensor]) -> int:
    """The classes of a model's state dict: the outputs of its last conv or linear weight (every model here
    registers its classifier last)."""
    return int([v for k, v in state.items() if k.endswith("weight") and v.dim() >= 2][-1].shape[0])


def _input_shape(cfg: RunConfig, summary: dict, results) -> tuple[int, ...]:
    """One sample's shape: recorded with the run's footprint, else read off its data."""
    recorded = (summary.get("footprint") or {}).get("input_shape")
    if recorded:
        return tuple(int(d) for d in recorded)
    from ceag.datasets.loading import load_dataset
    from ceag.results.layout import cache_dir

    return tuple(load_dataset(cfg, cache_dir(resolve_results(results))).input_shape)


def _need_onnx() -> None:
    import importlib.util

    missing = [p for p in ("onnx", "onnxscript") if importlib.util.find_spec(p) is None]
    if missing:
        raise ValueError(f"ONNX export needs the {' and '.join(missing)} package{'s' * (len(missing) > 1)}, not "
                         "installed here (pip install onnx onnxscript); FILE.pt exports without them")


def _write_onnx(model: nn.Module, payload: dict, path: Path) -> None:
    """One self-contained ONNX file (weights inside) taking any batch size: input "input", output "logits"."""
    x = torch.zeros((2, *payload["input_shape"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["logits"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False)
    except Exception as err:  # noqa: BLE001 - the exporter raises many kinds; the .pt export stays available
        raise ValueError(f"the model of run {payload['run_id']} does not export to ONNX cleanly ({err}); "
                         "FILE.pt exports it") from err
