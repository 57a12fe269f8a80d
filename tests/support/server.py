"""A real Streamlit server for the browser tests and the app benchmarks: one way to start it, wait
for it and stop it.

:func:`start_server` runs the app as `make run` does (``python -m odenet.app.serve``) or any
script with ``streamlit run``, on a free port of 127.0.0.1, and returns once ``/_stcore/health`` says
``ok``; past ``deadline_s``, or when the process exits first, it raises :class:`ServerDidNotStart`
naming the port and quoting the server's last output (so a CI log says why, not only that).
"""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
TAIL_LINES = 40  # server output kept for the error message


class ServerDidNotStart(RuntimeError):
    """The server never answered ``ok`` on its health endpoint before the deadline (or exited)."""


def free_port() -> int:
    """A TCP port nothing listens on at the moment (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_usage(pid: int) -> tuple[float, float]:
    """(resident MiB, CPU seconds so far) of process ``pid``, from /proc (Linux)."""
    with open(f"/proc/{pid}/status") as fh:
        rss = int(next(ln.split()[1] for ln in fh if ln.startswith("VmRSS"))) / 1024
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return rss, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    """A started server process: ``url``, ``port``, ``proc``; :meth:`output` is the tail of what it
    printed (also written to ``log_path`` if given); :meth:`stop` ends it.  A context manager."""

    def __init__(self, proc: subprocess.Popen, port: int, host: str, log_path: Path | None) -> None:
        self.proc, self.port, self.log_path = proc, port, log_path
        self.url = f"http://{host}:{port}"
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._log: IO[str] | None = open(log_path, "w", encoding="utf-8") if log_path else None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        """Copy the server's output into the tail (and the log file) until the process closes it."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._tail.append(line)
            if self._log is not None:
                self._log.write(line)
                self._log.flush()
        if self._log is not None:
            self._log.close()

    def output(self) -> str:
        """The last lines the server printed."""
        return "".join(self._tail)

    def healthy(self) -> bool:
        """Whether ``/_stcore/health`` answers ``ok`` now."""
        try:
            return urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2).read() == b"ok"
        except OSError:
            return False

    def wait_healthy(self, deadline_s: float) -> None:
        """Block until the health endpoint says ok; ServerDidNotStart after ``deadline_s`` seconds
        or as soon as the process exits."""
        deadline = time.monotonic() + deadline_s
        while not self.healthy():
            code = self.proc.poll()
            if code is not None or time.monotonic() > deadline:
                self.stop()
                why = f"exited with code {code}" if code is not None else f"not healthy after {deadline_s:g} s"
                raise ServerDidNotStart(f"server on port {self.port} {why} (waited for {self.url}/_stcore/health "
                                        f"to say ok); its last output:\n{self.output() or '(nothing)'}")
            time.sleep(0.1)

    def usage(self) -> tuple[float, float]:
        """(resident MiB, CPU seconds so far) of the server process."""
        return server_usage(self.proc.pid)

    def stop(self, timeout: float = 20) -> None:
        """Terminate the server (kill it if it does not end within ``timeout``); idempotent."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        self._reader.join(timeout)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_command(app: str | Path | None, port: int, address: str | None, checkout: Path = ROOT) -> list[str]:
    """``python -m odenet.app.serve`` (app None: as `make run`) or ``streamlit run app``, headless on ``port``.

    A checkout from before the layers were split (an A/B baseline) has the flat ``odenet.serve``."""
    module = "odenet.app.serve" if (checkout / "odenet" / "app" / "serve.py").exists() else "odenet.serve"
    head = [sys.executable, "-m", module] if app is None else [sys.executable, "-m", "streamlit", "run", str(app)]
    cmd = [*head, "--server.headless", "true", "--server.port", str(port), "--browser.gatherUsageStats", "false"]
    return cmd + (["--server.address", address] if address else [])


def start_server(app: str | Path | None = None, *, runs: str | Path | None = None, cwd: Path = ROOT,
                 env: Mapping[str, str] | None = None, address: str | None = "127.0.0.1", log_path: Path | None = None,
                 deadline_s: float = 90.0, command: Sequence[str] | None = None) -> Server:
    """Start a server from checkout ``cwd`` (its package first on PYTHONPATH) and wait until it is healthy.

    ``app``: a Streamlit script, or None for the odenet app as `make run` starts it.  ``runs``: its
    ODENET_RUNS.  ``env``: more environment.  ``address``: ``--server.address``, loopback only by
    default; None leaves Streamlit's default, every interface (which odenet treats as a shared demo),
    and the URL then says localhost.  ``command``: run this
    instead, with ``{port}`` in any argument replaced by the port (for tests of the deadline).
    """
    port = free_port()
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(cwd), os.environ.get("PYTHONPATH")])),
                **({"ODENET_RUNS": str(runs)} if runs is not None else {}), **(env or {})}
    cmd = ([c.replace("{port}", str(port)) for c in command] if command is not None
           else serve_command(app, port, address, checkout=Path(cwd)))
    proc = subprocess.Popen(cmd, cwd=cwd,
                            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace")
    server = Server(proc, port, address or "localhost", log_path)
    server.wait_healthy(deadline_s)
    return server


@contextlib.contextmanager
def serving(log_path: Path, **options: object) -> Iterator[Server]:
    """:func:`start_server` for a test (``options`` as there), logging to ``log_path``: stopped
    afterwards, also when the test fails; after a test that passed, no Python traceback may be in
    the server's log (an error a page caught and showed still counts)."""
    with start_server(log_path=log_path, **options) as server:  # type: ignore[arg-type]
        yield server
    text = log_path.read_text()
    assert "Traceback" not in text, text[-3000:]


@contextlib.contextmanager
def odenet_app(log_path: Path, runs: Path, env: Mapping[str, str] | None = None) -> Iterator[Server]:
    """The odenet app as `make run` starts it, for the browser tests: Streamlit's default address
    (every interface, as these tests always ran it), no background speed probe (it would train
    while tests time the pages; tested on its own), ``runs`` as its runs directory, and no
    traceback in its log (:func:`serving`)."""
    with serving(log_path, runs=runs, env={"ODENET_SPEED_PROBE": "0", **(env or {})}, address=None,
                 deadline_s=60) as server:
        yield server
