"""Can a run's numbers be trusted? Computed from its records when it ends (``run.run_diagnostics``), and
from the stored records for runs made before a check existed. Numpy and pandas only.

- ``convergence``: did accuracy and max_g ψ_g settle over the last fifth of fine-tuning?
- ``constraints``: did CEAG's or EL+RB's multipliers act, and did the buffered estimates agree?
- ``learning``: did the dense model learn anything, did the pruned one collapse to one class?
"""
