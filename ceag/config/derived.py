"""What a derived cell reads: NFT+ES reads its NFT run, CEAG+VS the CEAG runs it selects among."""

from __future__ import annotations

from ceag.config.run_config import RunConfig


# -- planning -----------------------------------------------------------------------------
def training_config(cfg: RunConfig) -> RunConfig:
    """The run that actually trains for ``cfg`` (NFT+ES reads its NFT run)."""
    return cfg.replace(method="nft") if cfg.method == "nft_es" else cfg


def training_configs(cfg: RunConfig) -> list[RunConfig]:
    """The runs that train for ``cfg``: itself, NFT+ES's NFT run, or CEAG+VS's CEAG runs."""
    if cfg.method == "ceag_vs":
        return candidate_configs(cfg)
    return [training_config(cfg)]


def candidate_configs(cfg: RunConfig) -> list[RunConfig]:
    """The CEAG runs a ``ceag_vs`` cell selects among: same setting, each of its ``vs_tolerances``."""
    if cfg.method != "ceag_vs":
        raise ValueError(f"candidate_configs needs a ceag_vs config, got method {cfg.method!r}")
    assert cfg.vs_tolerances is not None  # validation sets them for every ceag_vs config
    return [cfg.replace(method="ceag", tolerance=t, vs_tolerances=None) for t in cfg.vs_tolerances]


def grid_vs_tolerances(tolerance: float, grid_tolerances) -> tuple[float, ...]:
    """A grid cell's candidates: its tolerance and the grid's other tolerances below it."""
    return tuple(sorted({float(t) for t in grid_tolerances if t <= tolerance} | {float(tolerance)}, reverse=True))
