"""What is computed from stored runs: ``bootstrap`` (paired intervals) and ``audit`` (chosen runs group by group)."""
