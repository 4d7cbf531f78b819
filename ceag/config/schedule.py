"""A run's schedule in epochs: the learning rate's steps and the diagnostic window at the end of fine-tuning."""

from __future__ import annotations

import math


def lr_at(epoch: int, total: int, base: float, milestones: tuple[float, ...], gamma: float) -> float:
    """Step schedule: multiply by ``gamma`` from epoch ``int(m * total)`` on, for each milestone fraction ``m``.

    ``int`` (not ceil) as in the paper's code (``int(milestone * epochs)`` into ``MultiStepLR``,
    src/utils/experiment_utils.py): 0.9 of 47 epochs decays from epoch 42.
    """
    return base * gamma ** sum(epoch >= int(m * total) for m in milestones)


WINDOW_FRACTION = 0.2


MIN_WINDOW = 3


def window_length(finetune_epochs: int) -> int:
    """Epochs in the diagnostic window: 20 % of fine-tuning, at least 3, at most all of it."""
    if finetune_epochs <= 0:
        return 0
    return min(finetune_epochs, max(MIN_WINDOW, math.ceil(WINDOW_FRACTION * finetune_epochs)))


def window_first_epoch(total_epochs: int, finetune_epochs: int) -> int:
    """The first epoch count (1-based: the evaluation after that many epochs) in the window.

    Returns ``total_epochs + 1`` when there is no window (no fine-tuning).
    """
    return total_epochs - window_length(finetune_epochs) + 1
