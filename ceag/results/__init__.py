"""A results folder: ``layout`` (where everything lies), ``files`` (atomic writes, locks), ``record`` (a run's
record as its folder holds it), ``predictions`` (per-sample predictions) and ``bundle`` (runs packed for
another machine)."""
