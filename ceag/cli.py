"""Command line: ``python -m ceag run ...`` (more commands: ``python -m ceag --help``)."""

from __future__ import annotations

import argparse
import json
import sys

from .config import DATASETS, METHODS, MITIGATION_START, MODELS, PRUNING, ConfigError, RunConfig, from_dict

DESCRIPTION = """ceag: constrain the disparate impact of pruning (CEAG) and compare it with NFT,
NFT+ES and EL+RB. Accuracies and gaps are fractions in [0, 1]."""


def _add_run_options(p: argparse.ArgumentParser) -> None:
    d = RunConfig()
    p.add_argument("--method", choices=METHODS, default=d.method,
                   help="nft: naive fine-tuning; nft_es: NFT + best validation iterate; "
                        "el_rb: equalized loss with replay buffers; ceag: excess-gap constraints "
                        f"(default {d.method})")
    p.add_argument("--sparsity", type=float, default=d.sparsity,
                   help=f"target fraction of pruned weights, in [0, 1) (default {d.sparsity})")
    p.add_argument("--tolerance", type=float, default=None,
                   help="CEAG's tolerance eps on every group's excess accuracy gap, a fraction "
                        "(default 0.02; ignored by the other methods)")
    p.add_argument("--seed", type=int, default=d.seed, help=f"run seed (default {d.seed})")
    p.add_argument("--dataset", choices=DATASETS, default=d.dataset,
                   help=f"dataset (default {d.dataset}: scikit-learn's 8x8 digits, class 8 rare in train)")
    p.add_argument("--model", choices=MODELS, default=d.model, help=f"model (default {d.model})")
    p.add_argument("--epochs", type=int, default=d.finetune_epochs,
                   help=f"fine-tuning epochs after gradual pruning ends (default {d.finetune_epochs})")
    p.add_argument("--prune-epochs", type=int, default=d.prune_epochs,
                   help=f"epochs of gradual magnitude pruning (default {d.prune_epochs})")
    p.add_argument("--dense-epochs", type=int, default=d.dense_epochs,
                   help=f"epochs to train the dense model, trained once and reused (default {d.dense_epochs})")
    p.add_argument("--pruning", choices=PRUNING, default=d.pruning,
                   help=f"magnitude pruning: per-layer unstructured, global, or structured "
                        f"output channels (default {d.pruning})")
    p.add_argument("--dual-lr", type=float, default=d.dual_lr,
                   help=f"dual step size for EL+RB and CEAG (default {d.dual_lr})")
    p.add_argument("--buffer-size", type=int, default=d.buffer_size,
                   help=f"replay buffer entries per group (default {d.buffer_size})")
    p.add_argument("--no-replay-buffer", action="store_true",
                   help="ablation: dual step on minibatch estimates instead of replay buffers")
    p.add_argument("--mitigation-start", choices=MITIGATION_START, default=d.mitigation_start,
                   help="when EL+RB and CEAG switch on (default: after the last pruning epoch)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device,
                   help="where to train (default auto: CUDA when present)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any other setting, VALUE in JSON (e.g. --set batch_size=128 "
                        "--set 'lr_milestones=[0.6,0.8]'); repeatable")


def _config_from_args(args: argparse.Namespace) -> RunConfig:
    data = RunConfig().to_dict()
    data.update(method=args.method, sparsity=args.sparsity, tolerance=args.tolerance, seed=args.seed,
                dataset=args.dataset, model=args.model, finetune_epochs=args.epochs,
                prune_epochs=args.prune_epochs, dense_epochs=args.dense_epochs, pruning=args.pruning,
                dual_lr=args.dual_lr, buffer_size=args.buffer_size,
                replay_buffer=not args.no_replay_buffer, mitigation_start=args.mitigation_start,
                device=args.device)
    for item in args.overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError("--set", item, "expected KEY=VALUE, e.g. --set batch_size=128")
        try:
            data[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            data[key.strip()] = raw  # a bare word such as a method or dataset name
    return from_dict(data)


def _print_run(result, out) -> None:
    j = result.to_json()
    tol = "" if j["tolerance"] is None else f", tolerance {j['tolerance']:.3f}"
    state = "cached" if result.cached else f"{j['wall_seconds']:.1f}s on {j['device']}"
    out.write(f"run {j['run_id']}  {j['method']} on {j['dataset']}/{j['model']}, sparsity "
              f"{j['sparsity']:.3f} (achieved {j['achieved_sparsity']:.3f}){tol}, seed {j['seed']}: "
              f"{j['status']} ({state}); reported epoch {j['reported_epoch']}\n")
    if j.get("reason"):
        out.write(f"  reason: {j['reason']}\n")
    for split in ("train", "val", "test"):
        if split not in j:
            continue
        s = j[split]
        out.write(f"\n{split}: accuracy {_pct(s['accuracy'])} (dense {_pct(s['dense_accuracy'])}), "
                  f"max excess gap {_pct(s['max_excess_gap'])}, psi_PW {_pct(s['psi_pw'])}\n")
        out.write(f"  {'group':<12}{'n':>6}{'acc':>9}{'dense':>9}{'excess gap':>12}\n")
        for g in s["groups"]:
            out.write(f"  {g['name']:<12}{g['n']:>6}{_pct(g['accuracy']):>9}"
                      f"{_pct(g['dense_accuracy']):>9}{_pct(g['excess_gap']):>12}\n")


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def cmd_run(args: argparse.Namespace) -> int:
    from .progress import ProgressBar
    from .runs import run

    cfg = _config_from_args(args)
    bar = ProgressBar()
    try:
        result = run(cfg, args.results, progress=bar)
    finally:
        bar.close()
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        _print_run(result, sys.stdout)
    return 0 if result.status == "finished" else 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ceag", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("run", help="run (or load from the cache) one pruning experiment",
                       description="Run one experiment: dense model -> gradual pruning -> "
                                   "fine-tuning with a method. A finished run with the same "
                                   "settings is loaded from the results folder instead.")
    _add_run_options(p)
    p.add_argument("--results", default=None,
                   help="results folder (default: $CEAG_RESULTS, else ./results)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as err:
        parser.exit(2, f"error: {err}\n")
    except KeyboardInterrupt:
        parser.exit(130, "interrupted: the run folder keeps its last checkpoint; run again to resume\n")
    return 0
