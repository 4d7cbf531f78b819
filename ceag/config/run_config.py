"""Run configuration: one frozen, validated dataclass whose canonical JSON names a run.

Importing this module does not import torch, so the store and the app can use it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

from ceag.config.errors import ConfigError
from ceag.config.identity import digest, file_sha256
from ceag.config.settings import RunSettings
from ceag.config.validation import validate

# Settings that change where or how fast a run happens, not what it computes.
NOT_IN_RUN_ID = ("device", "data_dir", "eval_batch_size")


# Settings of held-out multipliers: in the run id only when constraint_data is "val".
HELDOUT_FIELDS = ("constraint_data", "heldout_every")


# A criterion's own options: in the run id only with that criterion.
CRITERION_OPTIONS = {"criterion_batches": "snip", "synflow_iterations": "synflow"}


# FairGRAPE's settings: in the run id only for method fairgrape.
FAIRGRAPE_FIELDS = ("fairgrape_batches", "fairgrape_para_batch", "fairgrape_order")


@dataclass(frozen=True)
class RunConfig(RunSettings):
    """Everything that determines one pruning experiment, validated on construction (``ConfigError`` names
    the setting, the value and what is allowed), with its identity: the run id hashes the canonical settings.

    The settings and their defaults are ``RunSettings``'s.
    """

    def __post_init__(self) -> None:
        validate(self)

    # -- identity -----------------------------------------------------------------------
    def canonical(self) -> dict[str, Any]:
        """The settings that determine results, as plain JSON types."""
        out = {}
        for f in fields(self):
            if f.name in NOT_IN_RUN_ID or (f.name == "data_fingerprint" and self.data_fingerprint is None):
                continue
            if f.name in HELDOUT_FIELDS and self.constraint_data == "train":
                continue
            if f.name == "vs_tolerances" and self.vs_tolerances is None:
                continue
            if not self._names_the_run(f.name):
                continue
            v = getattr(self, f.name)
            if f.name == "dense_checkpoint" and v is not None:
                v = "sha256:" + file_sha256(v)[:16]  # the weights' content, not where they lie
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    def _names_the_run(self, name: str) -> bool:
        """Whether a pruning-choice setting is part of the run: the criterion away from magnitude, a criterion's
        option with that criterion, FairGRAPE's settings with method fairgrape."""
        if name == "criterion":
            return self.criterion != "magnitude"
        if name in CRITERION_OPTIONS:
            return self.criterion == CRITERION_OPTIONS[name]
        if name in FAIRGRAPE_FIELDS:
            return self.method == "fairgrape"
        return True

    def canonical_json(self) -> str:
        return json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))

    @property
    def run_id(self) -> str:
        return digest(self.canonical_json())

    def key(self, names: tuple[str, ...]) -> str:
        """Hash of a subset of the canonical settings (used for shared phases).

        A setting absent from the canonical form (an old config's missing fingerprint) is left
        out, so keys computed before it existed stay the same.
        """
        c = self.canonical()
        return digest(json.dumps({n: c[n] for n in names if n in c}, sort_keys=True, separators=(",", ":")))

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes``; other data (dataset or folder) drops the fingerprint (resolved again)."""
        base = self.to_dict()
        if {"dataset", "data_dir"} & set(changes) and "data_fingerprint" not in changes:
            base["data_fingerprint"] = None
        return from_dict({**base, **changes})

    def to_dict(self) -> dict[str, Any]:
        d = self.canonical()
        d["device"] = self.device
        d["data_dir"] = self.data_dir
        d["dense_checkpoint"] = self.dense_checkpoint
        d["data_fingerprint"] = self.data_fingerprint
        d["eval_batch_size"] = self.eval_batch_size
        d["constraint_data"] = self.constraint_data
        d["heldout_every"] = self.heldout_every
        d["vs_tolerances"] = None if self.vs_tolerances is None else list(self.vs_tolerances)
        for name in ("criterion", *CRITERION_OPTIONS, *FAIRGRAPE_FIELDS):
            d[name] = getattr(self, name)
        return d


def config_fields() -> list[str]:
    return [f.name for f in fields(RunConfig)]


def from_dict(data: dict[str, Any], *, stored: bool = False) -> RunConfig:
    """Build a config from JSON-like data; unknown keys are an error that lists the known ones.

    ``stored``: ``data`` is a run folder's config.json. One written before data fingerprints
    existed (no ``data_fingerprint`` key) keeps none, so it hashes to its run id as before.
    """
    if not isinstance(data, dict):
        raise ConfigError("config", type(data).__name__, "expected a JSON object of settings")
    known = set(config_fields())
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(unknown[0], data[unknown[0]], f"unknown setting; known: {', '.join(sorted(known))}")
    clean: dict[str, Any] = {}
    for k, v in data.items():
        clean[k] = tuple(v) if isinstance(v, list) else v
    cfg = RunConfig(**clean)
    if stored and "data_fingerprint" not in data:
        object.__setattr__(cfg, "data_fingerprint", None)
    return cfg
