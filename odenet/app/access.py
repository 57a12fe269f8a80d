"""A shared demo that stays safe: presenter access and per-visitor limits on expensive work.

When the server listens beyond localhost (``make run ADDRESS=0.0.0.0``), starting, stopping,
resetting and deleting training runs need the presenter token: ``ODENET_PRESENTER_TOKEN``, or
one generated when the server first needs it and printed once to the terminal.  Visitors keep
everything else (drawing, trajectories, small robustness grids, watching training).  On
localhost every visitor is the presenter, as before.  Behind a reverse proxy the server itself
listens on localhost while the room reaches it: ``ODENET_SHARED=1`` makes it a shared demo
anyway (``ODENET_SHARED=0`` the opposite).

The token is compared in constant time (:func:`hmac.compare_digest`), never logged and never
put in a URL: the app asks for it in a password field and keeps only "this session is the
presenter" in the session.

:class:`WorkLimiter` bounds expensive work (robustness grids, trajectory batches, gradient
measurements, exports): at most one such job per visitor at a time and a few server-wide, so
one visitor cannot starve the others.  Limits come from the environment (docs/deploying.md, "Environment variables").
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import os
import secrets
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from odenet.errors import OdenetError
from odenet.utils import process_wide

__all__ = ["LOCAL_ADDRESSES", "is_public_address", "shared_override", "presenter_token", "token_matches", "Busy",
           "WorkLimiter", "work_limiter"]

LOCAL_ADDRESSES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})  # unset = every interface = public
_token_lock = threading.Lock()
_generated: str | None = None


def is_public_address(address: str | None) -> bool:
    """True when a server bound to ``address`` is reachable from other machines (anything but
    a loopback name or address such as ``localhost``, ``127.0.0.2`` or ``::1``)."""
    text = (address or "").strip().lower()
    if text in LOCAL_ADDRESSES:
        return False
    try:
        return not ipaddress.ip_address(text.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost, or empty (= every interface)
        return True


def shared_override() -> bool | None:
    """``ODENET_SHARED``: 1/true/yes forces shared-demo mode (a server behind a reverse proxy),
    0/false/no turns it off, unset leaves it to the listening address.  Anything else is an
    error that names the variable."""
    raw = os.environ.get("ODENET_SHARED", "").strip().lower()
    if not raw:
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise OdenetError(f"ODENET_SHARED={raw!r} is not understood: use 1 (a shared demo) or 0 (a local lab)")


def presenter_token(announce: bool = True) -> str:
    """The presenter token: ``$ODENET_PRESENTER_TOKEN`` if set, else one random token per process,
    printed once to the terminal (stderr) when first generated so the presenter can read it."""
    global _generated
    env = os.environ.get("ODENET_PRESENTER_TOKEN", "").strip()
    if env:
        return env
    with _token_lock:
        if _generated is None:
            _generated = secrets.token_urlsafe(12)
            if announce:
                print(f"\nodenet: presenter token for this server: {_generated}\n"
                      "        (set ODENET_PRESENTER_TOKEN to choose your own)\n", file=sys.stderr, flush=True)
        return _generated


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a typed token with the expected one."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), expected.encode("utf-8"))


class Busy(OdenetError, RuntimeError):
    """Expensive work was refused for now; the message says why and when to try again."""


@dataclass(frozen=True)
class Limits:
    """``per_visitor`` concurrent expensive jobs per session, ``server`` in total."""

    per_visitor: int = 1
    server: int = 2

    @classmethod
    def from_env(cls) -> Limits:
        def get(name: str, default: int) -> int:
            try:
                return max(1, int(os.environ.get(name, default)))
            except ValueError:
                return default

        return cls(get("ODENET_WORK_PER_VISITOR", 1), get("ODENET_WORK_SERVER", 2))


class WorkLimiter:
    """Counts running expensive jobs per visitor and server-wide; refuses beyond the limits with
    :class:`Busy` instead of queueing without end (thread-safe, shared by all sessions)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits.from_env()
        self._lock = threading.Lock()
        self._by_visitor: dict[str, int] = {}
        self._total = 0

    @contextlib.contextmanager
    def slot(self, visitor: str, what: str) -> Iterator[None]:
        """Hold one slot for ``visitor`` while the block runs; Busy if none is free."""
        with self._lock:
            mine = self._by_visitor.get(visitor, 0)
            if mine >= self.limits.per_visitor:
                raise Busy(f"{what}: you already have {mine} computation(s) running; wait for it to finish "
                           f"(limit {self.limits.per_visitor} per visitor)")
            if self._total >= self.limits.server:
                raise Busy(f"{what}: the server is busy with {self._total} computations for other visitors; "
                           f"try again in a few seconds (limit {self.limits.server} at once)")
            self._by_visitor[visitor] = mine + 1
            self._total += 1
        try:
            yield
        finally:
            with self._lock:
                self._total -= 1
                left = self._by_visitor[visitor] - 1
                if left:
                    self._by_visitor[visitor] = left
                else:
                    del self._by_visitor[visitor]

    def running(self) -> int:
        with self._lock:
            return self._total


work_limiter = process_wide(WorkLimiter)  # the process-wide limiter, its limits read from the environment
