"""The wheel works: ``pip wheel .`` holds every module of every subpackage, the shipped checkpoints
and the web assets, and once installed outside the checkout the CLI lists, evaluates and exports
the shipped models from the installed files (found through package resources, not the checkout).

The expected file list is derived from the source tree, so a subpackage or asset added later is
covered without touching this test.  About 30 s (a build, an install, four interpreter starts).
"""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from odenet.data.mnist import default_cache_dir

ROOT = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "node_modules")
DATA_DIRS = ("odenet/model/pretrained", "odenet/app/web/assets")  # package data the library reads at run time


def source_files() -> set[str]:
    """What the wheel must hold: every module under odenet/ and every file of the package-data folders."""
    modules = {p for p in ROOT.glob("odenet/**/*.py") if "__pycache__" not in p.parts and "node_modules" not in p.parts}
    data = {p for d in DATA_DIRS for p in (ROOT / d).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    return {p.relative_to(ROOT).as_posix() for p in modules | data}


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, (args, out.stdout[-2000:], out.stderr[-3000:])
    return out.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the built wheel, the folder it was pip-installed into with --target)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy, so the build writes no build/ or egg-info into the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "odenet", src / "odenet", ignore=SKIP)
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w",
         str(tmp / "dist")], cwd=tmp, env=env, timeout=300)
    (wheel,) = (tmp / "dist").glob("odenet-*.whl")
    site = tmp / "site"
    run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], cwd=tmp,
        env=env, timeout=300)
    return wheel, site


def test_wheel_holds_every_subpackage_the_checkpoints_and_the_web_assets(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = source_files()
    inits = {n for n in expected if n.endswith("/__init__.py")}
    assert {"odenet/__init__.py", "odenet/ode/__init__.py", "odenet/app/web/__init__.py"} <= inits
    assert not expected - names, f"missing from the wheel: {sorted(expected - names)}"
    for suffix in (".pt", ".json", ".wasm.gz", ".mjs", ".js", ".css"):
        assert any(n.endswith(suffix) for n in names if n.startswith(DATA_DIRS)), suffix
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "pages/"))]


def test_installed_wheel_runs_the_cli_outside_the_checkout(installed, tmp_path):
    _, site = installed
    cwd = tmp_path / "elsewhere"  # no odenet/, app.py or .data here: only the installed files can serve
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "ODENET_DATA": str(default_cache_dir().resolve())}
    py = [sys.executable]
    where = json.loads(run(py + ["-c", "import json, odenet; from odenet.app.web import ASSET_DIR, assets_available; "
                                       "print(json.dumps([odenet.__file__, str(ASSET_DIR), assets_available()]))"],
                           cwd, env))
    assert Path(where[0]).is_relative_to(site) and Path(where[1]).is_relative_to(site) and where[2] is True

    listed = run(py + ["-m", "odenet", "models"], cwd, env)
    shipped = sorted(p.stem for p in (ROOT / "odenet/model/pretrained").glob("*.pt"))
    rows = {line.split()[0]: line for line in listed.splitlines() if line.strip()}
    assert sorted(rows) == shipped
    for name, line in rows.items():
        assert str(site / "odenet" / "model" / "pretrained" / f"{name}.pt") in line, line

    result = json.loads(run(py + ["-m", "odenet", "evaluate", "rk4_1step", "--test-size", "300", "--json"], cwd, env))
    assert result["test_images"] == 300 and result["solver"] == "rk4 x1" and result["test_acc"] >= 0.97, result

    onnx = pytest.importorskip("onnx")
    out = cwd / "rk4.onnx"
    run(py + ["-m", "odenet", "export", "rk4_1step", str(out), "--integrator", "euler", "--steps", "2"], cwd, env)
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["image"] and [o.name for o in graph.output] == ["probs"]
    dims = [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim]
    assert dims[0] == 3 and dims[-1] == 10  # probabilities at t0 and after each of the 2 Euler steps
