"""Evaluation batches sized from the model, the input and the memory available."""

import json
import subprocess
import sys

import pytest
import torch

from ceag.config.errors import ConfigError
from ceag.config.run_config import RunConfig
from ceag.datasets.base import Split
from ceag.training import memory
from ceag.training.evaluation import predict
from ceag.training.models import build_model
from tests.helpers import ROOT, subprocess_env

CPU = torch.device("cpu")


def test_full_resolution_batches_fit_the_memory_available(monkeypatch):
    model = build_model("cnn", (3, 200, 200), 5, 0)
    per_sample = memory.activation_bytes_per_sample(model, (3, 200, 200), CPU)
    assert per_sample > 1e6  # megabytes per 200x200 image: a batch of 1,024 would need tens of GB
    gpu = torch.device("cuda")  # only a name here: the sizes are computed, nothing runs on it
    monkeypatch.setattr(memory, "activation_bytes_per_sample", lambda *_: per_sample)
    for available in (24 << 30, 4 << 30, 256 << 20):
        monkeypatch.setattr(memory, "available_bytes", lambda device, a=available: a)
        batch = memory.eval_batch_size(model, (3, 200, 200), gpu)  # a GPU takes the largest batch that fits
        assert 1 <= batch < memory.MAX_EVAL_BATCH
        assert batch * per_sample <= memory.BUDGET_FRACTION * available
        assert (batch + 1) * per_sample > memory.BUDGET_FRACTION * available or batch == 1
        # a CPU: never more than fits, and no more than keeps the activations near the caches (at least 32)
        cpu_batch = memory.eval_batch_size(model, (3, 200, 200), CPU)
        assert cpu_batch == min(batch, max(memory.CPU_MIN_BATCH, memory.CPU_BATCH_BYTES // per_sample))
    # small inputs keep the largest batch; a requested size wins
    monkeypatch.undo()
    assert memory.eval_batch_size(build_model("mlp", (1, 8, 8), 10, 0), (1, 8, 8), CPU) == memory.MAX_EVAL_BATCH
    assert memory.eval_batch_size(model, (3, 200, 200), CPU, requested=7) == 7


def test_cpu_batches_keep_activations_near_the_caches():
    """cnn_fc at 32 px: about 0.7 MB of activations per image; 1,024 fit the memory but run twice as slowly."""
    model = build_model("cnn_fc", (3, 32, 32), 5, 0)
    per_sample = memory.activation_bytes_per_sample(model, (3, 32, 32), CPU)
    batch = memory.eval_batch_size(model, (3, 32, 32), CPU)
    assert batch * per_sample <= memory.CPU_BATCH_BYTES < (batch + 1) * per_sample
    assert 100 <= batch <= 200


def test_running_out_of_memory_names_the_setting(monkeypatch):
    model = build_model("mlp", (1, 8, 8), 10, 0)

    def boom(*_):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 27000000000 bytes")

    monkeypatch.setattr(model, "forward", boom)
    split = Split(torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.int64), torch.zeros(4, dtype=torch.int64))
    with pytest.raises(memory.EvalMemoryError, match=r"eval_batch_size .*--set eval_batch_size=1"):
        predict(model, split, batch_size=4)


def test_eval_batch_size_is_a_checked_setting_outside_the_run_id():
    assert RunConfig(eval_batch_size=32).run_id == RunConfig().run_id
    with pytest.raises(ConfigError, match="eval_batch_size"):
        RunConfig(eval_batch_size=0)


_REAL_SIZE = """
import json, resource, torch
from ceag.training import memory
from ceag.datasets.base import Split
from ceag.training.evaluation import predict
from ceag.training.models import build_model
torch.set_num_threads(1)
memory.available_bytes = lambda device: 256 << 20  # a machine with 256 MiB to spare
model = build_model("cnn", (3, 200, 200), 5, 0)
n = 48
split = Split(torch.randint(0, 256, (n, 3, 200, 200), dtype=torch.uint8), torch.zeros(n, dtype=torch.int64),
              torch.zeros(n, dtype=torch.int64), (0.5,) * 3, (0.25,) * 3)
predict(model, Split(split.x[:2], split.y[:2], split.g[:2], split.mean, split.std))  # warm-up
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
pred, _ = predict(model, split)
print(json.dumps({"grew_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024,
                  "n": len(pred)}))
"""


@pytest.mark.slow
def test_evaluation_at_full_resolution_stays_within_the_budget():
    """48 images of 200x200 through the small CNN: a batch of all 48 holds about 1.3 GB of
    activations; sized to a 256 MiB machine, evaluation grows the process by far less."""
    out = subprocess.run([sys.executable, "-c", _REAL_SIZE], env=subprocess_env(), cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["n"] == 48 and result["grew_mb"] < 256, result




_BLOCKS = """
import json, resource
import numpy as np
from ceag.training import memory
def faults_per_block(n=4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        block = np.empty(64 << 20, dtype=np.uint8)  # above glibc's largest dynamic mmap threshold (32 MB)
        block.fill(1)
        del block
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / n
default = faults_per_block()
tuned = memory.keep_freed_memory()
faults_per_block(1)  # the first block after the change is new heap: faulted in once
print(json.dumps({"tuned": tuned, "default": default, "kept": faults_per_block()}))
"""


def test_freed_memory_is_kept_for_reuse_instead_of_faulted_in_again():
    """A freed block below ``KEEP_BELOW`` (a training step's activations) is reused by the next
    allocation; with glibc's defaults a 64 MB block is mapped afresh, page by page, every time."""
    done = subprocess.run([sys.executable, "-c", _BLOCKS], env=subprocess_env(), capture_output=True, text=True,
                          check=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if not out["tuned"]:
        pytest.skip("not glibc: mallopt is unavailable")
    assert out["default"] > 100, out  # 64 MB faulted in on every allocation (pages or larger folios)
    assert out["kept"] < out["default"] / 10, out
