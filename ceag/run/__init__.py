"""One run: ``data`` (which data it reads), ``phases`` (dense and pruning, shared, each under its lock),
``pipeline`` (a run from its phases to its record) and ``derived`` (NFT+ES and CEAG+VS from other runs)."""
