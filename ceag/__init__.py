"""ceag: the disparate impact of pruning, and CEAG's constraints against it.

The folders follow the path of the data, each importing only from those above it in this list:

- ``config``: what names a run or a grid (RunConfig, GridSpec, presets, phase keys, the method vocabulary).
- ``datasets``: reading data folders and built-in data into grouped splits, with their fingerprint.
- ``training``: the flat training loop, models, pruning, metrics and the methods (NFT, EL+RB, CEAG).
- ``diagnostics``: whether a run's numbers can be trusted (settled, constraints acted, learned).
- ``results``: a results folder: where everything lies, files written atomically, the run record, bundles.
- ``store``: the DuckDB store and its named queries.
- ``run``: one run's phases and pipeline, and the derived methods (NFT+ES, CEAG+VS).
- ``grid``: grids as phase graphs, scheduled on a local pool or a Ray cluster; background jobs.
- ``analysis``: paired bootstrap intervals and the audit of chosen runs.
- ``present``: sentences, charts, the HTML report and terminal output, generated from results.
- ``cli``: the command line (``python -m ceag``); the dashboard (``app.py``, ``dashboard/``) sits on top.

docs/design.md explains the layout and the path of a run's data through it.
"""
