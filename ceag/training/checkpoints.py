"""Dense checkpoints: the state dicts people save, and the published files the paper started from.

``read_state_dict`` accepts a plain state dict, one nested under ``state_dict``,
``model_state_dict``, ``model`` or ``net``, keys prefixed with ``module.`` (DataParallel) or
``_orig_mod.`` (``torch.compile``), and the authors' own CIFAR ResNet names
(``downsample_conv`` / ``downsample_bn``, ``_extra_state`` entries). Files are loaded
weights-only: a whole pickled model (``torch.save(model)``) is refused with a one-line message.

``fit_state_dict`` adapts a state dict to a model. Layouts it knows besides an exact fit:

- FairFace's released ResNet-34 (``res34_fair_align_multi_7_20190809.pt``, github.com/dchen236/FairFace):
  18 outputs, 7 race + 2 gender + 9 age. The rows of the run's target are taken and put in the
  dataset's label order, matched by label name (the paper's code does the same for race with
  ``idx = [3, 5, 1, 0, 6, 2, 4]`` in ``load_fairface_model``, src/models/utils.py).
- A torchvision ImageNet weight file (1000 outputs): the backbone is loaded and the classifier
  is left freshly initialized, so the dense model has to be trained (``dense_epochs`` > 0).

chenyaofo's ``cifar100_resnet56`` and the authors' UTKFace MobileNet-V2 (torchvision key names)
fit ``resnet56`` and ``mobilenet_v2`` exactly. Anything else that does not fit is a
``CheckpointError`` naming the first mismatching key and both shapes.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net")
PREFIXES = ("module.", "_orig_mod.")
IMAGENET_CLASSES = 1000

# FairFace's 18 outputs in order (the names are the label strings of FairFace's CSV files).
FAIRFACE_HEAD: dict[str, tuple[str, ...]] = {
    "race": ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern"),
    "gender": ("Male", "Female"),
    "age": ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "more than 70"),
}
FAIRFACE_OUTPUTS = sum(len(v) for v in FAIRFACE_HEAD.values())  # 18


class CheckpointError(ValueError):
    """A dense checkpoint cannot be used; the message is one line naming the file and the reason."""


@dataclass
class Fitted:
    """A state dict that loads strictly into the model, and how it was obtained."""

    state: dict[str, torch.Tensor]
    note: str                  # e.g. "exact fit", "FairFace 18-output head: race rows 3, 5, 1, 0, 6, 2, 4"
    needs_training: bool       # the classifier is new (ImageNet weights): train the dense model from here


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file as a flat ``{name: tensor}`` dict with normalized names.

    Raises CheckpointError for a file that is not a PyTorch checkpoint, a pickled model object,
    or a dict without tensors.
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        found = re.search(r"GLOBAL ([\w.]+)", text)
        if found:  # a class the weights-only loader does not allow: a pickled object
            raise CheckpointError(
                f"dense_checkpoint {path} holds a pickled {found.group(1)} object, not a state dict of tensors; "
                "it is not loaded (loading it would run code from the file): where the model was made, save "
                "model.state_dict() with torch.save and pass that file") from None
        reason = re.search(r"WeightsUnpickler error: ([^\n]+)", text)
        raise CheckpointError(f"dense_checkpoint {path} is not a PyTorch checkpoint (" + (
            reason.group(1).strip()[:120] if reason else "not a pickle of tensors") + ")") from None
    except OSError as err:
        raise CheckpointError(f"dense_checkpoint {path} cannot be read: {err.strerror or err}") from None
    except Exception as err:  # noqa: BLE001 - any parse failure of a foreign file means the same thing
        raise CheckpointError(f"dense_checkpoint {path} is not a PyTorch checkpoint "
                              f"({type(err).__name__}: {_first_line(str(err))})") from None
    seen = 0
    while isinstance(obj, dict) and not _is_tensor_dict(obj) and seen < 3:
        inner = next((obj[k] for k in NESTED_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj, seen = inner, seen + 1
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"dense_checkpoint {path} holds a {type(obj).__name__}, not a state dict "
                              "(a dict of parameter names to tensors)")
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        keys = ", ".join(map(str, list(obj)[:6]))
        raise CheckpointError(f"dense_checkpoint {path} has no tensors under its keys ({keys}); expected a state "
                              f"dict, or one nested under {', '.join(NESTED_KEYS)}")
    return normalize_names(tensors)


def normalize_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes shared by every key, map the authors' CIFAR ResNet names, drop ``_extra_state``."""
    for prefix in PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    out = {}
    for k, v in state.items():
        if k.endswith("._extra_state"):
            continue  # the authors' masked layers keep their masks here; no weights
        out[k.replace("downsample_conv", "downsample.0").replace("downsample_bn", "downsample.1")] = v
    return out


