"""Why a preset's settings are what they are, computed from its settings (Markdown for the Launch page)."""

from __future__ import annotations

import math

from ceag.config.grid_spec import GridSpec
from ceag.config.presets import SMALLEST_SHARE, UTKFACE_TRAIN_IMAGES


def utkface_cpu_note(spec: GridSpec, violation: float = 0.1, loss_gap: float = 0.5) -> str:
    """Why the ``utkface_cpu`` preset's dual steps are what they are, computed from its settings (Markdown).

    ``violation``: a hurt group's psi_hat_g - eps after pruning (fraction; on the real folder it is far larger
    at 99 %: ``python -m bench --only real_faces``); ``loss_gap``: EL+RB's loss gap |L_g - L| for the hardest
    group (nats).
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
    dense_milestones = " and ".join(f"{100 * m:g} %" for m in s.get("dense_lr_milestones") or (0.5, 0.75))
    return (
        f"The small CNN with a wide fully connected layer (`{spec.models[0]}`) at {s['image_size']} px on race, "
        f"{methods} at sparsities {', '.join(f'{x:g}' for x in spec.sparsities)}, ε = {spec.tolerances[0]:g}. The "
        f"dense model trains {s['dense_epochs']} epochs (lr {s.get('dense_lr') or s['lr']:g}, ×0.1 at "
        f"{dense_milestones}, weight decay {s.get('dense_weight_decay', s.get('weight_decay', 1e-4)):g}): long "
        "enough to fit its training set, the regime in which the paper found that pruning takes most from the "
        "groups whose training samples the dense model had memorised. It is trained once per seed and data folder "
        "and cached. Then "
        f"pruning {s['prune_epochs']} + fine-tuning {s['finetune_epochs']} epochs at batch {s['batch_size']}: "
        f"about {steps} steps per epoch and {fine_tuning:,} dual steps. A hurt group's constraint is violated by "
        f"about {violation:g} or more after pruning; its multiplier acts once it is comparable with the group's "
        f"share of the training set ({SMALLEST_SHARE:g} to 0.43 on UTKFace). With CEAG's dual step "
        f"{s['dual_lr']:g} it gains about {reach:.2f} per epoch of that violation (the default 0.003: "
        f"{0.003 * violation * steps:.2f}). EL+RB's violations are loss gaps |L_g − L|, never negative and about "
        f"{loss_gap:g} nats for the hardest group, so its multipliers only grow, for the whole run: with its own "
        f"dual step {el_dual:g} by about {el_dual * loss_gap * fine_tuning:.2f} over fine-tuning, against "
        f"{SMALLEST_SHARE:g} for the smallest group's share (at CEAG's {s['dual_lr']:g} it would be "
        f"{s['dual_lr'] * loss_gap * fine_tuning:.1f}). The learning rate {s['lr']:g} drops ×0.1 at {milestones} "
        f"of the run, so that the last {window} epochs, over which each run's spread is measured, run at {final}. "
        "Every run reports whether it settled and whether its constraints acted (Curves, Multipliers).")
