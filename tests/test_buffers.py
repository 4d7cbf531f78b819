"""ReplayBuffer against a one-sample-at-a-time reference built on collections.deque."""

import io
import math
from collections import deque

import numpy as np
import pytest
import torch

from ceag.training.methods.buffers import ReplayBuffer


class DequeBuffer:
    """The obvious implementation: one deque(maxlen=k) per group, pushed sample by sample."""

    def __init__(self, num_groups, size):
        self.size = size
        self.rings = [deque(maxlen=size) for _ in range(num_groups)]

    def push(self, values, groups):
        for v, g in zip(values, groups, strict=True):
            self.rings[g].append(float(v))

    def mean(self):
        return [sum(r) / self.size if len(r) == self.size else math.nan for r in self.rings]


def test_mean_is_nan_until_the_ring_is_full():
    buf = ReplayBuffer(3, 4)
    assert torch.isnan(buf.mean()).all() and not buf.full.any()
    buf.push_(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0, 0, 1]))
    assert torch.isnan(buf.mean()).all()
    buf.push_(torch.tensor([1.0, 1.0]), torch.tensor([0, 0]))  # group 0 now holds 4 values
    assert buf.full.tolist() == [True, False, False]
    mean = buf.mean()
    assert mean[0].item() == pytest.approx(0.75)
    assert torch.isnan(mean[1:]).all()  # partly filled rings do not count
    assert buf.count.tolist() == [4, 1, 0]


def test_ring_keeps_only_the_last_k_values():
    buf = ReplayBuffer(1, 3)
    buf.push_(torch.tensor([0.0, 0.0, 0.0]), torch.tensor([0, 0, 0]))
    assert buf.mean().item() == 0.0
    buf.push_(torch.tensor([1.0, 1.0]), torch.tensor([0, 0]))
    assert buf.mean().item() == pytest.approx(2 / 3)
    # more than k samples of one group in one batch: only the last k survive
    buf.push_(torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0]), torch.zeros(7, dtype=torch.int64))
    assert buf.mean().item() == pytest.approx(2 / 3)
    assert sorted(buf.values[0].tolist()) == [0.0, 1.0, 1.0]


@pytest.mark.parametrize("seed", range(5))
def test_vectorized_push_equals_one_sample_at_a_time(seed):
    rng = np.random.default_rng(seed)
    num_groups, size = 5, 6
    buf, ref = ReplayBuffer(num_groups, size), DequeBuffer(num_groups, size)
    probs = rng.dirichlet(np.ones(num_groups) * 0.5)  # skewed: some groups dominate batches
    for _ in range(30):
        n = int(rng.integers(1, 25))  # batches often hold more than k samples of one group
        groups = rng.choice(num_groups, size=n, p=probs)
        values = rng.integers(0, 2, size=n).astype(np.float32)
        values[rng.random(n) < 0.3] = rng.random()  # not only 0/1: order mistakes show up in the mean
        buf.push_(torch.as_tensor(values), torch.as_tensor(groups))
        ref.push(values, groups)
        np.testing.assert_allclose(buf.mean().numpy(), ref.mean(), rtol=1e-6, equal_nan=True)
        assert buf.full.tolist() == [len(r) == size for r in ref.rings]
        for g in range(num_groups):
            if buf.full[g]:
                np.testing.assert_allclose(sorted(buf.values[g].tolist()), sorted(ref.rings[g]), rtol=1e-6)
                # the ring position points at the oldest value: reading from it gives the deque's order
                order = torch.roll(buf.values[g], -int(buf.position[g])).tolist()
                np.testing.assert_allclose(order, list(ref.rings[g]), rtol=1e-6)


def test_state_round_trip():
    rng = np.random.default_rng(0)
    a = ReplayBuffer(4, 5)
    a.push_(torch.as_tensor(rng.random(30), dtype=torch.float32), torch.as_tensor(rng.integers(0, 4, 30)))
    # through bytes, as a checkpoint does (state_dict tensors may share memory with the buffer)
    blob = io.BytesIO()
    torch.save(a.state_dict(), blob)
    blob.seek(0)
    b = ReplayBuffer(4, 5)
    b.load_state_dict(torch.load(blob, weights_only=True))
    assert b.values.data_ptr() != a.values.data_ptr()
    for name in ("values", "position", "count"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    more_values = torch.as_tensor(rng.random(12), dtype=torch.float32)
    more_groups = torch.as_tensor(rng.integers(0, 4, 12))
    a.push_(more_values, more_groups)
    b.push_(more_values, more_groups)
    assert torch.equal(a.values, b.values)
    assert torch.equal(a.position, b.position) and torch.equal(a.count, b.count)
    np.testing.assert_array_equal(a.mean().numpy(), b.mean().numpy())
