"""Grids: ``plan`` (the phase graph), ``scheduler`` (what is ready, running, done), ``worker`` (one task),
``pool`` and ``ray_cluster`` (the executors), ``driver`` (``run_grid``), ``report`` (the progress feed) and
``jobs`` (grids launched in the background from the app)."""
