"""Where a paper-preset run's GPU time goes: ``python -m bench.gpu_breakdown [--images N] [--profile]``.

The ``gpu`` suite compares a whole CEAG run with a bare PyTorch loop. This splits the difference:
images per second of one epoch of the bare loop, of evaluating the training split alone, and of
``ceag.training.engine.train`` for one epoch (with its evaluations of every split before and after) for
CEAG and NFT, each with and without masked batch norm, and NFT without pruning. Same model
(MobileNet-V2, the ``utkface`` preset), batch 128, 200×200 random images held on the GPU.
``--profile`` adds PyTorch's profiler tables of one CEAG epoch (by CPU and by GPU time).
"""

from __future__ import annotations

import argparse
import time


def main(argv: list[str] | None = None) -> int:
    import torch

    from bench.gpu import _dataset, bare_epoch
    from ceag.config.presets import preset
    from ceag.training.engine import train
    from ceag.training.evaluation import evaluate
    from ceag.training.models import build_model

    p = argparse.ArgumentParser(prog="python -m bench.gpu_breakdown", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=4096)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU here")
        return 1
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    n, size = args.images, 200
    base = preset("utkface").configs()[-1].replace(method="ceag", tolerance=0.01, prune_epochs=0, finetune_epochs=1,
                                                   eval_every=1000, device="cuda", val_fraction=0.0)
    data = _dataset(n, size, 5, dev)
    dense = build_model("mobilenet_v2", (3, size, size), 5, seed=0).to(dev)
    split = data.splits["train"]

    def timed(f) -> float:
        torch.cuda.synchronize()
        start = time.perf_counter()
        f()
        torch.cuda.synchronize()
        return time.perf_counter() - start

    def bare() -> None:
        model = build_model("mobilenet_v2", (3, size, size), 5, seed=0).to(dev)
        bare_epoch(model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), split, 128)

    bare()  # warm-up: cudnn picks its kernels
    print(f"bare loop, one epoch: {n / timed(bare):.0f} img/s", flush=True)
    evaluate(dense, split, 5)  # warm-up: cudnn picks its kernels for the evaluation batch's shape too
    print(f"evaluating the training split: {n / timed(lambda: evaluate(dense, split, 5)):.0f} img/s", flush=True)
    for variant in (dict(), dict(method="nft"), dict(masked_bn=False), dict(method="nft", masked_bn=False),
                    dict(method="nft", masked_bn=False, sparsity=0.0)):
        cfg = base.replace(**variant)
        rate = n / timed(lambda: train(cfg, data, dense, dev))  # noqa: B023 (called at once)
        print(f"train(), one epoch and its evaluations, {variant or 'CEAG as the preset'}: {rate:.0f} img/s",
              flush=True)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            train(base, data, dense, dev)
            torch.cuda.synchronize()
        table = prof.key_averages()
        print(table.table(sort_by="self_cpu_time_total", row_limit=30))
        print(table.table(sort_by="self_cuda_time_total", row_limit=25))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
