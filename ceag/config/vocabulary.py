"""The words every layer shares: method keys and their labels, models, pruning modes and other choices.

Method names are one set of lowercase keys (``nft``, ``nft_es``, ``el_rb``, ``ceag``, ``ceag_vs``, ``fairgrape``)
used in code, the store and the UI; ``METHOD_LABELS`` is the one place that says how each is written for people.
"""

from __future__ import annotations

MODELS = ("mlp", "cnn", "cnn_small", "cnn_fc", "resnet18", "resnet34", "mobilenet_v2", "resnet20", "resnet56")


# Models without batch norm (ceag/models.py). Batch norm cannot normalize one sample in training
# mode, so every other model needs training batches of at least 2.
BATCH_NORM_FREE_MODELS = ("mlp",)


METHODS = ("nft", "nft_es", "el_rb", "ceag", "ceag_vs", "fairgrape")


# Methods whose results depend on the tolerance; for the others it is not part of the run.
TOLERANCE_METHODS = ("ceag", "ceag_vs")


# Methods whose dual step can read held-out data (constraint_data="val").
HELDOUT_METHODS = ("ceag", "ceag_vs")


CONSTRAINT_DATA = ("train", "val")


# Methods that change the training objective (the others are plain fine-tuning).
MITIGATING_METHODS = ("el_rb", "ceag")


# What a pruning event removes: single weights per layer (unstructured) or over all layers (global); or whole
# output channels. "structured" ranks each layer's rows alone, so coupled layers (a residual stream, a depthwise
# convolution, a batch norm left unmasked) disagree and its masks mostly cannot be taken out of the model; kept as
# it is so its runs keep their ids. "channels" (each channel group loses the same fraction) and "channels_global"
# (one ranking over all groups) prune the channel groups of ceag/training/structured.py, which a run's end
# removes from the model it reports (ceag/results/model_export.py).
PRUNING = ("unstructured", "global", "structured", "channels", "channels_global")


# Kinds whose masks are whole output channels: a run of one ends with its model rebuilt without them.
STRUCTURED_PRUNING = ("structured", "channels", "channels_global")


# Kinds that prune channel groups (``channel_masks``): the mode each one names.
CHANNEL_PRUNING = {"channels": "layerwise", "channels_global": "global"}


# Which weights a pruning event keeps (ceag/training/criteria.py): |w|, SNIP's connection sensitivity on
# training batches, SynFlow's data-free synaptic flow.
CRITERIA = ("magnitude", "snip", "synflow")


CRITERION_LABELS = {"magnitude": "magnitude", "snip": "SNIP", "synflow": "SynFlow"}


# Methods that choose the masks themselves at every pruning event (then fine-tune as NFT): their pruning
# is their own, never a shared phase, and no pruning criterion applies to them.
MASK_METHODS = ("fairgrape",)


# FairGRAPE's ranking of a group's weights (ceag/training/fairgrape.py; their delta_p 0, 1, 2).
FAIRGRAPE_ORDERS = ("importance", "share", "importance_share")


MITIGATION_START = ("after_pruning", "start")


DEVICES = ("auto", "cpu", "cuda")


DENSE_OPTIMIZERS = ("sgd", "adam")


OVERALL_ESTIMATES = ("train_share", "buffer_mean")


PRUNE_ROUNDING = ("round", "ceil")


WEIGHT_DECAY_SCOPES = ("all", "last_layer")


# How verdicts against ε widen the ψ_g intervals for the number of groups (ceag.analysis.bootstrap).
CORRECTIONS = ("bonferroni", "none")

DEFAULT_TOLERANCE = 0.02


# Methods a grid runs only when asked for by name (``--methods nft,fairgrape,ceag``).
BY_NAME_METHODS = ("ceag_vs", "fairgrape")


# Default grids and presets: the paper's methods.
GRID_METHODS = tuple(m for m in METHODS if m not in BY_NAME_METHODS)


# A derived cell reads runs of this method, so it takes that method's settings first.
BASE_METHOD = {"nft_es": "nft", "ceag_vs": "ceag"}


# Cells that train nothing themselves: they are derived from other runs of the same setting.
DERIVED_METHODS = ("nft_es", "ceag_vs")


# ``*_heldout``: the same method with its multipliers driven by validation data (constraint_data="val").
METHOD_LABELS = {"nft": "NFT", "nft_es": "NFT+ES", "el_rb": "EL+RB", "ceag": "CEAG", "ceag_vs": "CEAG+VS",
                 "fairgrape": "FairGRAPE",
                 "ceag_heldout": "CEAG (held-out λ)", "ceag_vs_heldout": "CEAG+VS (held-out λ)"}


def method_label(method: str, tolerance: float | None = None) -> str:
    """A method as charts and tables write it, with its tolerance: ``"CEAG ε=2%"`` (NaN or None: no tolerance)."""
    label = METHOD_LABELS.get(method, method)
    if tolerance is not None and tolerance == tolerance:
        label += f" ε={100 * tolerance:g}%"
    return label


# The columns of a run's per-sample predictions (``predictions.parquet``; ceag.results.predictions says more).
PREDICTION_COLUMNS = ("split", "sample_id", "file", "y_true", "group_id", "y_pred", "p_pred", "dense_pred",
                      "dense_p_pred")
