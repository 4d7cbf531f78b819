"""Throughput on a CPU: what a run spends beyond the arithmetic of training (``python -m bench --only throughput``).

1. **Forward passes per run.** A short NFT run (``cnn`` at 16 px, 1 dense + 1 pruning + 1 fine-tuning epoch)
   on a generated UTKFace-layout folder (8,000 images; 3,000 with ``--quick``), decoded images cached: the
   images passed through a model without gradients, per image of the data (each model evaluated once per
   split per evaluation point: the dense reference, the end of pruning, the end of the run; target ≤ 3), and
   for a second run (CEAG) that shares the dense model and the pruning phase (target ≤ 1: only its own
   evaluation); the time spent in evaluation and predictions against the time spent training (target ≤ 1.3).
2. **One evaluation pass against one training epoch** of the same model and images (images/s, batch 128
   for training, the run's own evaluation batches): target ≥ 2.5x, for the models of the CPU presets.
3. **A whole run against a bare loop.** A CEAG run (1 + 1 + 1 epochs, its evaluations) of ``cnn_small`` at
   32 px on 4,000 images and of ResNet-18 at 32 px on 1,600, against a plain PyTorch loop written here
   (tensors in memory, batch 128, flips, SGD) that trains the same epochs and makes as many evaluation passes
   as the run made: bare seconds / run seconds (above 1: the run is faster than the bare loop). The run
   counts everything it does (loading its data from the cache, pruning, saving its phases and results);
   what Python imports on first use is imported by a small run first, for both sides.
4. ``torch.compile`` of a training step (``cnn_small``): compile seconds and the step time against eager.

Everything runs on one thread and is timed in CPU seconds of this process (``time.process_time``): on a
shared 2-core machine, wall time follows the share of a core the process gets, CPU time the work it does.
Repeated timings take the fastest of interleaved rounds.
"""

from __future__ import annotations

import collections
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from bench.common import Result

PASSES_TARGET, EVAL_SHARE_TARGET, EVAL_SPEED_TARGET = 3.0, 1.3, 2.5


class PassCounter:
    """Counts the images every model built by ``build_model`` sees, with gradients, without them in evaluation
    passes (``no_grad``) and without them elsewhere (``no_grad_other``: the footprint phase's timing batches),
    and times the evaluation passes, the training calls, the predictions and the footprint phase while
    installed (a context manager)."""

    def __init__(self) -> None:
        self.images: collections.Counter = collections.Counter()
        self.seconds: collections.Counter = collections.Counter()
        self.calls: dict[str, list[float]] = collections.defaultdict(list)  # CPU seconds of each call, in order
        self._inside: collections.Counter = collections.Counter()  # calls of each label under way
        self._undo: list[Callable[[], None]] = []

    def __enter__(self) -> PassCounter:
        import ceag.results.predictions as predictions
        import ceag.training.engine as engine
        import ceag.training.evaluation as evaluation
        import ceag.training.models as models

        build, images, inside = models.build_model, self.images, self._inside

        def count(_module, args) -> None:  # a function, not a bound method: a deep copy of a model shares it
            kind = "grad" if torch.is_grad_enabled() else "no_grad" if inside["evaluation"] else "no_grad_other"
            images[kind] += int(args[0].shape[0])

        def counted(*args, **kwargs):
            model = build(*args, **kwargs)
            model.register_forward_pre_hook(count)
            return model

        self._patch(models, "build_model", counted)
        self._patch(engine, "build_model", counted)
        targets = [(evaluation, "outputs", "evaluation"), (engine, "train", "train"),
                   (engine, "train_dense", "train_dense"), (predictions, "write_run_predictions", "predictions")]
        try:
            import ceag.run.measure as measure

            targets.append((measure, "measure_phase", "footprint"))
        except ImportError:  # a version without the footprint phase
            pass
        for module, name, label in targets:
            self._patch(module, name, self._timed(getattr(module, name), label))
        return self

    def __exit__(self, *exc) -> None:
        for undo in reversed(self._undo):
            undo()

    def _patch(self, module, name: str, value) -> None:
        old = getattr(module, name)
        setattr(module, name, value)
        self._undo.append(lambda: setattr(module, name, old))

    def _timed(self, fn, label: str):
        def wrapper(*args, **kwargs):
            start = time.process_time()
            self._inside[label] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self._inside[label] -= 1
                took = time.process_time() - start
                self.seconds[label] += took
                self.calls[label].append(took)
                if label == "evaluation" and self._inside["train"]:
                    self.seconds["evaluation_in_train"] += took
        return wrapper

    @property
    def training_seconds(self) -> float:
        """Seconds in the training loops, less the evaluations ``train`` makes inside them."""
        return self.seconds["train"] + self.seconds["train_dense"] - self.seconds["evaluation_in_train"]


