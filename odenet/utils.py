"""Small shared helpers: atomic file writes, device choice, safe names, a bounded thread-safe cache."""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch

from odenet.errors import ConfigError

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_torch_save", "pick_device", "torch_threads", "amp_pays",
           "safe_name", "release_free_memory", "limit_malloc_arenas", "BoundedLRU"]


def _atomic(path: Path, write: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file + rename: readers see old or new, never torn."""
    _atomic(Path(path), lambda fh: fh.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` with the same atomic guarantee."""
    _atomic(Path(path), lambda fh: torch.save(obj, fh))


def package_dir(package: str, name: str) -> Path:
    """A data folder shipped inside ``package`` (``pretrained``, ``assets``), found through package
    resources rather than ``__file__`` arithmetic, so the same code works from a checkout and from
    an installed wheel. odenet is never imported from a zip, so the resource is a real folder."""
    return Path(str(importlib.resources.files(package).joinpath(name)))


def pick_device(requested: str | None = "auto") -> torch.device:
    """'auto' -> CUDA, else MPS, else CPU; an explicit name must be available."""
    if requested in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(requested)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'mps', got {requested!r}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={requested!r} requested but CUDA is not available on this machine")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device={requested!r} requested but MPS is not available on this machine")
    return dev


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads, then restore (the setting is per calling thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def amp_pays(device: torch.device) -> bool:
    """Whether bf16 autocast speeds training up on ``device`` (measured: 1.9-2.5x on a CPU with
    AMX tiles, see docs/benchmarks.md; GPUs with bf16 support); elsewhere it costs time."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(probe and probe())
    return False


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def safe_name(name: str) -> str:
    """Validate a user-typed name (run name): letters, digits, '_', '-', '.', no path parts.
    Raises :class:`ConfigError` (a ``ValueError``) naming the problem."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or ".." in name:
        raise ConfigError(
            f"name {name!r} is not allowed: use 1-64 letters, digits, '_', '-' or '.', starting with a letter "
            f"or digit (no '/', no '..')"
        )
    return name


def _libc_function(name: str, argtypes: list[Any]) -> Any:
    """The C library function ``name`` from the process's own symbols (glibc's, where it is glibc),
    returning int, or None where it does not exist (other C libraries)."""
    import ctypes

    try:
        fn = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = argtypes, ctypes.c_int
    return fn


def release_free_memory() -> bool:
    """Hand memory that the C allocator keeps after ``free`` back to the system (glibc's
    ``malloc_trim(0)``); returns False where that call does not exist (other C libraries).

    A training job allocates and frees activations of tens of MB in several threads; glibc keeps
    much of it in per-thread arenas, so a long-running server's resident memory swings with each
    job without leaking (``benchmarks/training/job_memory.py``).  The job worker calls this after every job.
    """
    import ctypes

    trim = _libc_function("malloc_trim", [ctypes.c_size_t])
    if trim is None:
        return False
    trim(0)
    return True


_M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def limit_malloc_arenas(n: int = 2) -> bool:
    """Cap glibc's malloc arenas at ``n`` for this process (``mallopt(M_ARENA_MAX, n)``; what the
    ``MALLOC_ARENA_MAX`` environment variable does at start); returns False where it cannot.

    glibc gives new threads their own arena, up to 8 per core, and an arena keeps freed memory
    up to its trim threshold, which grows to twice the largest block freed so far.  The Streamlit
    server runs every session's script in a new thread and reads the Draw page's 14 MB wasm
    runtime into memory for each visitor, so every arena slowly kept tens of MB:
    ``benchmarks/app/session_memory.py`` measured +101 MiB over 30 Draw sessions with the default, and
    with two arenas +13.5 MiB over the first 10, then flat.  Call it before threads start
    (``odenet.app.serve`` does).
    """
    import ctypes

    if n < 1:
        raise ValueError(f"limit_malloc_arenas needs n >= 1, got {n}")
    mallopt = _libc_function("mallopt", [ctypes.c_int, ctypes.c_int])
    return mallopt is not None and mallopt(_M_ARENA_MAX, n) == 1


V = TypeVar("V")
_MISSING: Any = object()


def process_wide(factory: Callable[[], V]) -> Callable[[], V]:
    """A function returning one instance of ``factory()`` shared by the whole process, created on
    first call (thread-safe): the room's gallery, the work limiter."""
    lock = threading.Lock()
    made: list[V] = []

    def get() -> V:
        with lock:
            if not made:
                made.append(factory())
            return made[0]

    get.__doc__ = f"The process-wide {getattr(factory, '__name__', 'instance')} (created on first use)."
    return get


class BoundedLRU(Generic[V]):
    """A thread-safe map that keeps the ``max_entries`` most recently used values (the one bounded
    cache of odenet: the app's shared results, checkpoint summaries, QR codes).

    :meth:`get_or_compute` computes a missing value once however many threads ask for it at the
    same moment: the first computes (outside the map's lock, so other keys stay available), the
    others wait for its result.  If that computation raises, the next waiting caller computes
    instead.  Values are shared: never mutate one after it is cached.
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._data: OrderedDict[Hashable, V] = OrderedDict()
        self._computing: dict[Hashable, threading.Lock] = {}  # key -> the lock its computation holds
        self._lock = threading.Lock()

    def get(self, key: Hashable, default: Any = None) -> V | Any:
        """The cached value (now the most recently used), or ``default``; never computes."""
        with self._lock:
            if key not in self._data:
                return default
            self._data.move_to_end(key)
            return self._data[key]

    def wait(self, key: Hashable, default: Any = None) -> V | Any:
        """Like :meth:`get`, but if another thread is computing ``key`` now, wait for its result
        (``default`` if that computation failed); never computes."""
        with self._lock:
            key_lock = self._computing.get(key)
        if key_lock is not None:
            with key_lock:  # held by the computing thread until its value is kept
                pass
        return self.get(key, default)

    def get_or_compute(self, key: Hashable, compute: Callable[[], V]) -> V:
        """The cached value for ``key``; on a miss ``compute()`` once (concurrent callers of the
        same key wait for it) and keep the result, dropping the least recently used beyond the bound."""
        hit = self.get(key, _MISSING)
        if hit is not _MISSING:
            return hit
        with self._lock:
            key_lock = self._computing.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._data:  # computed by the caller this one waited for
                    self._data.move_to_end(key)
                    return self._data[key]
                self._computing.setdefault(key, key_lock)  # after a failed computation: this caller's turn
            try:
                value = compute()
            except BaseException:
                self._done(key, key_lock)
                raise
            self._done(key, key_lock, value)
            return value

    def _done(self, key: Hashable, key_lock: threading.Lock, value: Any = _MISSING) -> None:
        """Keep ``value`` (unless the computation failed) and unregister it, in one step: a caller
        arriving now finds either the value or no computation, never a gap between them."""
        with self._lock:
            if value is not _MISSING:
                self._data[key] = value
                self._data.move_to_end(key)
                while len(self._data) > self.max_entries:
                    self._data.popitem(last=False)
            if self._computing.get(key) is key_lock:
                del self._computing[key]

    def clear(self) -> None:
        """Forget every value (tests; files rewritten in place)."""
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data
