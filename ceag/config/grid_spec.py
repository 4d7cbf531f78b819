"""Grids of runs: ``GridSpec`` expands its axes into RunConfigs, with settings for every cell and a method's
own settings over them. Tolerance multiplies only the methods that use it (CEAG, CEAG+VS); the pruning criterion
only the methods that prune by one (not FairGRAPE, which chooses its masks itself).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ceag.config.derived import grid_vs_tolerances
from ceag.config.errors import ConfigError
from ceag.config.run_config import RunConfig, from_dict
from ceag.config.vocabulary import BASE_METHOD, GRID_METHODS, MASK_METHODS, METHODS, TOLERANCE_METHODS

DEFAULT_MAX_CELLS = 5000


AXES = ("datasets", "models", "methods", "criteria", "sparsities", "tolerances", "seeds")


_AXIS_FIELDS = ("dataset", "model", "method", "criterion", "sparsity", "tolerance", "seed")


def _check_no_axis(settings: dict[str, Any], where: str) -> None:
    bad = set(settings) & set(_AXIS_FIELDS)
    if bad:
        name = sorted(bad)[0]
        axis = AXES[_AXIS_FIELDS.index(name)]
        raise ConfigError(f"{where}.{name}", settings[name], f"use the grid axis '{axis}' instead")


@dataclass(frozen=True)
class GridSpec:
    """Axes of a grid, ``settings`` shared by every cell (any RunConfig field) and
    ``method_settings``: settings for the cells of one method only, over the shared ones
    (``{"el_rb": {"dual_lr": 1e-4}}``). NFT+ES cells take NFT's and CEAG+VS cells CEAG's first,
    since they read those runs. ``criteria``: the pruning criteria (``RunConfig.criterion``) every
    method but FairGRAPE runs with; a criterion's options (``criterion_batches``,
    ``synflow_iterations``) go in ``settings``.
    """

    datasets: tuple[str, ...] = ("digits",)
    models: tuple[str, ...] = ("mlp",)
    methods: tuple[str, ...] = GRID_METHODS
    criteria: tuple[str, ...] = ("magnitude",)
    sparsities: tuple[float, ...] = (0.95,)
    tolerances: tuple[float, ...] = (0.02,)
    seeds: tuple[int, ...] = (0,)
    settings: dict[str, Any] = field(default_factory=dict)
    method_settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def cell_settings(self, method: str) -> dict[str, Any]:
        """The settings of ``method``'s cells: shared ones, then its base method's, then its own."""
        base = BASE_METHOD.get(method)
        return {**self.settings, **(self.method_settings.get(base, {}) if base else {}),
                **self.method_settings.get(method, {})}

    def with_settings(self, settings: dict[str, Any]) -> GridSpec:
        """This grid with ``settings`` for every cell: each replaces the shared value and any
        method's own (a value typed for the whole grid holds in every cell)."""
        own = {m: {k: v for k, v in s.items() if k not in settings} for m, s in self.method_settings.items()}
        return GridSpec.from_dict({**self.to_dict(), "settings": {**self.settings, **settings},
                                   "method_settings": {m: s for m, s in own.items() if s}})

    def configs(self, max_cells: int = DEFAULT_MAX_CELLS) -> list[RunConfig]:
        """The grid's distinct RunConfigs, validated, in a stable order."""
        for axis in AXES:
            if len(getattr(self, axis)) == 0:
                raise ConfigError(axis, [], "a grid axis needs at least one value")
        _check_no_axis(self.settings, "settings")
        for method, own in self.method_settings.items():
            _check_no_axis(own, f"method_settings.{method}")
        n = self.size()
        if n > max_cells:
            raise ConfigError("grid", f"{n} cells", f"at most {max_cells} cells per grid; split it or raise the limit")
        seen: dict[str, RunConfig] = {}
        for dataset, model, method, sparsity, seed in itertools.product(
                self.datasets, self.models, self.methods, self.sparsities, self.seeds):
            tolerances = self.tolerances if method in TOLERANCE_METHODS else (None,)
            for criterion, tol in itertools.product(self._criteria(method), tolerances):
                shared = self.cell_settings(method)
                cell = {**shared, "dataset": dataset, "model": model, "method": method, "criterion": criterion,
                        "sparsity": sparsity, "tolerance": tol, "seed": seed}
                if method == "ceag_vs" and isinstance(tol, (int, float)) and shared.get("vs_tolerances") is None:
                    # CEAG+VS selects among the cell's tolerance and the grid's tolerances below it
                    cell["vs_tolerances"] = list(grid_vs_tolerances(tol, self.tolerances))
                try:
                    cfg = from_dict(cell)
                except ConfigError as err:  # name where a method's own value came from
                    where = next((m for m in (method, BASE_METHOD.get(method))
                                  if m and err.field in self.method_settings.get(m, {})), None)
                    if where is None:
                        raise
                    raise ConfigError(f"method_settings.{where}.{err.field}", err.value, err.allowed) from None
                seen.setdefault(cfg.run_id, cfg)
        return list(seen.values())

    def _criteria(self, method: str) -> tuple[str, ...]:
        """The criteria of ``method``'s cells: the axis, or magnitude alone for a method that chooses its masks."""
        return ("magnitude",) if method in MASK_METHODS else self.criteria

    def size(self) -> int:
        per_method = sum((len(self.tolerances) if m in TOLERANCE_METHODS else 1) * len(self._criteria(m))
                         for m in self.methods)
        return len(self.datasets) * len(self.models) * per_method * len(self.sparsities) * len(self.seeds)

    def to_dict(self) -> dict[str, Any]:
        out = {**{a: list(getattr(self, a)) for a in AXES}, "settings": dict(self.settings)}
        if self.method_settings:
            out["method_settings"] = {m: dict(s) for m, s in self.method_settings.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GridSpec:
        if not isinstance(data, dict):
            raise ConfigError("spec", type(data).__name__, "a grid spec is a JSON object")
        known = set(AXES) | {"settings", "method_settings"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(unknown[0], data[unknown[0]], f"unknown grid key; known: {', '.join(sorted(known))}")
        kwargs: dict[str, Any] = {}
        for axis in AXES:
            if axis in data:
                value = data[axis]
                if not isinstance(value, list):
                    value = [value]
                kwargs[axis] = tuple(value)
        settings = data.get("settings", {})
        if not isinstance(settings, dict):
            raise ConfigError("settings", settings, "must be a JSON object of RunConfig settings")
        kwargs["settings"] = settings
        own = data.get("method_settings", {})
        if not isinstance(own, dict) or not all(isinstance(v, dict) for v in own.values()):
            raise ConfigError("method_settings", own, "must be a JSON object of {method: {setting: value}}, e.g. "
                              '{"el_rb": {"dual_lr": 0.0001}}')
        unknown = sorted(set(own) - set(METHODS))
        if unknown:
            raise ConfigError("method_settings", unknown[0], f"unknown method; known: {', '.join(METHODS)}")
        kwargs["method_settings"] = {m: dict(v) for m, v in own.items()}
        return cls(**kwargs)

    @classmethod
    def from_file(cls, path: str | Path) -> GridSpec:
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise ConfigError("spec", str(path), f"cannot read the spec file: {err.strerror}") from err
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError("spec", str(path), f"not valid JSON (line {err.lineno}, column {err.colno}: "
                              f"{err.msg})") from err
        return cls.from_dict(data)
