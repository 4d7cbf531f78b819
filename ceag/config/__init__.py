"""What names a run or a grid: settings, their validation and identity, grids and presets (no torch).

- ``vocabulary``: method keys and their labels, models, pruning modes, every other fixed choice.
- ``registry``: the datasets, their targets and protected attributes.
- ``settings``: the fields of a run and their defaults. ``validation``: every setting checked.
- ``errors``: ``ConfigError``. ``run_config``: ``RunConfig``, validated, with its run id.
- ``identity``: file hashing, run ids, the data fingerprint's formula and rules.
- ``keys``: the shared phases' keys. ``schedule``: the learning rate's steps, the diagnostic window.
- ``grid_spec``: ``GridSpec``. ``derived``: what derived cells read. ``presets``: named grids.
"""
