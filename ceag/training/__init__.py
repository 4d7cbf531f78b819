"""Training: the flat loop (``engine``) and what it uses.

``models``, ``pruning`` (gradual magnitude pruning, masks), ``metrics`` (per-group accuracy and the
paper's gaps), ``methods/`` (NFT, EL+RB, CEAG and held-out multipliers), ``optim``, ``evaluation``,
``device``, ``memory`` (evaluation batch sizes), ``checkpoints`` (dense state dicts as people save them).
"""
