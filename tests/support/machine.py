"""What a benchmark records about the machine it ran on."""

from __future__ import annotations

import platform


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as fh:
            return next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine_note(what: str) -> str:
    """``"<cores>-core <cpu> with|without AMX, fp32; <what>"``: the machine a CPU benchmark's figures
    come from, read from this machine rather than written by hand."""
    import os

    import torch

    from odenet.utils import amp_pays

    amx = "with" if amp_pays(torch.device("cpu")) else "without"
    return f"{os.cpu_count()}-core {cpu_name()} {amx} AMX, fp32; {what}"
