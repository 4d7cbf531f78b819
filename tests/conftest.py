"""Shared fixtures: tiny configurations and a throwaway results folder."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ceag.config.run_config import RunConfig  # noqa: E402


def fast_config(**changes) -> RunConfig:
    """A run that takes well under a second on CPU: synthetic data, MLP, 3 + 2 + 3 epochs."""
    settings = dict(
        dataset="synthetic", model="mlp", method="ceag", sparsity=0.8, tolerance=0.01,
        num_groups=4, dense_epochs=3, prune_epochs=2, finetune_epochs=3,
        buffer_size=8, dual_lr=0.05, checkpoint_every=1, device="cpu",
    )
    settings.update(changes)
    return RunConfig(**settings)


@pytest.fixture
def fast_cfg() -> RunConfig:
    return fast_config()


@pytest.fixture
def results_dir(tmp_path) -> Path:
    return tmp_path / "results"


@pytest.fixture(scope="session")
def make_cfg():
    """``make_cfg(**changes)``: the fast config with some settings changed."""
    return fast_config


@pytest.fixture
def one_thread():
    """Results depend on the thread count: train in this process with one thread, like a CLI child."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
