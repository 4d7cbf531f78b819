"""Named grids: the teaching demo, UTKFace on a CPU, and the paper's setups as the authors' code configures
them (docs/presets.md lists every value with its source and why a preset differs where it does)."""

from __future__ import annotations

from typing import Any

from ceag.config.errors import ConfigError
from ceag.config.grid_spec import GridSpec
from ceag.config.vocabulary import GRID_METHODS


def _paper(dataset: str, model: str, sparsities, tolerances, settings: dict[str, Any]) -> GridSpec:
    return GridSpec(datasets=(dataset,), models=(model,), methods=GRID_METHODS, sparsities=tuple(sparsities),
                    tolerances=tuple(tolerances), seeds=(0, 1, 2, 3, 4),
                    settings={**PAPER_COMMON, **settings})


_UTKFACE_CPU: dict[str, Any] = dict(
    target="race", groups=["race"], image_size=32, val_fraction=0.0, rare_groups=[], dense_last_layer=True,
    dense_epochs=50, dense_lr_milestones=[0.6], dense_weight_decay=0.0,  # fit the training set
    prune_epochs=5, finetune_epochs=15, batch_size=128, lr=0.05, lr_milestones=[0.6, 0.8], dual_lr=0.01,
    eval_every=5)
PRESETS: dict[str, GridSpec] = {
    # The teaching grid on the embedded digits data: 4 methods x 3 sparsities x 3 tolerances, three
    # seeds (error bars on the frontiers, several points per group on Generalization).
    "demo": GridSpec(datasets=("digits",), models=("mlp",), methods=GRID_METHODS,
                     sparsities=(0.9, 0.95, 0.98), tolerances=(0.01, 0.02, 0.05), seeds=(0, 1, 2)),
    # UTKFace on a CPU, in the regime of the paper's finding: a dense model that fits its training set
    # (cnn_fc, whose wide fully connected layer memorises; 50 epochs, 20 of them at the low lr, no weight
    # decay) and pruning that takes what it memorised, at 95 and 99 %. Why each setting (the dual steps,
    # the lr's milestones, the evaluation cadence): data/README.md; measured by python -m bench --only real_faces.
    "utkface_cpu": GridSpec(
        datasets=("utkface",), models=("cnn_fc",), methods=GRID_METHODS, sparsities=(0.95, 0.99),
        tolerances=(0.02,), seeds=(0,), settings=_UTKFACE_CPU, method_settings={"el_rb": {"dual_lr": 1e-4}}),
    # The same with intersectional groups: race as the target, race × gender (10 groups) as the groups.
    "utkface_cpu_intersectional": GridSpec(
        datasets=("utkface",), models=("cnn_fc",), methods=GRID_METHODS, sparsities=(0.95, 0.99),
        tolerances=(0.02,), seeds=(0,), settings={**_UTKFACE_CPU, "groups": ["race", "gender"]},
        method_settings={"el_rb": {"dual_lr": 1e-4}}),
    # The same with channel pruning: the paper's structured setting (``utkface_structured``: layerwise
    # output-channel sparsity, masked batch norm) at CPU size, at 50, 75 and 85 % of each channel group's
    # channels (cnn_fc: the second convolution's 64, the wide layer's 512 units). Each run's model is rebuilt
    # without its pruned channels and measured against the dense one (parameters, MACs, latency: summary.json's
    # footprint), so fairness and speed-up are read side by side.
    "utkface_cpu_structured": GridSpec(
        datasets=("utkface",), models=("cnn_fc",), methods=GRID_METHODS, sparsities=(0.5, 0.75, 0.85),
        tolerances=(0.02,), seeds=(0,), settings={**_UTKFACE_CPU, "pruning": "channels", "masked_bn": True},
        method_settings={"el_rb": {"dual_lr": 1e-4}}),
}


# Setups of Hashemizadeh et al. (ICLR 2024) as their code configures them (GitHub
# merajhashemi/balancing-act, src/configs/<dataset>/sparse_imp.py and dense.py); docs/presets.md
# lists every value with its source and each place where a preset differs, and why.
PAPER_COMMON: dict[str, Any] = dict(
    dense_first_conv=True, dense_last_layer=True,        # is_first_conv_dense / is_last_fc_dense
    val_fraction=0.0, rare_groups=[],                    # val_split_ratio 0.0; the datasets as published
    prune_epochs=15, pruning="unstructured",             # last_pruning_epoch 15, sparsity_type unstructured
    buffer_size=40, replay_buffer=True,                  # buffer_memory 40
    mitigation_start="after_pruning",                    # apply_mitigation_while_pruning False
    detach_overall=False,                                # detach_model_constraint_contribution False
    overall_estimate="buffer_mean",                      # GroupCyclicBuffer.query
    masked_bn=True, prune_rounding="ceil",               # MaskedBatchNorm2d; math.ceil in pruning.py
    weight_decay_scope="last_layer",                     # model_sq_l2_norm's overwrite
    momentum=0.9, nesterov=False, lr_gamma=0.1,
)


