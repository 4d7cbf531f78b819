"""The settings of a run and their defaults: one frozen dataclass, no behaviour (``RunConfig`` adds validation
and identity). No torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunSettings:
    """Every setting of one pruning experiment, with its default (``RunConfig`` validates them and names the run).

    Fractions (sparsity, tolerance, val_fraction) are in [0, 1]; epochs are counts.
    The schedule is ``prune_epochs`` epochs of gradual pruning (cubic schedule, target reached at the
    start of epoch ``prune_epochs``; the weights kept chosen by ``criterion``, or by the method for
    FairGRAPE) followed by ``finetune_epochs``.
    """

    dataset: str = "digits"
    model: str = "mlp"
    method: str = "nft"
    sparsity: float = 0.95
    tolerance: float | None = None
    seed: int = 0
    # data: target and protected attributes (None / empty: the dataset's defaults)
    target: str | None = None
    groups: tuple[str, ...] = ()
    image_size: int | None = None
    data_dir: str | None = None
    # What the data was (ceag.datasets.fingerprint), so other data never shares a run id or a
    # shared phase. Datasets without a folder get theirs here; folder datasets when a run or
    # grid is planned (ceag.run.data.resolve). None in configs written before
    # fingerprints existed: left out of their ids, which stay as they were.
    data_fingerprint: str | None = None
    dense_checkpoint: str | None = None  # a user's dense weights instead of training them
    val_fraction: float = 0.15
    rare_groups: tuple[int, ...] | None = None  # None: the dataset's default (digit 8 on digits)
    # The demo's rare digit keeps 5 training images: few enough that naive fine-tuning leaves it
    # behind on nearly every seed, not so few that CEAG cannot win it back (bench/demo_seeds.py).
    rare_train_count: int = 5
    num_groups: int = 4
    # schedule
    dense_epochs: int = 60
    prune_epochs: int = 20
    finetune_epochs: int = 40
    # What a pruning event removes (config.vocabulary.PRUNING): single weights, or whole output channels;
    # "channels" and "channels_global" prune channel groups, need masked_bn on a model with batch norm, and end
    # with the model rebuilt without its pruned channels.
    pruning: str = "unstructured"
    # Which weights each pruning event keeps (ceag/training/criteria.py): the smallest |w| go, or the
    # lowest SNIP connection sensitivity on ``criterion_batches`` training batches, or the lowest SynFlow
    # score after ``synflow_iterations`` rounds of scoring and pruning. In the run id only away from
    # magnitude, each option only with its criterion, so runs made before they existed keep their ids.
    criterion: str = "magnitude"
    criterion_batches: int = 1
    synflow_iterations: int = 100
    dense_first_conv: bool = True
    # The demo prunes the classifier too: with ten classes, losing classifier weights is what
    # hurts the rare class. The paper presets keep it dense, as the authors do.
    dense_last_layer: bool = False
    # primal optimizer (SGD); milestones are fractions of the run's epochs (pruning + fine-tuning).
    # By default lr drops x0.1 at 70 % and again at 90 % of the run, so fine-tuning settles: with a
    # constant lr the last epochs' metrics swing (docs/how-a-run-works.md, "Fine-tuning defaults"; bench/settle.py).
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    lr_milestones: tuple[float, ...] = (0.7, 0.9)
    lr_gamma: float = 0.1
    # constrained methods
    dual_lr: float = 0.003
    buffer_size: int = 40
    replay_buffer: bool = True
    detach_overall: bool = True
    mitigation_start: str = "after_pruning"
    divergence_threshold: float = 1e6
    # Held-out multipliers (Cotter et al., ICML 2019; ceag/methods/heldout.py): "val" feeds the dual
    # step from validation batches, one every ``heldout_every`` steps. Both stay out of the run id
    # while ``constraint_data`` is "train", so runs made before they existed keep their ids.
    constraint_data: str = "train"
    heldout_every: int = 2
    # CEAG+VS (ceag/run/derived.py): the CEAG tolerances it selects among; None: eps, eps/2, eps/4.
    vs_tolerances: tuple[float, ...] | None = None
    # Settings that let a run follow the paper's code where it differs from the defaults
    # (docs/presets.md): the dense recipe (None: the fine-tuning value; milestones None: 0.5, 0.75),
    # the dual step's overall accuracy estimate, masked batch norm, the pruned-weight count per
    # layer, and which parameters weight decay reaches.
    dense_optimizer: str = "sgd"
    dense_lr: float | None = None
    dense_weight_decay: float | None = None
    dense_batch_size: int | None = None
    dense_lr_milestones: tuple[float, ...] | None = None
    overall_estimate: str = "train_share"
    masked_bn: bool = False
    prune_rounding: str = "round"
    weight_decay_scope: str = "all"
    # FairGRAPE (method "fairgrape", ceag/training/fairgrape.py): training batches of group importance per
    # pruning event, the extra draws a chosen group makes (their para_batch), the ranking of a group's
    # weights (their delta_p). In the run id of FairGRAPE runs only.
    fairgrape_batches: int = 10
    fairgrape_para_batch: int = 1
    fairgrape_order: str = "importance"
    # bookkeeping
    eval_every: int = 1
    checkpoint_every: int = 5
    max_trace_points: int = 400
    amp: bool = False
    device: str = "auto"
    eval_batch_size: int | None = None  # inputs per evaluation pass; None: sized to the memory available

    @property
    def total_epochs(self) -> int:
        return self.prune_epochs + self.finetune_epochs
