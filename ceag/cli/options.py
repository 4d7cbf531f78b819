"""From options to settings: a run's config, a grid's spec, ``--set KEY=VALUE`` values."""

from __future__ import annotations

import argparse
import json

from ceag.config.errors import ConfigError
from ceag.config.run_config import RunConfig, from_dict


def data_settings(args: argparse.Namespace) -> dict:
    out = {}
    if args.data_dir:
        out["data_dir"] = args.data_dir
    if args.target:
        out["target"] = args.target
    if args.groups:
        out["groups"] = [g.strip() for g in args.groups.split(",") if g.strip()]
    if args.image_size is not None:
        out["image_size"] = args.image_size
    if args.amp:
        out["amp"] = True
    return out


def config_from_args(args: argparse.Namespace) -> RunConfig:
    data = RunConfig().to_dict()
    # the chosen dataset's defaults; its fingerprint is taken from its data when the run starts
    data.update(target=None, groups=[], rare_groups=None, data_fingerprint=None)
    data.update(method=args.method, sparsity=args.sparsity, tolerance=args.tolerance, seed=args.seed,
                dataset=args.dataset, model=args.model, finetune_epochs=args.epochs,
                prune_epochs=args.prune_epochs, dense_epochs=args.dense_epochs, pruning=args.pruning,
                criterion=args.criterion,
                dual_lr=args.dual_lr, buffer_size=args.buffer_size,
                replay_buffer=not args.no_replay_buffer, mitigation_start=args.mitigation_start,
                constraint_data=args.constraint_data,
                device=args.device, dense_checkpoint=args.dense_checkpoint, **data_settings(args))
    data.update(overrides(args.overrides))
    return from_dict(data)


def overrides(items: list[str]) -> dict:
    """``--set KEY=VALUE`` options as a dict; VALUE is JSON, or a bare word such as a method name."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError("--set", item, "expected KEY=VALUE, e.g. --set batch_size=128")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def grid_spec(args: argparse.Namespace):
    from ceag.config.grid_spec import AXES, GridSpec
    from ceag.config.presets import preset

    chosen = [n for n, v in (("--preset", args.preset), ("--spec", args.spec)) if v]
    if len(chosen) > 1:
        raise ConfigError("grid", " and ".join(chosen), "give --preset or --spec, not both")
    axes = {a: getattr(args, a) for a in AXES if getattr(args, a) is not None}
    if args.preset:
        spec = preset(args.preset).to_dict()
    elif args.spec:
        spec = GridSpec.from_file(args.spec).to_dict()
    else:
        spec = GridSpec().to_dict()
    spec.update(axes)  # axis options refine a preset or spec
    typed = dict(data_settings(args))
    if args.epochs is not None:
        typed["finetune_epochs"] = args.epochs
    if args.dense_checkpoint:
        typed["dense_checkpoint"] = args.dense_checkpoint
    typed.update(overrides(args.overrides))
    # what was typed holds in every cell, over a preset's or spec's per-method values too
    return GridSpec.from_dict(spec).with_settings(typed)
