"""Stem's stride-2 4x4 convolutions: as they are vs rewritten as space-to-depth + 2x2 convolution.

The fp32 profile (docs/benchmarks.md, issue 13) puts 21% of a training step in the backward of the stride-2
4x4 convolution from 26x26 to 13x13.  The same convolution can be written as zero padding, a
``pixel_unshuffle`` by 2 and a stride-1 2x2 convolution over 4x the channels (identical
arithmetic, weights rearranged).  This measures forward + backward of both, batch 128, 64
channels, contiguous and channels_last, on this CPU (fp32).

    python benchmarks/training/strided_conv.py            # writes benchmarks/training/strided_conv.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.machine import cpu_name  # noqa: E402


def space_to_depth_conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, pad: tuple[int, ...]) -> torch.Tensor:
    """``conv2d(x, w, b, stride=2, padding=1)`` for a 4x4 kernel, as pad -> unshuffle -> 2x2 conv."""
    xs = F.pixel_unshuffle(F.pad(x, pad), 2)  # (N, 4C, H', W')
    o, c = w.shape[:2]
    w2 = w.reshape(o, c, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(o, 4 * c, 2, 2)  # [o, c*4+dy*2+dx, ky', kx']
    return F.conv2d(xs, w2, b)


def fwd_bwd_ms(fn, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, n: int = 30) -> float:
    for _ in range(5):
        fn(x, w, b).sum().backward()
    t = time.perf_counter()
    for _ in range(n):
        y = fn(x, w, b)
        y.backward(torch.ones_like(y))
    return (time.perf_counter() - t) / n * 1e3


def main() -> None:
    torch.manual_seed(0)
    rows = []
    for hw, pad in ((26, (1, 1, 1, 1)), (13, (1, 0, 1, 0))):  # 26 -> 13 and 13 -> 6, as in RKNet's stem
        for channels_last in (False, True):
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            x = torch.randn(128, 64, hw, hw).to(memory_format=fmt).requires_grad_()
            w = torch.randn(64, 64, 4, 4, requires_grad=True)
            b = torch.randn(64, requires_grad=True)
            err = (F.conv2d(x, w, b, stride=2, padding=1) - space_to_depth_conv(x, w, b, pad)).abs().max().item()
            t0 = fwd_bwd_ms(lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), x, w, b)
            t1 = fwd_bwd_ms(lambda x, w, b, pad=pad: space_to_depth_conv(x, w, b, pad), x, w, b)
            rows.append({"input_hw": hw, "channels_last": channels_last, "max_abs_diff": err,
                         "stride2_ms": round(t0, 1), "space_to_depth_ms": round(t1, 1),
                         "speedup": round(t0 / t1, 2)})
            print(rows[-1])
    out = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "rows": rows, "when": time.strftime("%Y-%m-%d %H:%M")}
    Path(__file__).with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