def _folder(root: Path, n: int, size: int) -> Path:
    from bench.data import make_folder

    make_folder(root / "data" / "UTKFace", n, size=size)
    return root / "data"


def _config(data_dir: Path, model: str, image_size: int, method: str, **changes):
    from ceag.config.run_config import RunConfig

    return RunConfig(dataset="utkface", model=model, image_size=image_size, data_dir=str(data_dir), dense_epochs=1,
                     prune_epochs=1, finetune_epochs=1, method=method, sparsity=0.9,
                     tolerance=0.02 if method == "ceag" else None, **changes)


def _data_images(cfg, results: Path) -> tuple[int, int]:
    """(images in all splits, training images) of ``cfg``'s data; decodes them into the cache."""
    from ceag.datasets.loading import load_dataset
    from ceag.results.layout import cache_dir
    from ceag.run.data import resolve

    data = load_dataset(resolve(cfg, results), cache_dir(results))
    return sum(len(s) for s in data.splits.values()), len(data.splits["train"])


def passes(quick: bool) -> list[Result]:
    from ceag.run.pipeline import run

    n = 3000 if quick else 8000
    with tempfile.TemporaryDirectory(prefix="ceag-bench-passes-") as tmp:
        data_dir, results = _folder(Path(tmp), n, 48), Path(tmp) / "results"
        nft = _config(data_dir, "cnn", 16, "nft")
        images, train_images = _data_images(nft, results)
        with PassCounter() as first:
            start = time.process_time()
            run(nft, results)
            wall = time.process_time() - start
        with PassCounter() as second:
            run(nft.replace(method="ceag", tolerance=0.02), results)
    per_image = first.images["no_grad"] / images
    evaluation = first.seconds["evaluation"] + first.seconds["predictions"]
    share = evaluation / first.training_seconds
    return [
        Result("forward passes without gradients per image, NFT run 1+1+1 epochs", per_image, "passes",
               f"<= {PASSES_TARGET:g}", per_image <= PASSES_TARGET + 1e-3,
               f"cnn at 16 px, {images} images ({train_images} train); run {wall:.1f} CPU s"),
        Result("same, a CEAG run sharing its dense model and pruning", second.images["no_grad"] / images, "passes",
               "<= 1", second.images["no_grad"] / images <= 1 + 1e-3),
        Result("evaluation and predictions / training time, that NFT run", share, "x",
               f"<= {EVAL_SHARE_TARGET:g}", share <= EVAL_SHARE_TARGET,
               f"{evaluation:.2f} s / {first.training_seconds:.2f} s"),
        Result("footprint phase of that run (sizes and latency timings)", first.seconds["footprint"], "CPU s", "",
               None, f"{first.images['no_grad_other']} timing inputs, not data; not in the passes above"),
    ]


