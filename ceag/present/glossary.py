"""What the symbols on the pages and in the report mean, in plain words."""

from __future__ import annotations

GLOSSARY: dict[str, str] = {
    "sparsity": "The fraction of the network's weights that pruning sets to zero: at 95 % sparsity one weight "
                "in twenty is left.",
    "ε (tolerance)": "How much more accuracy than the model as a whole CEAG lets any group lose: it asks for "
                     "ψ_g ≤ ε for every group g.",
    "Δ_g": "The accuracy group g lost to pruning: its accuracy with the dense model minus its accuracy with "
           "the pruned one, in percentage points. Δ (no index) is the same for the whole model.",
    "ψ_g": "The excess accuracy gap of group g: Δ_g − Δ, how much more group g lost than the model as a whole. "
           "Above zero, the group fared worse than the model as a whole (it lost more accuracy, or gained less); below "
           "zero, better.",
    "max_g ψ_g": "The largest ψ_g over all groups: how much more the worst-treated group lost. The headline "
                 "disparity number.",
    "Ψ_PW": "max_g Δ_g − min_g Δ_g: the largest difference between the accuracy two groups lost.",
    "λ_g": "CEAG's Lagrange multiplier for group g. It grows while the group's estimated ψ_g is above ε, and "
           "the larger it is, the more training weighs that group's loss.",
    "ψ̂_g": "The estimate of ψ_g CEAG uses while it trains, from the last few training predictions of each "
            "group (a replay buffer); λ_g follows it.",
    "interval": "A bootstrap confidence interval: the range the number would plausibly take on another draw of "
                "the same number of samples. A small group gives a wide interval.",
    "verdict vs ε": "For a run with a tolerance: meets ε when the group's whole ψ_g interval lies at or below ε, "
                    "exceeds ε when it lies wholly above, cannot tell otherwise. These intervals are widened so "
                    "that all the groups of a split hold together (Bonferroni), so a group truly at ε is called "
                    "'exceeds' rarely.",
    "min detectable gap": "The smallest ψ_g, in points, that this group's number of samples lets one tell from "
                          "zero at the chosen confidence: z · √((1 − n_g/N) · d / n_g), with d the split's share "
                          "of samples on which exactly one of the two models is right. A gap below it may be "
                          "noise.",
    "across seeds": "A mitigation against NFT over every seed run of both: the mean difference, with an interval "
                    "that counts both the seeds and the samples (a hierarchical bootstrap: seeds with "
                    "replacement, then the shared split's samples with replacement, paired).",
}
