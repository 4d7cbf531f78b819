"""The command line's options: ``python -m ceag COMMAND --help`` explains each."""

from __future__ import annotations

import argparse

from ceag.cli.audit import cmd_audit
from ceag.cli.grid import cmd_grid
from ceag.cli.run import cmd_run
from ceag.cli.store import cmd_export, cmd_import, cmd_ls, cmd_report
from ceag.config.registry import DATASETS
from ceag.config.run_config import RunConfig
from ceag.config.vocabulary import (
    CONSTRAINT_DATA,
    CORRECTIONS,
    CRITERIA,
    METHODS,
    MITIGATION_START,
    MODELS,
    PRUNING,
)

DESCRIPTION = """ceag: constrain the disparate impact of pruning (CEAG) and compare it with NFT,
NFT+ES, EL+RB and FairGRAPE. Accuracies and gaps are fractions in [0, 1]."""


def _add_run_options(p: argparse.ArgumentParser) -> None:
    d = RunConfig()
    p.add_argument("--method", choices=METHODS, default=d.method,
                   help="nft: naive fine-tuning; nft_es: NFT + best validation iterate; "
                        "el_rb: equalized loss with replay buffers; ceag: excess-gap constraints; "
                        "ceag_vs: CEAG with its tolerance selected on validation among eps, eps/2, eps/4 "
                        "(or --set vs_tolerances=[...]); fairgrape: FairGRAPE's group-importance masks at every "
                        "pruning event, then NFT (--set fairgrape_batches=N, fairgrape_para_batch=N, "
                        f"fairgrape_order=ORDER) (default {d.method})")
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
                   help=f"what is pruned: per-layer unstructured, global, structured (each layer's output "
                        f"channels on its own: zeroed, mostly not removable), channels or channels_global (output "
                        f"channels of coupled layers together, removed at the end: the model shrinks; masked_bn "
                        f"on models with batch norm) (default {d.pruning})")
    p.add_argument("--criterion", choices=CRITERIA, default=d.criterion,
                   help="which weights each pruning event keeps: magnitude (the largest |w|), snip (connection "
                        "sensitivity on --set criterion_batches=N training batches, default "
                        f"{d.criterion_batches}) or synflow (data-free, --set synflow_iterations=N rounds, default "
                        f"{d.synflow_iterations}) (default {d.criterion})")
    p.add_argument("--dual-lr", type=float, default=d.dual_lr,
                   help=f"dual step size for EL+RB and CEAG (default {d.dual_lr})")
    p.add_argument("--buffer-size", type=int, default=d.buffer_size,
                   help=f"replay buffer entries per group (default {d.buffer_size})")
    p.add_argument("--no-replay-buffer", action="store_true",
                   help="ablation: dual step on minibatch estimates instead of replay buffers")
    p.add_argument("--constraint-data", choices=CONSTRAINT_DATA, default=d.constraint_data,
                   help="data behind CEAG's multipliers: train, or val (held-out multipliers: the dual step "
                        f"reads validation batches) (default {d.constraint_data})")
    p.add_argument("--mitigation-start", choices=MITIGATION_START, default=d.mitigation_start,
                   help="when EL+RB and CEAG switch on (default: after the last pruning epoch)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device,
                   help="where to train (default auto: CUDA when present)")
    p.add_argument("--dense-checkpoint", help="use these dense weights (a state dict, loaded weights-only) "
                                              "instead of training the dense model")
    _add_data_options(p)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any other setting, VALUE in JSON (e.g. --set batch_size=128 "
                        "--set 'lr_milestones=[0.6,0.8]'); repeatable")


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="folder holding the real datasets (default: $CEAG_DATA, else ./data)")
    p.add_argument("--target", help="attribute to predict (utkface, fairface: race, gender or age; custom: the "
                                    "labels.csv column holding the class)")
    p.add_argument("--groups", help="protected attribute(s), comma-separated: e.g. race, or race,gender for "
                                    "intersectional groups (custom: labels.csv column names)")
    p.add_argument("--image-size", type=int, help="resize images to N x N pixels (e.g. 64 for a CPU run)")
    p.add_argument("--amp", action="store_true", help="mixed precision (bfloat16) forward passes; metrics "
                                                      "stay float32")


