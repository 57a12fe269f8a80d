"""Views carried by links: each page's main settings read from and written to the URL.

A page declares its parameters once (:class:`Param`: a name, a kind, the allowed values and a
default); :func:`parse` turns ``st.query_params`` into validated values plus short warnings for
anything unknown, malformed or hostile (``steps=abc``, ``steps=-3``, ``model=../../etc``, an
overlong value), so a bad link falls back to the defaults instead of raising.  Nothing here
touches files: a model name is only ever looked up among the choices the page offers.

The same names everywhere: ``model``, ``integrator``, ``steps``; then page-specific ones.
``lesson=1`` hides the controls a presenter locked (the view stays, the controls do not).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

__all__ = ["MAX_VALUE_LENGTH", "Param", "parse", "encode", "lesson_mode", "query_string"]

MAX_VALUE_LENGTH = 200  # longer values are refused (nothing we carry is this long)


@dataclass(frozen=True)
class Param:
    """One URL parameter: ``kind`` is "int", "float", "choice", "bool" or "int_list"/"choice_list".

    ``choices`` (for choice kinds) may be a callable evaluated at parse time (e.g. the models that
    exist now); ``lo``/``hi`` bound numbers; ``max_items`` bounds lists."""

    name: str
    kind: str
    default: Any
    choices: Sequence[Any] | Callable[[], Sequence[Any]] | None = None
    lo: float | None = None
    hi: float | None = None
    max_items: int = 16
    help: str = field(default="", compare=False)

    def allowed(self) -> list[Any]:
        c = self.choices() if callable(self.choices) else self.choices
        return list(c or [])


def _number(p: Param, raw: str) -> int | float:
    if p.kind.startswith("int"):
        v: int | float = int(raw.strip())
    else:
        v = float(raw.strip())
        if not math.isfinite(v):
            raise ValueError("not finite")
    if (p.lo is not None and v < p.lo) or (p.hi is not None and v > p.hi):
        raise ValueError(f"outside [{p.lo:g}, {p.hi:g}]")
    return v


def _one(p: Param, raw: str) -> Any:
    kind = p.kind.removesuffix("_list")
    if kind in ("int", "float"):
        return _number(p, raw)
    if kind == "bool":
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError("not true/false")
    if kind == "choice":
        allowed = p.allowed()
        # a link carries a choice as encode() writes it ("0" for 0.0) or as typed by hand ("0.0")
        by_text = {**{str(a): a for a in allowed}, **{_text(a): a for a in allowed}}
        if raw not in by_text:
            raise ValueError("not one of the choices")
        return by_text[raw]
    raise ValueError(f"unknown kind {p.kind!r}")


def parse(query: Mapping[str, Any], params: Sequence[Param]) -> tuple[dict[str, Any], list[str]]:
    """Validated values for ``params`` from ``query`` (missing ones take their default) and a
    list of warnings, one per rejected value.  Never raises for bad input."""
    values: dict[str, Any] = {}
    warnings: list[str] = []
    for p in params:
        raw = query.get(p.name)
        if raw is None:
            values[p.name] = p.default
            continue
        raw = str(raw)
        shown = raw if len(raw) <= 40 else raw[:37] + "..."
        try:
            if len(raw) > MAX_VALUE_LENGTH:
                raise ValueError("too long")
            if p.kind.endswith("_list"):
                items = [s for s in raw.split(",") if s.strip()]
                if len(items) > p.max_items:
                    raise ValueError(f"more than {p.max_items} items")
                values[p.name] = list(dict.fromkeys(_one(p, s.strip()) for s in items))
            else:
                values[p.name] = _one(p, raw)
        except (ValueError, TypeError) as exc:
            values[p.name] = p.default
            warnings.append(f"Ignored {p.name}={shown!r} from the link ({exc}); using {p.default!r}.")
    return values, warnings


def encode(values: Mapping[str, Any], params: Sequence[Param]) -> dict[str, str]:
    """Query-string values for ``values`` (lists joined with commas); defaults are left out so
    links stay short."""
    out: dict[str, str] = {}
    for p in params:
        if p.name not in values or values[p.name] == p.default:
            continue
        v = values[p.name]
        out[p.name] = ",".join(_text(x) for x in v) if isinstance(v, (list, tuple)) else _text(v)
    return out


def _text(v: Any) -> str:
    """One value as a link writes it: booleans as 1/0, floats short (0.05, 1e-05), the rest as str."""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def lesson_mode(query: Mapping[str, Any]) -> bool:
    """``lesson=1`` in the link: the page shows the presenter's view with its controls hidden."""
    return str(query.get("lesson", "")).strip().lower() in ("1", "true", "yes")


def query_string(values: Mapping[str, str]) -> str:
    """``?a=1&b=2`` (empty string for no values)."""
    return ("?" + urlencode(values)) if values else ""
