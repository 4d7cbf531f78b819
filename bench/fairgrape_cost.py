"""Cost of FairGRAPE's pruning step next to a CEAG training step, against the number of groups.

Setting: the ``cnn_small`` model on 3x32x32 inputs (10 classes), batch 128 of random data, group ids
drawn uniformly from 5, 10, 100 and 1,000 groups (CIFAR-100 with the class as the group is the 100
row). Both run on the same model, pruned by magnitude to 50 % (first convolution and classifier dense).

- **FairGRAPE step** (``ceag.training.fairgrape``): the per-group importance of one batch (one forward,
  one backward per group present in the batch: at most min(groups, 128)) plus the greedy selection of
  the masks at 70 % sparsity. A pruning event reading N batches costs N importance passes and one
  selection; both parts are also shown alone.
- **CEAG step**: the engine's training step with ``get_method("ceag")`` (forward, the method's objective
  with its dual step, backward, optimizer step, masks applied), as ``bench/method_cost.py`` times it;
  its replay buffers are not filled first (at 1,000 groups that takes hundreds of steps; the dual
  step's host work is microseconds against this step's tens of milliseconds, full or not).

Times: one thread (``torch.set_num_threads(1)``), CPU seconds of this process (on a shared machine wall time
follows the share of a core the process gets), each figure the median of several calls after a
warm-up call. Memory: in a fresh process that has built the model and the batch and taken one warm-up
step, the peak resident set size during the next step (``VmHWM`` of /proc/self/status, reset to the current RSS through
/proc/self/clear_refs just before the step) minus the RSS at the step's start: what the step adds at
its peak (memory freed and reused inside the step counts once). The process runs with glibc's
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` at 128 KiB, so freed memory leaves the RSS.

``python -m bench.fairgrape_cost [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from bench.common import Result, median_time

GROUPS = (5, 10, 100, 1000)
SHAPE = (3, 32, 32)
BATCH = 128
CLASSES = 10
START, TARGET = 0.5, 0.7
LABEL = "cnn_small 3x32x32, batch 128"


def _setup(groups: int):
    """The pruned model, its pruner and one batch with ``groups`` group ids (all seeded)."""
    from ceag.training.models import build_model
    from ceag.training.pruning import MagnitudePruner

    model = build_model("cnn_small", SHAPE, CLASSES, seed=0)
    pruner = MagnitudePruner(model, "unstructured")
    pruner.prune_to_(START)
    gen = torch.Generator().manual_seed(groups)
    data = SimpleNamespace(x=torch.randn(BATCH, *SHAPE, generator=gen),
                           y=torch.randint(0, CLASSES, (BATCH,), generator=gen),
                           g=torch.randint(0, groups, (BATCH,), generator=gen))
    model.train()
    return model, pruner, data


def fairgrape_parts(groups: int):
    """(importance of one batch, selection, the whole step) as functions of no argument."""
    from ceag.training.criteria import count_to_prune
    from ceag.training.fairgrape import fairgrape_masks, greedy_keep, group_importance

    model, pruner, data = _setup(groups)
    importance: dict[str, torch.Tensor] = {}

    def importance_pass() -> None:
        group_importance(model, pruner.masks, [data], groups)

    def selection() -> None:
        if not importance:  # the first call computes the importance it selects from (untimed: a warm-up)
            importance.update(group_importance(model, pruner.masks, [data], groups))
        for name, mask in pruner.masks.items():
            alive = torch.nonzero(mask.flatten()).flatten()
            keep = mask.numel() - count_to_prune(TARGET, mask.numel())
            greedy_keep(importance[name].reshape(groups, -1)[:, alive].numpy(), keep)

    def step() -> None:
        fairgrape_masks(model, pruner.masks, [data], groups, TARGET)

    return importance_pass, selection, step


def ceag_step(groups: int):
    """One CEAG training step on the same model, batch and groups (bench/method_cost.py's step)."""
    import torch.nn.functional as F

    from ceag.config.run_config import RunConfig
    from ceag.training.methods import DenseReference, get_method

    model, pruner, data = _setup(groups)
    cfg = RunConfig(method="ceag", tolerance=0.01, dual_lr=1e-3, device="cpu")
    dense = DenseReference(torch.full((groups,), 0.9), torch.full((groups,), 0.3), 0.9, 0.3,
                           torch.full((groups,), 1.0 / groups))
    method = get_method("ceag")(cfg, groups, dense, torch.device("cpu"))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

    def step() -> None:
        logits = model(data.x)
        loss = F.cross_entropy(logits, data.y, reduction="none")
        correct = logits.detach().argmax(1) == data.y
        objective = method.objective(loss, correct, data.g, True)
        method.check_finite(0, objective)
        opt.zero_grad(set_to_none=True)
        objective.backward()
        opt.step()
        pruner.apply_()

    return step


def _rss_kib(field: str) -> int:
    """``field`` (VmRSS, VmHWM) of /proc/self/status in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {field}")


def _child(kind: str, groups: int) -> None:
    """In a fresh process: print the MiB one step's peak RSS exceeds the RSS at its start."""
    torch.set_num_threads(1)
    step = fairgrape_parts(groups)[2] if kind == "fairgrape" else ceag_step(groups)
    step()  # a warm-up step: first-call allocations (kernels, thread pools) are not the step's own
    try:  # reset the high-water mark (VmHWM) to the current RSS (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
        start, peak = _rss_kib("VmRSS"), lambda: _rss_kib("VmHWM")
    except OSError:  # no reset: the process's high-water mark, which the set-up may already have set
        start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # noqa: E731
    step()
    print(json.dumps({"mib": (peak() - start) / 1024}))


def peak_step_memory(kind: str, groups: int) -> float | None:
    """MiB one ``kind`` step ("fairgrape" or "ceag") adds to a fresh process's peak RSS; None if it failed."""
    root = Path(__file__).resolve().parents[1]
    # glibc returns freed memory at once and maps every block over 128 KiB on its own, so the RSS follows
    # what is live instead of what the allocator kept from the warm-up step
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
    proc = subprocess.run([sys.executable, "-m", "bench.fairgrape_cost", "--child", kind, str(groups)],
                          capture_output=True, text=True, env=env, cwd=root, timeout=1800)
    if proc.returncode != 0:
        return None
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["mib"])