def _images(n: int, size: int, seed: int = 0):
    from ceag.datasets.base import Split

    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=generator)
    y = torch.randint(0, 5, (n,), generator=generator)
    g = torch.randint(0, 5, (n,), generator=generator)
    return Split(x, y, g, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def fastest(steps: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Fastest CPU time of each callable over ``rounds`` interleaved rounds (after one warm-up each)."""
    for fn in steps.values():
        fn()
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(rounds):
        for name, fn in steps.items():
            start = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - start)
    return best


def eval_speed(quick: bool) -> list[Result]:
    from ceag.datasets.base import batches
    from ceag.training.evaluation import outputs
    from ceag.training.models import build_model

    out = []
    for name, n in (("cnn_fc", 2000), ("cnn_small", 2000), ("cnn", 1000), ("resnet18", 256 if quick else 512)):
        split = _images(n // 2 if quick else n, 32)
        model = build_model(name, (3, 32, 32), 5, 0)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        generator = torch.Generator().manual_seed(0)

        def epoch(model=model, optimizer=optimizer, split=split, generator=generator) -> None:
            model.train()
            for batch in batches(split, 128, generator, flip=True):
                loss = F.cross_entropy(model(batch.x), batch.y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        best = fastest({"train": epoch, "eval": lambda model=model, split=split: outputs(model, split)},
                       2 if quick else 3)
        ratio = best["train"] / best["eval"]
        out.append(Result(f"evaluation / training images/s, {name} at 32 px", ratio, "x",
                          f">= {EVAL_SPEED_TARGET:g}", ratio >= EVAL_SPEED_TARGET,
                          f"{len(split) / best['eval']:.0f} / {len(split) / best['train']:.0f} img/s of CPU time"))
    return out


def what_each_change_bought(quick: bool) -> list[Result]:
    """Evaluation images/s of ``cnn_fc`` and ``cnn_small`` at 32 px three ways: as before (autograd off, batches
    of 1,024, inputs in the default memory order), in batches of the CPU's size (``eval_batch_size``), and
    also in channels-last order (as now); and a training epoch in the default order against channels-last."""
    from ceag.training.memory import eval_batch_size
    from ceag.training.models import build_model

    out = []
    mean, std = torch.tensor((0.5, 0.5, 0.5)).view(1, -1, 1, 1), torch.tensor((0.25, 0.25, 0.25)).view(1, -1, 1, 1)
    for name in ("cnn_fc", "cnn_small"):
        split = _images(1000 if quick else 2000, 32)
        model = build_model(name, (3, 32, 32), 5, 0).eval()
        cpu_batch = eval_batch_size(model, (3, 32, 32), torch.device("cpu"))

        def inputs(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
            x = (x.float().div_(255.0) - mean) / std  # the normalization as it was, in the default order
            return x.contiguous(memory_format=torch.channels_last) if channels_last else x

        def evaluate(batch: int, channels_last: bool, model=model, split=split) -> None:
            with torch.no_grad():
                for i in range(0, len(split), batch):
                    model(inputs(split.x[i:i + batch], channels_last)).argmax(1)

        def epoch(channels_last: bool, model=model, split=split) -> None:
            model.train()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.001)
            order = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))
            for i in range(0, len(split), 128):
                idx = order[i:i + 128]
                loss = F.cross_entropy(model(inputs(split.x[idx], channels_last)), split.y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            model.eval()

        best = fastest({"before": lambda: evaluate(1024, False), "batch": lambda c=cpu_batch: evaluate(c, False),
                        "now": lambda c=cpu_batch: evaluate(c, True), "train_before": lambda: epoch(False),
                        "train_now": lambda: epoch(True)}, 2 if quick else 4)
        n = len(split)
        out += [Result(f"{name} evaluation img/s: before / batches of {cpu_batch} / also channels-last",
                       n / best["now"], "img/s", "", None,
                       f"{n / best['before']:.0f} / {n / best['batch']:.0f} / {n / best['now']:.0f}: "
                       f"{best['before'] / best['batch']:.2f}x from the batch size, "
                       f"{best['batch'] / best['now']:.2f}x more from channels-last"),
                Result(f"{name} training img/s: default order / channels-last", n / best["train_now"], "img/s", "",
                       None, f"{n / best['train_before']:.0f} / {n / best['train_now']:.0f}: "
                             f"{best['train_before'] / best['train_now']:.2f}x")]
    return out


def bare_run(split_sets: dict, epochs: int, eval_passes: int, model_name: str, batch_size: int = 128) -> float:
    """CPU seconds of a plain PyTorch loop: ``epochs`` training epochs of ``split_sets['train']`` (shuffled,
    flips, SGD with momentum), then ``eval_passes`` passes over every split without gradients."""
    from ceag.training.models import build_model

    train = split_sets["train"]
    shape = tuple(train.x.shape[1:])
    model = build_model(model_name, shape, 5, 0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    mean = torch.tensor(train.mean).view(1, -1, 1, 1)
    std = torch.tensor(train.std).view(1, -1, 1, 1)
    start = time.process_time()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(train))
        for i in range(0, len(train), batch_size):
            idx = order[i:i + batch_size]
            if len(idx) < 2:
                continue
            x = (train.x[idx].float() / 255 - mean) / std
            flip = torch.rand(len(idx)) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
            loss = F.cross_entropy(model(x), train.y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        for _ in range(eval_passes):
            for split in split_sets.values():
                for i in range(0, len(split), 256):
                    x = (split.x[i:i + 256].float() / 255 - mean) / std
                    F.cross_entropy(model(x), split.y[i:i + 256], reduction="none")
    return time.process_time() - start


def against_bare(quick: bool) -> list[Result]:
    from ceag.config.run_config import RunConfig
    from ceag.datasets.loading import load_dataset
    from ceag.results.layout import cache_dir
    from ceag.run.data import resolve
    from ceag.run.pipeline import run

    with tempfile.TemporaryDirectory(prefix="ceag-bench-warm-") as tmp:
        # Modules a run imports on first use (the optimizer's, the store's): imported before anything is timed,
        # as in a grid worker after its first run, so neither side pays them.
        run(RunConfig(dense_epochs=1, prune_epochs=1, finetune_epochs=1, method="ceag", tolerance=0.02), tmp)
    out = []
    for model, n in (("cnn_small", 1000 if quick else 4000), ("resnet18", 400 if quick else 1600)):
        with tempfile.TemporaryDirectory(prefix="ceag-bench-bare-") as tmp:
            data_dir = _folder(Path(tmp), n, 32)
            cfg = _config(data_dir, model, 32, "ceag", val_fraction=0.15)
            results = Path(tmp) / "results"
            images, _ = _data_images(cfg, results)
            with PassCounter() as counter:
                start = time.process_time()
                run(cfg, results)
                ours = time.process_time() - start
            data = load_dataset(resolve(cfg, results), cache_dir(results))
            splits = {name: split for name, split in data.splits.items()}
            eval_passes = round(counter.images["no_grad"] / images)
            bare = bare_run({k: _materialized(s) for k, s in splits.items()}, cfg.dense_epochs + cfg.total_epochs,
                            eval_passes, model)
        out.append(Result(f"bare loop / whole CEAG run, {model} at 32 px, {n} images", bare / ours, "x",
                          "not below today's", None,
                          f"run {ours:.1f} CPU s, bare {bare:.1f} CPU s; 3 epochs and {eval_passes} evaluation "
                          "passes each"))
    return out


def _materialized(split):
    from ceag.datasets.base import Split

    return Split(split.inputs().clone(), split.y, split.g, split.mean, split.std)


def compile_step(quick: bool) -> list[Result]:
    from ceag.training.models import build_model

    split = _images(256, 32)
    x = split.prepare(split.x[:128])
    y = split.y[:128]

    def stepper(model):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step() -> None:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return step

    eager = build_model("cnn_small", (3, 32, 32), 5, 0)
    compiled = torch.compile(build_model("cnn_small", (3, 32, 32), 5, 0))
    compiled_step = stepper(compiled)
    start = time.perf_counter()
    try:
        compiled_step()
    except Exception as err:  # a compiler missing or failing here: reported, never a failed run
        return [Result("torch.compile, cnn_small training step", None, "x", "", None,
                       f"compiling failed: {type(err).__name__}: {str(err)[:120]}")]
    compile_seconds = time.perf_counter() - start
    best = fastest({"eager": stepper(eager), "compiled": compiled_step}, 5 if quick else 20)
    ratio = best["eager"] / best["compiled"]
    return [Result("torch.compile speed-up of a cnn_small training step", ratio, "x", "", None,
                   f"eager {best['eager'] * 1e3:.1f} ms, compiled {best['compiled'] * 1e3:.1f} ms, first step "
                   f"(compiling) {compile_seconds:.0f} s")]


def run(quick: bool = False) -> list[Result]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [*passes(quick), *eval_speed(quick), *what_each_change_bought(quick), *against_bare(quick),
                *compile_step(quick)]
    finally:
        torch.set_num_threads(before)


def real_faces(quick: bool = False, data_dir: str | None = None, results: str | None = None) -> list[Result]:
    """Per phase, CPU seconds (one thread) of a CEAG run of the ``utkface_cpu`` preset (ε 2 %, 99 %) on the real
    UTKFace folder (``--data-dir``), its epochs shortened to 2 dense + 2 pruning + 3 fine-tuning (5 with the full
    suite), the rest as the preset sets it; decoded images cached first. With the rates per epoch, the preset's
    whole run (50 + 5 + 15 epochs) is projected. Without a UTKFace folder: says so. With ``results`` (``--results``:
    a folder of real runs), also ``layout_change`` on its runs."""
    import os

    from ceag.config.presets import preset
    from ceag.datasets.layouts import DatasetError, locate
    from ceag.run.pipeline import run as run_one

    data_dir = data_dir or os.environ.get("CEAG_DATA") or "data"
    try:
        locate("utkface", data_dir)
    except DatasetError as err:
        return [Result("throughput_real: no UTKFace folder", None, "", note=str(err))]
    full = next(c for c in preset("utkface_cpu").configs() if c.method == "ceag" and c.sparsity == 0.99)
    dense_epochs, prune_epochs, finetune_epochs = 2, 2, (3 if quick else 5)
    cfg = full.replace(data_dir=data_dir, dense_epochs=dense_epochs, prune_epochs=prune_epochs,
                       finetune_epochs=finetune_epochs)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="ceag-bench-real-speed-") as tmp:
            _data_images(cfg, Path(tmp))  # decoded into the cache: not part of the run's time
            with PassCounter() as counter:
                start = time.process_time()
                run_one(cfg, Path(tmp))
                cpu = time.process_time() - start
    finally:
        torch.set_num_threads(before)
    dense, (pruning, tuning) = counter.calls["train_dense"][0], counter.calls["train"]
    per_dense, per_prune, per_tune = dense / dense_epochs, pruning / prune_epochs, tuning / finetune_epochs
    projected = full.dense_epochs * per_dense + full.prune_epochs * per_prune + full.finetune_epochs * per_tune
    return [
        Result(f"real UTKFace utkface_cpu CEAG run, {dense_epochs}+{prune_epochs}+{finetune_epochs} epochs", cpu,
               "CPU s", note=f"one thread; evaluation {counter.seconds['evaluation']:.1f} s of it, predictions "
                             f"{counter.seconds['predictions']:.1f} s"),
        Result("same: dense / pruning / fine-tuning CPU seconds per epoch", per_dense, "s",
               note=f"{per_dense:.1f} / {per_prune:.1f} / {per_tune:.1f} s (the last two with their evaluations)"),
        Result("same: a whole utkface_cpu run projected from those rates", projected / 60, "CPU min", "", None,
               f"{full.dense_epochs} dense + {full.prune_epochs} pruning + {full.finetune_epochs} fine-tuning "
               "epochs"),
        *(layout_change(Path(results)) if results else []),
    ]


def layout_change(results: Path, limit: int = 6) -> list[Result]:
    """Channels-last inputs change the order of a convolution's sums, so a prediction on the edge can flip:
    on up to ``limit`` finished runs of ``results`` (their sparse and dense models, every split), the largest
    change in any group's accuracy between evaluating with channels-last inputs (as runs do) and in the default
    order, and how many predictions changed."""
    from ceag.datasets.base import Split
    from ceag.datasets.loading import load_dataset
    from ceag.results.files import load_torch
    from ceag.results.layout import DENSE_MODEL, MODEL, SUMMARY, cache_dir, dense_dir
    from ceag.results.record import read_config
    from ceag.training.evaluation import model_outputs, stats_of
    from ceag.training.models import build_model

    folders = sorted(f for f in (results / "runs").iterdir() if (f / SUMMARY).exists() and (f / MODEL).exists())
    largest, changed, predictions, seen = 0.0, 0, 0, set()
    prepare = Split.prepare
    for folder in folders[:limit]:
        cfg = read_config(folder)
        data = load_dataset(cfg, cache_dir(results))
        models = {MODEL: folder / MODEL}
        if dense_dir(results, cfg) not in seen and (dense_dir(results, cfg) / DENSE_MODEL).exists():
            seen.add(dense_dir(results, cfg))
            models[DENSE_MODEL] = dense_dir(results, cfg) / DENSE_MODEL
        for path in models.values():
            model = build_model(cfg.model, data.input_shape, data.num_classes, cfg.seed)
            model.load_state_dict(load_torch(path))
            now = model_outputs(model, data)
            Split.prepare = lambda self, x, mirror=None: prepare(self, x, mirror).contiguous()  # type: ignore
            try:
                before = model_outputs(model, data)
            finally:
                Split.prepare = prepare  # type: ignore[method-assign]
            for name, split in data.splits.items():
                a = stats_of(now[name], split, data.num_groups).accuracy
                b = stats_of(before[name], split, data.num_groups).accuracy
                largest = max(largest, float(abs(a - b)[~(a != a)].max(initial=0.0)))
                changed += int((now[name].pred != before[name].pred).sum())
                predictions += len(split)
    return [Result("largest change of a group's accuracy, channels-last vs default order", largest * 100, "points",
                   "", None, f"{changed} of {predictions} predictions changed; {len(folders[:limit])} runs of "
                             f"{results} and their dense models")]
