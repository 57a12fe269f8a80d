"""Explicit Runge-Kutta methods as data.

Every method is a :class:`ButcherTableau` plus a name and an order; one generic step,
:func:`rk_step`, runs all of them.  The notebook's interface is kept: a method has
``.name``, ``.order`` and ``.step(f, t, dt, y)``.

Vector fields are called as ``f(t, y)`` where ``t`` is a Python float and ``y`` is a
tensor (or anything supporting ``+`` and scalar ``*``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from odenet.errors import OdenetError

__all__ = [
    "TableauError",
    "UnknownIntegrator",
    "ButcherTableau",
    "RungeKuttaMethod",
    "RKStep",
    "rk_step",
    "custom_method",
    "method_from_spec",
    "method_key",
    "method_spec",
    "get_method",
    "method_names",
    "METHODS",
    "Euler",
    "ModifiedEuler",
    "Midpoint",
    "Ralston",
    "Kutta3",
    "RungeKutta4",
    "RungeKutta38",
    "BogackiShampine32",
    "DormandPrince54",
]

VectorField = Callable[[float, Any], Any]
_TOL = 1e-10


class TableauError(OdenetError, ValueError):
    """A Butcher tableau is inconsistent (names the offending entry)."""


class UnknownIntegrator(OdenetError, ValueError):
    """An integrator name that is neither built in nor carried by a custom tableau."""


def _as_floats(name: str, values: Sequence[Any]) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise TableauError(f"{name} must be a list of numbers, got {values!r}") from exc
    for i, v in enumerate(out):
        if not math.isfinite(v):
            raise TableauError(f"{name}[{i}] must be finite, got {v}")
    return out


@dataclass(frozen=True)
class ButcherTableau:
    """Coefficients of an explicit Runge-Kutta method.

    ``a`` is the full s x s matrix (strictly lower triangular), ``b`` the solution weights,
    ``c`` the nodes and ``b_error`` (optional) the weights of the embedded error estimate,
    ``b - b_hat``, which must sum to zero.  Validated on construction.
    """

    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    b_error: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        b = _as_floats("b", self.b)
        s = len(b)
        if s == 0:
            raise TableauError("b must have at least one weight (one stage)")
        if len(self.a) != s:
            raise TableauError(f"a must have {s} rows (one per stage, len(b) = {s}), got {len(self.a)}")
        rows = []
        for i, row in enumerate(self.a):
            r = _as_floats(f"a[{i}]", row)
            if len(r) < i:
                raise TableauError(f"a[{i}] must have at least {i} entries, got {len(r)}")
            if any(abs(v) > 0 for v in r[i:]):
                raise TableauError(
                    f"a must be strictly lower triangular (explicit method): a[{i}] = {list(r)} "
                    f"has a non-zero entry on or above the diagonal"
                )
            rows.append(r[:i] + (0.0,) * (s - i))
        c = _as_floats("c", self.c)
        if len(c) != s:
            raise TableauError(f"c must have {s} nodes (len(b) = {s}), got {len(c)}")
        for i, r in enumerate(rows):
            if abs(sum(r) - c[i]) > _TOL:
                raise TableauError(f"row sum of a[{i}] is {sum(r):.12g} but c[{i}] = {c[i]:.12g}; they must be equal")
        if abs(sum(b) - 1.0) > _TOL:
            raise TableauError(f"weights b must sum to 1, got sum(b) = {sum(b):.12g}")
        b_err = None
        if self.b_error is not None:
            b_err = _as_floats("b_error", self.b_error)
            if len(b_err) != s:
                raise TableauError(f"b_error must have {s} entries (len(b) = {s}), got {len(b_err)}")
            if abs(sum(b_err)) > _TOL:
                raise TableauError(f"embedded error weights b_error must sum to 0, got {sum(b_err):.12g}")
        object.__setattr__(self, "a", tuple(rows))
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "c", c)
        object.__setattr__(self, "b_error", b_err)

    @property
    def stages(self) -> int:
        """Number of vector-field evaluations per step."""
        return len(self.b)

    @property
    def fsal(self) -> bool:
        """First Same As Last: the last stage is evaluated at ``(t + dt, y_next)``, so it is the
        next step's first stage and a step costs ``stages - 1`` new evaluations (dopri5, bosh3).
        Read off the tableau: ``c[-1] == 1``, the last row of ``a`` equals ``b`` and ``c[0] == 0``."""
        s = self.stages
        return (s > 1 and self.c[0] == 0.0 and abs(self.c[-1] - 1.0) <= _TOL
                and all(abs(x - y) <= _TOL for x, y in zip(self.a[-1][: s - 1], self.b[: s - 1]))
                and self.b[-1] == 0.0)

    @property
    def embedded(self) -> bool:
        """Whether the tableau carries an embedded error estimate (adaptive stepping)."""
        return self.b_error is not None

    def satisfied_order(self) -> int:
        """Highest order (up to 4) whose order conditions the tableau satisfies."""
        a, b, c = self.a, self.b, self.c
        s = range(self.stages)
        ac = [sum(a[i][j] * c[j] for j in s) for i in s]
        conds = {
            1: [sum(b) - 1],
            2: [sum(b[i] * c[i] for i in s) - 1 / 2],
            3: [
                sum(b[i] * c[i] ** 2 for i in s) - 1 / 3,
                sum(b[i] * ac[i] for i in s) - 1 / 6,
            ],
            4: [
                sum(b[i] * c[i] ** 3 for i in s) - 1 / 4,
                sum(b[i] * c[i] * ac[i] for i in s) - 1 / 8,
                sum(b[i] * a[i][j] * c[j] ** 2 for i in s for j in s) - 1 / 12,
                sum(b[i] * a[i][j] * ac[j] for i in s for j in s) - 1 / 24,
            ],
        }
        order = 0
        for p in (1, 2, 3, 4):
            if all(abs(v) <= 1e-9 for v in conds[p]):
                order = p
            else:
                break
        return order


class RKStep(NamedTuple):
    """One step's result: the new state, the embedded error estimate (None without a pair) and
    the last stage ``k_s`` (for FSAL tableaux this is ``f(t + dt, y_next)``, the next ``k_1``).
    With ``keep_stages=True`` also every stage: ``ks`` (the slopes ``k_i``) and ``inputs`` (the states
    ``Y_i = y + dt * sum_j a_ij k_j`` that ``f`` was evaluated at, at times ``t + c_i dt``)."""

    y: Any
    error: Any | None
    k_last: Any
    ks: tuple[Any, ...] | None = None
    inputs: tuple[Any, ...] | None = None


def rk_step(tableau: ButcherTableau, f: VectorField, t: float, dt: float, y: Any, k1: Any | None = None,
            keep_stages: bool = False) -> RKStep:
    """One explicit RK step of ``tableau`` (the single step routine of the project: solvers, gradient
    methods and the stage views of the app all run it).

    ``k1``, when given, is ``f(t, y)`` already known (FSAL reuse, or a rejected step retried
    from the same point) and is not evaluated again.  Zero coefficients are skipped, so Euler
    and RK4 cost exactly what a hand-written step costs.  ``keep_stages`` returns every stage's
    input and slope as well (for drawing a step; off in solves, where it would keep them alive).
    """
    k: list[Any] = []
    inputs: list[Any] | None = [] if keep_stages else None
    for i in range(tableau.stages):
        if i == 0 and k1 is not None:
            k.append(k1)
            if inputs is not None:
                inputs.append(y)
            continue
        yi = y
        for j, aij in enumerate(tableau.a[i][:i]):
            if aij != 0.0:
                yi = yi + (dt * aij) * k[j]
        if inputs is not None:
            inputs.append(yi)
        k.append(f(t + tableau.c[i] * dt, yi))
    incr = None
    for bi, ki in zip(tableau.b, k):
        if bi != 0.0:
            incr = bi * ki if incr is None else incr + bi * ki
    y_next = y + dt * incr
    err = None
    if tableau.b_error is not None:
        for ei, ki in zip(tableau.b_error, k):
            if ei != 0.0:
                err = ei * ki if err is None else err + ei * ki
        err = dt * err
    if inputs is not None:
        return RKStep(y_next, err, k[-1], tuple(k), tuple(inputs))
    return RKStep(y_next, err, k[-1])


@dataclass(frozen=True)
class RungeKuttaMethod:
    """An explicit RK method: a tableau with a name and an order.

    ``order`` is the order of the propagated solution; ``error_order`` is the order of the
    embedded estimate (adaptive methods only).  ``step`` keeps the notebook's signature.
    """

    name: str
    order: int
    tableau: ButcherTableau
    error_order: int | None = None
    description: str = field(default="", compare=False)

    @property
    def stages(self) -> int:
        return self.tableau.stages

    @property
    def adaptive(self) -> bool:
        """True when the method has an embedded pair usable by the adaptive solver."""
        return self.tableau.embedded

    def nfe(self, steps: int) -> int:
        """Evaluations that ``steps`` consecutive fixed steps cost: stages x steps, less one per
        step after the first for FSAL tableaux (their last stage is the next step's first)."""
        return self.stages * steps - (steps - 1 if self.tableau.fsal and steps > 0 else 0)

    def step(self, f: VectorField, t: float, dt: float, y: Any) -> Any:
        """Advance ``y`` from ``t`` to ``t + dt`` (notebook interface)."""
        return rk_step(self.tableau, f, t, dt, y).y

    def step_with_error(self, f: VectorField, t: float, dt: float, y: Any) -> tuple[Any, Any]:
        """Advance and return the embedded local error estimate as well."""
        if not self.adaptive:
            raise ValueError(f"method {self.name!r} has no embedded error estimate (b_error); "
                             "it cannot step adaptively")
        step = rk_step(self.tableau, f, t, dt, y)
        return step.y, step.error

    def __repr__(self) -> str:
        return f"RungeKuttaMethod({self.name!r}, order={self.order}, stages={self.stages})"


def custom_method(
    name: str,
    a: Sequence[Sequence[float]],
    b: Sequence[float],
    c: Sequence[float] | None = None,
    order: int | None = None,
    b_error: Sequence[float] | None = None,
) -> RungeKuttaMethod:
    """Build a method from plain lists of numbers, validating everything.

    ``c`` defaults to the row sums of ``a``.  ``order`` defaults to the highest order (<= 4)
    whose order conditions hold; a claimed order above what the conditions give is refused.
    """
    if not isinstance(name, str) or not name.strip():
        raise TableauError(f"name must be a non-empty string, got {name!r}")
    try:
        rows = [list(r) for r in a]
    except TypeError as exc:
        raise TableauError(f"a must be a list of rows (lists of numbers), got {a!r}") from exc
    if c is None:
        c = [sum(_as_floats(f"a[{i}]", r)) for i, r in enumerate(rows)]
    tab = ButcherTableau(a=tuple(tuple(r) for r in rows), b=tuple(b), c=tuple(c),
                         b_error=None if b_error is None else tuple(b_error))
    satisfied = tab.satisfied_order()
    if satisfied < 1:
        raise TableauError("tableau is not consistent (order conditions fail at order 1)")
    if order is None:
        order = satisfied
    else:
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise TableauError(f"order must be a positive integer, got {order!r}")
        if satisfied < 4 and order > satisfied:
            raise TableauError(
                f"order {order} claimed but the tableau satisfies the order conditions only up to order {satisfied}"
            )
    return RungeKuttaMethod(name=name.strip(), order=order, tableau=tab,
                            error_order=(order - 1) if b_error is not None else None)


def _method(name: str, order: int, a, b, c, b_error=None, error_order=None, description="") -> RungeKuttaMethod:
    tab = ButcherTableau(a=tuple(tuple(r) for r in a), b=tuple(b), c=tuple(c),
                         b_error=None if b_error is None else tuple(b_error))
    return RungeKuttaMethod(name, order, tab, error_order, description)


Euler = _method("Euler", 1, [[]], [1.0], [0.0],
                description="Forward Euler: order 1, 1 stage. The ODE analogue of a ResNet block.")
ModifiedEuler = _method("ModifiedEuler", 2, [[], [1.0]], [0.5, 0.5], [0.0, 1.0],
                        description="Modified Euler (Heun's method): order 2, 2 stages, trapezoidal average.")
Midpoint = _method("Midpoint", 2, [[], [0.5]], [0.0, 1.0], [0.0, 0.5],
                   description="Explicit midpoint: order 2, 2 stages.")
Ralston = _method("Ralston", 2, [[], [2 / 3]], [0.25, 0.75], [0.0, 2 / 3],
                  description="Ralston's method: order 2, 2 stages, minimal truncation-error bound.")
Kutta3 = _method("Kutta3", 3, [[], [0.5], [-1.0, 2.0]], [1 / 6, 2 / 3, 1 / 6], [0.0, 0.5, 1.0],
                 description="Kutta's third-order method: order 3, 3 stages.")
RungeKutta4 = _method(
    "RungeKutta4", 4,
    [[], [0.5], [0.0, 0.5], [0.0, 0.0, 1.0]],
    [1 / 6, 1 / 3, 1 / 3, 1 / 6], [0.0, 0.5, 0.5, 1.0],
    description="Classic Runge-Kutta: order 4, 4 stages (Kutta 1901).",
)
RungeKutta38 = _method(
    "RungeKutta38", 4,
    [[], [1 / 3], [-1 / 3, 1.0], [1.0, -1.0, 1.0]],
    [1 / 8, 3 / 8, 3 / 8, 1 / 8], [0.0, 1 / 3, 2 / 3, 1.0],
    description="Kutta's 3/8 rule: order 4, 4 stages (torchdiffeq's fixed-grid 'rk4').",
)
_bs_b = [2 / 9, 1 / 3, 4 / 9, 0.0]
_bs_bhat = [7 / 24, 1 / 4, 1 / 3, 1 / 8]
BogackiShampine32 = _method(
    "BogackiShampine32", 3,
    [[], [0.5], [0.0, 0.75], [2 / 9, 1 / 3, 4 / 9]],
    _bs_b, [0.0, 0.5, 0.75, 1.0],
    b_error=[x - y for x, y in zip(_bs_b, _bs_bhat)], error_order=2,
    description="Bogacki-Shampine 3(2): order 3 with an embedded order-2 estimate, 4 stages (1989).",
)
_dp_b = [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0]
_dp_bhat = [5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40]
DormandPrince54 = _method(
    "DormandPrince54", 5,
    [
        [],
        [1 / 5],
        [3 / 40, 9 / 40],
        [44 / 45, -56 / 15, 32 / 9],
        [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
        [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
        [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
    ],
    _dp_b, [0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0],
    b_error=[x - y for x, y in zip(_dp_b, _dp_bhat)], error_order=4,
    description="Dormand-Prince 5(4) ('dopri5'): order 5 with an embedded order-4 estimate, 7 stages (1980).",
)

METHODS: Mapping[str, RungeKuttaMethod] = MappingProxyType({
    "euler": Euler,
    "modified_euler": ModifiedEuler,
    "midpoint": Midpoint,
    "ralston": Ralston,
    "kutta3": Kutta3,
    "rk4": RungeKutta4,
    "rk38": RungeKutta38,
    "bosh3": BogackiShampine32,
    "dopri5": DormandPrince54,
})
"""The built-in methods by short name: read-only, shared by every user of a server.  User
methods are never added here; they travel as specs (:func:`method_spec`) in a config, a
checkpoint or a user's session."""


def method_names(adaptive: bool | None = None) -> list[str]:
    """Built-in short names; ``adaptive=True/False`` filters by embedded pair."""
    return [k for k, m in METHODS.items() if adaptive is None or m.adaptive == adaptive]


def get_method(name: str | RungeKuttaMethod) -> RungeKuttaMethod:
    """A built-in method by short name (``"rk4"``) or class-style name (``"RungeKutta4"``); a
    :class:`RungeKuttaMethod` (built-in or custom) is passed through."""
    if isinstance(name, RungeKuttaMethod):
        return name
    if isinstance(name, str):
        if name in METHODS:
            return METHODS[name]
        for m in METHODS.values():
            if m.name == name:
                return m
    raise UnknownIntegrator(f"unknown integrator {name!r}; choose one of {', '.join(METHODS)} "
                     f"(or give a custom tableau)")


def method_key(name: str) -> str:
    """The identifier a custom method is stored under: ``"custom_" + name`` made safe
    (``"RK²"`` -> ``"custom_rk2"``); raises TableauError if nothing usable is left."""
    if not isinstance(name, str):
        raise TableauError(f"name must be a string, got {name!r}")
    table = str.maketrans("²³¹⁰⁴⁵⁶⁷⁸⁹", "2310456789")
    safe = "".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in name.translate(table).lower())
    safe = "_".join(p for p in safe.split("_") if p)[:40]
    if not safe:
        raise TableauError(f"name {name!r} has no letters or digits; use a name such as 'heun3'")
    return "custom_" + safe


def method_spec(method: RungeKuttaMethod) -> dict[str, Any]:
    """Plain-data description of a method (JSON/checkpoint friendly), inverse of :func:`method_from_spec`."""
    tab = method.tableau
    return {"name": method.name, "a": [list(r) for r in tab.a], "b": list(tab.b), "c": list(tab.c),
            "order": method.order, "b_error": None if tab.b_error is None else list(tab.b_error)}


def method_from_spec(spec: Mapping[str, Any]) -> RungeKuttaMethod:
    """Rebuild (and re-validate) a method from :func:`method_spec`'s dict; TableauError if invalid."""
    if not isinstance(spec, Mapping) or "a" not in spec or "b" not in spec:
        raise TableauError(f"a custom tableau needs at least 'a' and 'b', got {spec!r}")
    return custom_method(spec.get("name", "custom"), spec["a"], spec["b"], spec.get("c"), spec.get("order"),
                         spec.get("b_error"))
