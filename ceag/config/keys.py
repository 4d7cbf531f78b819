"""Keys of the shared phases: which settings a dense model and an end-of-pruning state depend on."""

from __future__ import annotations

from ceag.config.run_config import RunConfig
from ceag.config.vocabulary import MASK_METHODS, MITIGATING_METHODS

# Settings each shared phase depends on (everything else may differ between runs sharing it).
DATA_FIELDS = ("dataset", "data_fingerprint", "target", "groups", "image_size", "val_fraction", "rare_groups",
               "rare_train_count", "num_groups")


DENSE_FIELDS = DATA_FIELDS + (
    "model", "seed", "dense_epochs", "batch_size", "lr", "momentum", "nesterov", "weight_decay", "amp",
    "dense_checkpoint",
    "dense_optimizer", "dense_lr", "dense_weight_decay", "dense_batch_size", "dense_lr_milestones",
    "weight_decay_scope",
)


PRUNE_FIELDS = DENSE_FIELDS + (
    "sparsity", "prune_epochs", "finetune_epochs", "pruning", "dense_first_conv",
    "dense_last_layer", "lr_milestones", "lr_gamma", "eval_every", "mitigation_start",
    "masked_bn", "prune_rounding", "criterion", "criterion_batches", "synflow_iterations",
)


def dense_key(c: RunConfig) -> str:
    return c.key(DENSE_FIELDS)


def prune_key(c: RunConfig) -> str:
    """Key of the state at the end of gradual pruning.

    When mitigation starts with pruning, or the method chooses the masks itself (FairGRAPE), the pruning
    phase depends on every setting. The criterion and its options are part of the key (absent from it at
    magnitude, so keys made before criteria existed stay).
    """
    if (c.mitigation_start == "start" and c.method in MITIGATING_METHODS) or c.method in MASK_METHODS:
        return c.run_id
    return c.key(PRUNE_FIELDS)


def shares_pruning(cfg: RunConfig) -> bool:
    """Whether the state at the end of pruning is a shared phase of its own.

    Not when pruning is instantaneous (``prune_epochs`` 0), when nothing follows it
    (``finetune_epochs`` 0), or when the method acts during pruning (its ``prune_key`` is then the
    run's own id).
    """
    return cfg.prune_epochs > 0 and cfg.finetune_epochs > 0 and prune_key(cfg) != cfg.run_id