_UTKFACE = dict(target="race", groups=["race"], finetune_epochs=45, batch_size=128, lr=1e-2,
                weight_decay=1e-4, lr_milestones=[0.6, 0.8, 0.9], dual_lr=1e-4,
                # src/configs/utkface/dense.py: Adam 1e-3, 50 epochs, steps at 60/80/90 %, wd 1e-4
                dense_epochs=50, dense_optimizer="adam", dense_lr=1e-3, dense_weight_decay=1e-4,
                dense_batch_size=128, dense_lr_milestones=[0.6, 0.8, 0.9])


PAPER_PRESETS: dict[str, dict[str, Any]] = {
    "utkface": dict(dataset="utkface", model="mobilenet_v2", sparsities=(0.85, 0.9, 0.925, 0.95),
                    tolerances=(0.005, 0.01, 0.02), settings=_UTKFACE,
                    checkpoint=("mobilenet_v2_utkface_race.pt", "the paper's authors (their own dense MobileNet-V2, "
                                "torchvision key names)")),
    "utkface_intersectional": dict(dataset="utkface", model="mobilenet_v2", sparsities=(0.85, 0.9, 0.925, 0.95),
                                   tolerances=(0.005, 0.01, 0.02), settings={**_UTKFACE, "groups": ["race", "gender"]},
                                   checkpoint=("mobilenet_v2_utkface_race.pt", "the paper's authors (their own dense "
                                               "MobileNet-V2, torchvision key names)")),
    # Structured sparsity as the authors ran it for their review (OpenReview, their answer to Reviewer KSs2):
    # utkface's setting with layerwise structured output-channel sparsity at 85 % ("channels": each channel
    # group loses 85 % of its channels, masked batch norm); they report train max_g ψ_g 45.8 % for NFT and 1.0 %
    # for CEAG at ε ≤ 1 %. The model each run reports is rebuilt without its pruned channels.
    "utkface_structured": dict(dataset="utkface", model="mobilenet_v2", sparsities=(0.85,), tolerances=(0.01,),
                               settings={**_UTKFACE, "pruning": "channels"},
                               checkpoint=("mobilenet_v2_utkface_race.pt", "the paper's authors (their own dense "
                                           "MobileNet-V2, torchvision key names)")),
    "fairface": dict(dataset="fairface", model="resnet34", sparsities=(0.99,), tolerances=(0.005, 0.01, 0.02),
                     settings=dict(target="race", groups=["race"], finetune_epochs=32, batch_size=256, lr=1e-3,
                                   momentum=0.95, nesterov=True, weight_decay=1e-2, lr_milestones=[0.9],
                                   dual_lr=1e-4,
                                   # no dense training in the paper (the released model); without it:
                                   # src/configs/fairface/dense.py's Adam 1e-3, batch 128, for 40 epochs
                                   dense_epochs=40, dense_optimizer="adam", dense_lr=1e-3, dense_weight_decay=0.0,
                                   dense_batch_size=128, dense_lr_milestones=[]),
                     checkpoint=("res34_fair_align_multi_7_20190809.pt", "FairFace (github.com/dchen236/FairFace): "
                                 "ResNet-34, 18 outputs")),
    "cifar100": dict(dataset="cifar100", model="resnet56", sparsities=(0.925, 0.95), tolerances=(0.05, 0.1),
                     settings=dict(finetune_epochs=35, batch_size=128, lr=1e-2, weight_decay=1e-4,
                                   lr_milestones=[0.6, 0.8, 0.9], dual_lr=1e-2,
                                   # no dense training in the paper (chenyaofo's model); without it, that
                                   # model's recipe: SGD 0.1, wd 5e-4, batch 256, 200 epochs (step decay here)
                                   dense_epochs=200, dense_lr=0.1, dense_weight_decay=5e-4, dense_batch_size=256,
                                   dense_lr_milestones=[0.5, 0.75]),
                     checkpoint=("cifar100_resnet56-f2eff4c8.pt", "chenyaofo/pytorch-cifar-models "
                                 "(cifar100_resnet56)")),
}


UTKFACE_TRAIN_IMAGES = 18_963  # the 80 % training split of the 23,704 usable UTKFace images


SMALLEST_SHARE = 0.07          # "Others", the smallest race in UTKFace (0.071 of the images)


def preset(name: str) -> GridSpec:
    if name in PRESETS:
        return PRESETS[name]
    if name in PAPER_PRESETS:
        p = PAPER_PRESETS[name]
        return _paper(p["dataset"], p["model"], p["sparsities"], p["tolerances"], p["settings"])
    raise ConfigError("preset", name, f"must be one of {', '.join([*PRESETS, *PAPER_PRESETS])}")


def preset_checkpoint(name: str) -> tuple[str, str] | None:
    """(file name, publisher) of the dense model the paper's runs of preset ``name`` start from."""
    return PAPER_PRESETS.get(name, {}).get("checkpoint")


def preset_names() -> list[str]:
    return [*PRESETS, *PAPER_PRESETS]