def classifier_name(model: nn.Module) -> str:
    """Name of the model's last linear layer in module order (its classifier)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise CheckpointError("the model has no linear classifier")
    return names[-1]


def fit_state_dict(model: nn.Module, state: dict[str, torch.Tensor], *, path: str | Path = "(given)",
                   dataset: str | None = None, target: str | None = None,
                   class_names: tuple[str, ...] | list[str] | None = None) -> Fitted:
    """Adapt ``state`` to ``model`` (see the module docstring for the layouts it knows).

    ``class_names``: the dataset's labels of ``target`` in label order (for FairFace's head; by default
    the FairFace loader's label order).
    Raises CheckpointError naming the first key that is missing, unexpected or of another shape.
    """
    own = model.state_dict()
    head = classifier_name(model)
    w, b = f"{head}.weight", f"{head}.bias"
    state = dict(state)
    note, needs_training = "exact fit", False
    if w in state and w in own and state[w].dim() == 2 and state[w].shape[0] != own[w].shape[0]:
        rows = state[w].shape[0]
        if dataset == "fairface" and rows == FAIRFACE_OUTPUTS and target in FAIRFACE_HEAD:
            labels = class_names if class_names is not None else dataset_labels(dataset, target)
            idx = fairface_rows(target, labels, path)
            state[w] = state[w][idx]
            if b in state:
                state[b] = state[b][idx]
            note = f"FairFace 18-output head: {target} rows {', '.join(map(str, idx))}"
        elif rows == IMAGENET_CLASSES:
            state[w], note, needs_training = own[w], "ImageNet backbone; new classifier", True
            if b in state and b in own:
                state[b] = own[b]
    _check_fit(own, state, path)
    return Fitted({k: state[k] for k in own}, note, needs_training)


def fairface_rows(target: str, class_names, path) -> list[int]:
    """Rows of FairFace's 18-output head for ``target``, in the order of ``class_names``."""
    names = FAIRFACE_HEAD[target]
    offset = sum(len(FAIRFACE_HEAD[a]) for a in list(FAIRFACE_HEAD)[:list(FAIRFACE_HEAD).index(target)])
    labels = list(class_names)
    unknown = [n for n in labels if n not in names]
    if unknown or len(labels) != len(names):
        raise CheckpointError(f"dense_checkpoint {path}: FairFace's {target} outputs are {', '.join(names)}; the "
                              f"dataset's {target} labels {', '.join(labels)} do not match them")
    return [offset + names.index(n) for n in labels]


def _check_fit(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], path) -> None:
    for k, v in own.items():
        if k not in state and k.endswith(".num_batches_tracked"):
            state[k] = v  # files from before PyTorch 0.4.1 lack this counter (unused with a fixed momentum)
        if k not in state:
            raise CheckpointError(f"dense_checkpoint {path} does not fit the model: key {k} (shape "
                                  f"{_shape(v)}) is missing from the checkpoint")
        if state[k].shape != v.shape:
            raise CheckpointError(f"dense_checkpoint {path} does not fit the model: key {k} has shape "
                                  f"{_shape(state[k])} in the checkpoint and {_shape(v)} in the model")
    extra = [k for k in state if k not in own]
    if extra:
        raise CheckpointError(f"dense_checkpoint {path} does not fit the model: key {extra[0]} (shape "
                              f"{_shape(state[extra[0]])}) is in the checkpoint but not in the model")


