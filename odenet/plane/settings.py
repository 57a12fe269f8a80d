"""What the settings of the two 2-D models share: one set of checks and one dict form.

:class:`~odenet.plane.classifier.PlaneConfig` and :class:`~odenet.plane.density.DensityConfig`
are frozen dataclasses that subclass :class:`PlaneSettings`; each names its whole-number fields
(with their ranges) and its non-negative number fields in two class tables, and every check, with
its one-line message, lives here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from typing import Any, Self

from odenet.errors import ConfigError
from odenet.ode.gradients import GRADIENT_METHODS
from odenet.ode.solvers import SolverSpec

__all__ = ["PlaneSettings", "SEED_RANGE"]

SEED_RANGE = (0, 2**31 - 1)


class PlaneSettings:
    """Validation on construction, ``replace`` and ``to_dict`` for a 2-D model's frozen config.

    Subclasses set ``_WHOLE`` (field name -> inclusive (low, high) range) and ``_NON_NEGATIVE``
    (finite numbers >= 0; ``lr`` must moreover be > 0), and have ``solver`` and ``gradient`` fields.
    """

    _WHOLE: dict[str, tuple[int, int]] = {}
    _NON_NEGATIVE: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, (lo, hi) in self._WHOLE.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ConfigError(f"{name} must be a whole number from {lo} to {hi:,}, got {v!r}")
        solver = self.solver
        if not isinstance(solver, SolverSpec):
            raise ConfigError(f"solver must be a SolverSpec, got {type(solver).__name__}")
        gradient = self.gradient
        if gradient not in GRADIENT_METHODS:
            raise ConfigError(f"gradient must be one of {', '.join(GRADIENT_METHODS)}, got {gradient!r}")
        for name in self._NON_NEGATIVE:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"{name} must be a finite number >= 0, got {v!r}")
        if getattr(self, "lr", 1.0) == 0:
            raise ConfigError("lr must be > 0")

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied (validated again)."""
        return replace(self, **changes)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values; the solver without its unset (None) fields."""
        d = asdict(self)  # type: ignore[call-overload]
        d["solver"] = {k: v for k, v in asdict(self.solver).items() if v is not None}
        return d