def run(quick: bool = False) -> list[Result]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _measure(quick)
    finally:
        torch.set_num_threads(before)


def _measure(quick: bool) -> list[Result]:
    out = []
    for groups in GROUPS:
        repeat = 1 if quick or groups >= 1000 else 3
        importance_pass, selection, fair_step = fairgrape_parts(groups)
        t_importance = median_time(importance_pass, repeat, clock=time.process_time)
        t_selection = median_time(selection, repeat, clock=time.process_time)
        t_fair = median_time(fair_step, repeat, clock=time.process_time)
        t_ceag = median_time(ceag_step(groups), 3 if quick else 10, clock=time.process_time)
        m_fair, m_ceag = peak_step_memory("fairgrape", groups), peak_step_memory("ceag", groups)
        tag = f"{LABEL}, {groups} groups"
        out += [
            Result(f"FairGRAPE pruning step, {tag}", 1 / t_fair, "steps/s", "", None,
                   f"{t_fair:.3g} s: importance of 1 batch {t_importance:.3g} s + selection {t_selection:.3g} s"),
            Result(f"CEAG training step, {tag}", 1 / t_ceag, "steps/s", "", None, f"{1000 * t_ceag:.3g} ms"),
            Result(f"FairGRAPE step / CEAG step time, {tag}", t_fair / t_ceag, "x", "", None,
                   "one FairGRAPE pruning step (1 batch) against one training step"),
            Result(f"FairGRAPE step peak memory, {tag}", m_fair, "MiB", "", None, "peak RSS added by one step"),
            Result(f"CEAG step peak memory, {tag}", m_ceag, "MiB", "", None, "peak RSS added by one step"),
        ]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fairgrape_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one timed call per FairGRAPE figure")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "GROUPS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child[0], int(args.child[1]))
        return 0
    for result in run(quick=args.quick):
        print(result.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