def dense_checkpoint_for(cfg, data) -> Fitted:
    """Read and fit ``cfg.dense_checkpoint`` to the run's model on ``data`` (a GroupedDataset).

    Raises CheckpointError when the file cannot be used, including an ImageNet file with
    ``dense_epochs`` 0 (its new classifier would be untrained). When the run's images are small
    enough to switch the model to its small-input stem (at most ``models.SMALL_INPUT`` pixels) and
    the file fits the model at larger images, the message says which image size keeps the stem.
    """
    from ceag.training.models import build_model

    model = build_model(cfg.model, data.input_shape, data.num_classes, cfg.seed)
    state = read_state_dict(cfg.dense_checkpoint)
    try:
        fitted = fit_state_dict(model, state, path=cfg.dense_checkpoint, dataset=cfg.dataset, target=cfg.target)
    except CheckpointError as err:
        hint = _stem_hint(cfg, data, state)
        if hint is None:
            raise
        raise CheckpointError(f"{err}; {hint}") from None
    if fitted.needs_training and cfg.dense_epochs == 0:
        raise CheckpointError(f"dense_checkpoint {cfg.dense_checkpoint} has an ImageNet classifier "
                              f"({IMAGENET_CLASSES} outputs) and the task has {data.num_classes} classes: set "
                              "dense_epochs > 0 to train a new classifier from these weights")
    return fitted


def _stem_hint(cfg, data, state: dict[str, torch.Tensor]) -> str | None:
    """Why a checkpoint that fits the model at larger images does not fit it at the run's image size, or None.

    Images at most ``models.SMALL_INPUT`` pixels wide switch the ResNets (and MobileNet-V2's stride)
    to a small-input stem; a checkpoint trained on larger images (the ImageNet stem: 7x7 stride-2
    convolution and max-pooling) fits only a model built for larger images.
    """
    from ceag.training.models import SMALL_INPUT, build_model

    shape = tuple(data.input_shape)
    if len(shape) != 3 or shape[-1] > SMALL_INPUT:
        return None
    large = SMALL_INPUT + 1
    try:
        fit_state_dict(build_model(cfg.model, (shape[0], large, large), data.num_classes, cfg.seed), state,
                       path=cfg.dense_checkpoint, dataset=cfg.dataset, target=cfg.target)
    except CheckpointError:
        return None  # it does not fit at any image size: the shapes above say enough
    return (f"at {shape[-1]} px {cfg.model} uses its small-input stem (images of at most {SMALL_INPUT} px), while "
            f"this checkpoint was made with the ImageNet stem: images of {large} px or more keep the ImageNet stem "
            f"it needs (--image-size {large} or more, e.g. the size the checkpoint was trained at)")


def dataset_labels(dataset: str, target: str) -> tuple[str, ...] | None:
    """The dataset's label names of ``target`` in label order, where a published head needs them (FairFace)."""
    if dataset != "fairface":
        return None
    from ceag.datasets import faces as loader

    return {"race": loader.FAIRFACE_RACES, "gender": loader.FAIRFACE_GENDERS, "age": loader.FAIRFACE_AGES}[target]


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(map(str, t.shape)) + ")"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else "unreadable"


def _is_tensor_dict(obj: dict) -> bool:
    return bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


__all__ = ["CheckpointError", "Fitted", "dense_checkpoint_for", "read_state_dict", "fit_state_dict", "classifier_name",
           "FAIRFACE_HEAD", "normalize_names", "dataset_labels"]