def _csv(kind):
    def parse(text: str):
        try:
            return [kind(v.strip()) for v in text.split(",") if v.strip()]
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, got {text!r}") from err
    return parse


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

    g = sub.add_parser("grid", help="run a grid of experiments (cached runs are loaded)",
                       description="Expand datasets x models x methods x criteria x sparsities x tolerances x "
                                   "seeds (tolerance multiplies only CEAG and CEAG+VS, criteria every method but "
                                   "FairGRAPE) and run every cell, sharing dense "
                                   "models and end-of-pruning states. Axis options refine a preset or spec.")
    g.add_argument("--preset", help="a named grid: demo, utkface_cpu, utkface_cpu_intersectional and "
                                    "utkface_cpu_structured (UTKFace on a CPU), utkface, utkface_intersectional, "
                                    "utkface_structured, fairface, cifar100")
    g.add_argument("--spec", help="a JSON file with keys datasets, models, methods, criteria, sparsities, tolerances, "
                                  "seeds, settings (other RunConfig settings) and method_settings (a method's own, "
                                  'e.g. {"el_rb": {"dual_lr": 0.0001}})')
    g.add_argument("--datasets", type=_csv(str), help="comma-separated datasets")
    g.add_argument("--models", type=_csv(str), help="comma-separated models")
    g.add_argument("--methods", type=_csv(str), help="comma-separated methods among " + ",".join(METHODS)
                   + " (ceag_vs and fairgrape run only when named)")
    g.add_argument("--criteria", type=_csv(str), help="comma-separated pruning criteria among " + ",".join(CRITERIA)
                   + " (default magnitude)")
    g.add_argument("--sparsities", type=_csv(float), help="comma-separated sparsities, e.g. 0.9,0.95")
    g.add_argument("--tolerances", type=_csv(float), help="comma-separated CEAG tolerances, e.g. 0.01,0.02")
    g.add_argument("--seeds", type=_csv(int), help="comma-separated seeds, e.g. 0,1,2")
    g.add_argument("--epochs", type=int, help="fine-tuning epochs after pruning")
    g.add_argument("--dense-checkpoint", help="start every cell from these dense weights (a state dict, loaded "
                   "weights-only; the paper's published files load as released: docs/presets.md)")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any other setting for every cell (over a preset's or spec's per-method value too), "
                        "VALUE in JSON; repeatable")
    _add_data_options(g)
    g.add_argument("--workers", type=int, help="worker processes (default: one per CPU core)")
    g.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local worker processes, or Ray tasks on a cluster (needs requirements-ray.txt)")
    g.add_argument("--address", help="Ray cluster address (default: start or join a local Ray)")
    g.add_argument("--max-cells", type=int, default=5000, help="refuse grids larger than this (default 5000)")
    g.add_argument("--job-id", help="name the job (its progress feed is <results>/jobs/<job-id>/progress.json)")
    g.add_argument("--results", default=None, help="results folder (default: $CEAG_RESULTS, else ./results)")
    g.add_argument("--json", action="store_true", help="print one JSON object with the job's outcome")
    g.set_defaults(func=cmd_grid)

    ls = sub.add_parser("ls", help="list runs with their status")
    ls.add_argument("--status", help="only runs with this status (finished, running, failed, diverged, interrupted)")
    ls.add_argument("--dataset", help="only this dataset")
    ls.add_argument("--method", help="only this method")
    ls.add_argument("--results", default=None, help="results folder (default: $CEAG_RESULTS, else ./results)")
    ls.add_argument("--json", action="store_true", help="print a JSON list")
    ls.set_defaults(func=cmd_ls)

    ex = sub.add_parser("export", help="export metrics, per-sample predictions or a bundle of runs",
                        description="Export metrics of selected runs (CSV or Parquet), the per-sample "
                                    "predictions of one run, or a bundle of finished runs for import elsewhere.")
    ex.add_argument("--run", action="append", help="a run id (repeatable); default: every run matching the filters")
    ex.add_argument("--dataset", help="only this dataset")
    ex.add_argument("--method", help="only this method")
    ex.add_argument("--status", default="finished", help="only runs with this status (default finished)")
    ex.add_argument("--table", default="final",
                    choices=("final", "runs", "run_metrics", "group_metrics", "duals", "verdicts"),
                    help="final: per-group metrics at the reported epoch with run settings (default); verdicts: "
                         "each mitigation against NFT across its seeds, per split and metric (difference, 95 %% "
                         "interval over seeds and samples, verdict; fractions)")
    ex.add_argument("--predictions", action="store_true",
                    help="per-sample predictions of one run: y_true, y_pred, group, group_name, sample_id, file "
                         "(the image under the data folder), p_pred (probability of y_pred), dense_pred, "
                         "dense_p_pred")
    ex.add_argument("--casualties", choices=("casualty", "recovered"), nargs="?", const="casualty", default=None,
                    help="the samples of one run that its dense model got right and its pruned model gets wrong "
                         "(or, with 'recovered', the other way round), most confidently lost first: split, "
                         "sample_id, file, group, true, dense_pred, dense_p, pruned_pred, pruned_p, confidence")
    ex.add_argument("--split", default="test",
                    help="split for --predictions and --casualties (train, val, test; default test); --predictions "
                         "also takes all: every split, with a split column first")
    ex.add_argument("--bundle", action="store_true", help="write a .tar.gz bundle of the runs for `ceag import`")
    ex.add_argument("--model", metavar="RUN",
                    help="the model of run RUN to --out FILE.pt: with structured pruning (structured, channels, "
                         "channels_global) rebuilt without its pruned channels, else the masked full-size model; "
                         "a state dict and its plan, read by torch.load(FILE, weights_only=True) and "
                         "ceag.results.model_export.load_exported (FILE.onnx: ONNX, needs the onnx package)")
    ex.add_argument("--format", choices=("csv", "parquet"), help="default: from the --out suffix")
    ex.add_argument("--out", default="-", help="output file (default: CSV to standard output)")
    ex.add_argument("--results", default=None, help="results folder (default: $CEAG_RESULTS, else ./results)")
    ex.set_defaults(func=cmd_export)

    rp = sub.add_parser("report", help="an audit report of chosen runs (self-contained HTML, or the table as CSV)",
                        description="Per group and split of each run: n, dense and sparse accuracy, Δ_g and ψ_g "
                                    "with paired bootstrap intervals, max_g ψ_g and Ψ_PW, generated sentences, "
                                    "every setting and the package versions. --out FILE.html writes one file that "
                                    "opens offline; --out FILE.csv writes the per-group table (fractions).")
    rp.add_argument("--runs", required=True, help="comma-separated run ids (`python -m ceag ls` lists them)")
    rp.add_argument("--out", required=True, help="report.html (the full report) or table.csv (the per-group table)")
    rp.add_argument("--ci", type=float, default=0.95,
                    help="confidence level of the intervals, a fraction (default 0.95)")
    rp.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples per split (default 1000)")
    rp.add_argument("--seed", type=int, default=0, help="seed of the resampling (default 0)")
    rp.add_argument("--correction", choices=CORRECTIONS, default="bonferroni",
                    help="how the ψ_g intervals behind the verdicts against ε are widened for the number of groups "
                         "of a split: bonferroni (all hold together at --ci) or none (default bonferroni)")
    rp.add_argument("--thumbnails", type=int, default=8, metavar="N",
                    help="pictures per group of the samples pruning broke, read from --data-dir (default 8; 0 "
                         "leaves pictures out, e.g. faces you may not share)")
    rp.add_argument("--thumbnails-split", default="test", choices=("train", "val", "test"),
                    help="the split whose pictures the report shows (default test)")
    rp.add_argument("--data-dir", default=None,
                    help="where the runs' images are read for the pictures (default: $CEAG_DATA, else ./data)")
    rp.add_argument("--results", default=None, help="results folder (default: $CEAG_RESULTS, else ./results)")
    rp.set_defaults(func=cmd_report)

    au = sub.add_parser("audit", help="audit a file of per-sample predictions of a dense and pruned models made "
                                      "anywhere (report HTML or table CSV)",
                        description="Read a CSV or Parquet file with y_true, the group column(s), dense_pred and one "
                                    "column per sparse model (optional: split, train/val/test), and audit each sparse "
                                    "model against the dense one as `report` audits a run: per group and split n, "
                                    "accuracies, Δ_g and ψ_g with paired bootstrap intervals, and verdicts against "
                                    "--tolerance. The audit is kept in the results folder (audits/<id>). "
                                    "docs/audit.md describes the file.")
    au.add_argument("--predictions", required=True, metavar="FILE",
                    help="CSV (comma-separated, UTF-8, header row) or Parquet, up to 200 MB")
    au.add_argument("--groups", required=True, metavar="COL[,COL]",
                    help="the group column(s); several give intersectional groups, named 'a × b' in this order")
    au.add_argument("--sparse", metavar="COL[,COL]",
                    help="the column(s) of sparse predictions, each audited as one model (default: sparse_pred if "
                         "the file has it, else y_pred, as `export --predictions` writes)")
    au.add_argument("--tolerance", metavar="EPS",
                    help="ε, a fraction (e.g. 0.02): each group's ψ_g is judged against it (meets ε, exceeds ε, "
                         "cannot tell); default: no verdicts")
    au.add_argument("--out", required=True, help="report.html (the full report) or table.csv (the per-group table)")
    au.add_argument("--ci", default="0.95", help="confidence level of the intervals, a fraction (default 0.95)")
    au.add_argument("--n-boot", default="1000", help="bootstrap resamples per split (default 1000)")
    au.add_argument("--seed", default="0", help="seed of the resampling (default 0)")
    au.add_argument("--correction", choices=CORRECTIONS, default="bonferroni",
                    help="how the ψ_g intervals behind the verdicts are widened for the number of groups of a split "
                         "(default bonferroni)")
    au.add_argument("--results", default=None,
                    help="where the audit is kept (default: $CEAG_RESULTS, else ./results)")
    au.add_argument("--json", action="store_true", help="print one JSON object: the audit id, where it is, the groups")
    au.set_defaults(func=cmd_audit)

    im = sub.add_parser("import", help="import a run folder or bundle from another machine",
                        description="Validate, then copy finished runs into the results folder and the store.")
    im.add_argument("source", help="a run folder or a .tar.gz bundle written by `ceag export --bundle`")
    im.add_argument("--results", default=None, help="results folder (default: $CEAG_RESULTS, else ./results)")
    im.add_argument("--json", action="store_true", help="print the imported and already-present run ids as JSON")
    im.set_defaults(func=cmd_import)
    return parser
