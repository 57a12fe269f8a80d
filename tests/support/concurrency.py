"""Running one function from several threads at once, for tests of shared state."""

from __future__ import annotations

import threading
from collections.abc import Callable


def run_in_threads(target: Callable[[int], object], n: int) -> None:
    """Start ``target(0)`` ... ``target(n - 1)`` in ``n`` threads, then wait for all of them."""
    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
