"""The interface every method implements, and the dense reference it compares against."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ceag.config.run_config import RunConfig
from ceag.training.dual_counter import ConstraintCounter


@dataclass
class DenseReference:
    """The dense model on the training split: per-group and overall accuracy and loss.

    group_* are (G,) tensors; ``prior`` (G,) is each group's share of the training split.
    """

    group_accuracy: torch.Tensor
    group_loss: torch.Tensor
    accuracy: float
    loss: float
    prior: torch.Tensor


class Diverged(RuntimeError):
    """Training stopped because the loss or the multipliers became non-finite or exploded."""

    def __init__(self, step: int, reason: str):
        self.step = step
        self.reason = reason
        super().__init__(f"diverged at step {step}: {reason}")


class Method:
    """Plain fine-tuning (NFT). Subclasses change the objective while ``active``.

    ``objective`` receives per-sample losses (B,) with grad, per-sample 0/1 correctness (B,)
    and group ids (B,), and returns the scalar to minimize. Constrained methods do their dual
    step inside it, before returning the primal objective.
    """

    key = "nft"
    mitigates = False      # changes the training objective
    selects_best = False   # reports the best iterate on the selection split
    selects_masks = False  # chooses the masks at every pruning event (instead of the run's criterion)
    uses_tolerance = False

    def __init__(self, cfg: RunConfig, num_groups: int, dense: DenseReference, device: torch.device):
        self.cfg = cfg
        self.num_groups = num_groups
        self.dense = dense
        self.device = device

    def objective(self, loss: torch.Tensor, correct: torch.Tensor, groups: torch.Tensor,
                  active: bool) -> torch.Tensor:
        return loss.mean()

    # Traces of the dual state (None for unconstrained methods): (G,) tensors.
    multipliers: torch.Tensor | None = None
    violations: torch.Tensor | None = None
    # Tallies of every dual step for the constraint diagnostic (ceag.diagnostics.ConstraintCounter).
    counter: ConstraintCounter | None = None

    def check_finite(self, step: int, objective: torch.Tensor) -> None:
        if not torch.isfinite(objective):
            raise Diverged(step, f"training objective is {float(objective.detach())}")

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class NFTES(Method):
    """NFT, reporting the best iterate (by accuracy on the validation split when there is one)."""

    key = "nft_es"
    selects_best = True


class FairGRAPE(Method):
    """NFT whose masks FairGRAPE chooses at every pruning event (``ceag.training.fairgrape.fairgrape_masks``,
    called by the engine): each layer keeps weights so that every protected group keeps its share of the
    layer's importance. Fine-tuning is plain cross-entropy; no tolerance, no multipliers."""

    key = "fairgrape"
    selects_masks = True
