"""Why a preset's settings are what they are, computed from its settings (Markdown for the Launch page)."""

from __future__ import annotations

import math

from ceag.config.grid_spec import GridSpec
from ceag.config.presets import SMALLEST_SHARE, UTKFACE_TRAIN_IMAGES


def utkface_cpu_note(spec: GridSpec, violation: float = 0.1, loss_gap: float = 0.5) -> str:
    """Why the ``utkface_cpu`` preset's dual steps are what they are, computed from its settings (Markdown).

    ``violation``: a hurt group's psi_hat_g - eps after pruning (fraction); ``loss_gap``: EL+RB's
    loss gap |L_g - L| for the hardest group (nats; 0.51 averaged over fine-tuning in
    ``python -m bench --only utkface_cpu``).
    """
    s = spec.settings
    steps = math.ceil(UTKFACE_TRAIN_IMAGES / s["batch_size"])
    reach = s["dual_lr"] * violation * steps
    from ceag.config.schedule import lr_at, window_length

    el_dual = spec.cell_settings("el_rb").get("dual_lr", s["dual_lr"])
    total = s["prune_epochs"] + s["finetune_epochs"]
    window = window_length(s["finetune_epochs"])
    rates = {lr_at(e, total, s["lr"], tuple(s["lr_milestones"]), s.get("lr_gamma", 0.1))
             for e in range(total - window, total)}
    final = f"{min(rates):g}" if len(rates) == 1 else f"{max(rates):g} and {min(rates):g}"
    methods = ", ".join(spec.methods).upper().replace("_", "+")
    fine_tuning = steps * s["finetune_epochs"]
    milestones = " and ".join(f"{100 * m:g} %" for m in s["lr_milestones"])
    return (
        f"The half-width small CNN (`{spec.models[0]}`) at {s['image_size']} px on race, {methods} at sparsities "
        f"{', '.join(f'{x:g}' for x in spec.sparsities)}, ε = {spec.tolerances[0]:g}: dense {s['dense_epochs']} + "
        f"pruning {s['prune_epochs']} + fine-tuning {s['finetune_epochs']} epochs at batch {s['batch_size']}, so "
        f"about {steps} steps per epoch and {fine_tuning:,} dual steps. A hurt group's constraint is violated by "
        f"about {violation:g} after pruning; its multiplier acts once it is comparable with the group's share of "
        f"the training set ({SMALLEST_SHARE:g} to 0.43 on UTKFace). With CEAG's dual step {s['dual_lr']:g} it "
        f"gains about {reach:.2f} per epoch of that violation (the default 0.003: {0.003 * violation * steps:.2f}). "
        f"EL+RB's violations are loss gaps |L_g − L|, never negative and about {loss_gap:g} nats for the hardest "
        f"group, so its multipliers only grow, for the whole run: with its own dual step {el_dual:g} by about "
        f"{el_dual * loss_gap * fine_tuning:.2f} over fine-tuning, against {SMALLEST_SHARE:g} for the smallest "
        f"group's share (at CEAG's {s['dual_lr']:g} it would be {s['dual_lr'] * loss_gap * fine_tuning:.1f}). The "
        f"learning rate {s['lr']:g} drops ×0.1 at {milestones} of the run, so that the last {window} epochs, over "
        f"which each run's spread is measured, run at {final}. Every run reports whether it settled and whether "
        "its constraints acted (Curves, Multipliers).")
