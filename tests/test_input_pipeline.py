"""Batches and evaluation passes in the form that runs fastest, with the values of the plain arithmetic."""

import torch

from ceag.datasets.base import Split, batches
from ceag.training.evaluation import outputs
from ceag.training.models import build_model

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


def _split(n: int = 37, dtype=torch.uint8) -> Split:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 6, 5), generator=gen, dtype=torch.uint8)
    if dtype != torch.uint8:
        x = x.to(dtype) / 255
    return Split(x, torch.randint(0, 4, (n,), generator=gen), torch.randint(0, 3, (n,), generator=gen), MEAN, STD)


def _plain(x: torch.Tensor) -> torch.Tensor:
    """The normalization as three separate tensors: x / 255, minus the mean, over the std."""
    x = x.float().div(255.0) if x.dtype == torch.uint8 else x
    return (x - torch.tensor(MEAN).view(1, -1, 1, 1)) / torch.tensor(STD).view(1, -1, 1, 1)


def test_prepared_images_are_channels_last_with_the_plain_values():
    split = _split()
    out = split.prepare(split.x[:10])
    assert out.is_contiguous(memory_format=torch.channels_last) and out.dtype == torch.float32
    assert torch.equal(out, _plain(split.x[:10]))  # the same arithmetic in the same order: bit for bit


def test_preparing_float_inputs_never_changes_the_split():
    split = _split(dtype=torch.float32)
    before = split.x.clone()
    out = split.prepare(split.x[:10])
    assert torch.equal(split.x, before)
    assert torch.allclose(out, _plain(before[:10]))


def test_batches_draw_order_and_flips_as_one_draw_per_batch_did():
    """The epoch's flips are drawn at its start: the same numbers, the same flips, the same generator state."""
    split = _split(37)
    gen = torch.Generator().manual_seed(5)
    got = list(batches(split, 8, gen, flip=True))
    reference = torch.Generator().manual_seed(5)
    order = torch.randperm(len(split), generator=reference)
    for start, batch in zip(range(0, len(split), 8), got, strict=True):
        idx = order[start:start + 8]
        x = _plain(split.x[idx])
        mirror = torch.rand(len(idx), generator=reference) < 0.5
        x = torch.where(mirror.view(-1, 1, 1, 1), x.flip(-1), x)
        assert torch.equal(batch.x, x) and torch.equal(batch.y, split.y[idx]) and torch.equal(batch.g, split.g[idx])
    assert torch.equal(gen.get_state(), reference.get_state())


def test_evaluation_runs_without_autograd_records_and_matches_a_plain_pass():
    split = _split(50)
    model = build_model("cnn_small", (3, 6, 5), 4, 0)
    out = outputs(model, split, batch_size=16)
    assert out.pred.is_inference() and out.loss.is_inference()
    assert model.training  # left as it was
    model.eval()
    with torch.no_grad():
        logits = model(_plain(split.x))
    assert torch.equal(out.pred, logits.argmax(1))
    assert torch.allclose(out.loss, torch.nn.functional.cross_entropy(logits, split.y, reduction="none"), atol=1e-5)
