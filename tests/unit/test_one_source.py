"""One source per fact: the test-set size, the reference solver, the default recipe and the library
constants the pages show are each stated once and imported everywhere else."""

import ast
import re
from pathlib import Path

from odenet.data.mnist import TEST_SIZE, load_mnist
from odenet.inspect import analysis
from odenet.ode.solvers import SolverSpec
from odenet.train.config import PRESETS, TrainConfig

ROOT = Path(__file__).resolve().parents[2]
# the files that used to restate the MNIST test-set size (as a number or in words)
TEST_SIZE_USERS = ["odenet/train/jobs.py", "odenet/train/config.py", "odenet/train/throughput.py", "odenet/cli.py",
                   "pages/train.py", "pages/home.py", "pages/robustness.py"]


def _restatements(path: Path) -> list[str]:
    """Every literal in ``path`` that states 10,000 (an int, or text such as "10,000 test images")."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and type(node.value) is int and node.value == 10_000:
            found.append(f"{path.name}:{node.lineno}: {node.value}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.search(r"10,?000", node.value):
            found.append(f"{path.name}:{node.lineno}: {node.value[:60]!r}")
    return found


def test_the_test_set_size_is_stated_once_and_is_the_data_s():
    assert len(load_mnist()[1]) == TEST_SIZE
    found = [hit for rel in TEST_SIZE_USERS for hit in _restatements(ROOT / rel)]
    assert found == []
    assert _restatements(ROOT / "odenet/data/mnist.py"), "the home of the constant must state it"


def test_the_default_recipe_is_trainconfig_s_own_defaults():
    assert TrainConfig() == TrainConfig.from_preset("default")
    restated = {k: v for k, v in PRESETS["default"].items() if getattr(TrainConfig(), k) == v}
    assert restated == {}, f"PRESETS['default'] restates TrainConfig's defaults: {restated}"


def test_the_reference_solver_is_one_constant_that_pages_name_by_its_label():
    same = [name for name, v in vars(analysis).items() if isinstance(v, SolverSpec) and v == analysis.REFERENCE_SOLVER]
    assert same == ["REFERENCE_SOLVER"]
    assert analysis.REFERENCE_SOLVER in analysis.SOLVER_INDEPENDENCE_BAR
    for page in sorted((ROOT / "pages").glob("*.py")):
        text = page.read_text()
        assert not re.search(r"rtol 1e-0?5|Dormand-Prince 5\(4\), rtol", text), f"{page.name} restates the reference"


def test_pages_import_the_constants_the_library_defines():
    restated = {
        "pages/train.py": [r"\b500 held-out", r"value=0\.5\b", r"max\(64\b", r"value=1e-2"],
        "pages/robustness.py": [r"\b0\.5 points", r"0\.5-point", r"up to 4 may differ", r"\b10000\b"],
        "pages/draw.py": [r"solver_params\(64\)", r", 1, 64,"],
        "pages/trajectories.py": [r"solver_params\(64\)"],
    }
    for rel, patterns in restated.items():
        text = (ROOT / rel).read_text()
        for pattern in patterns:
            assert not re.search(pattern, text), f"{rel} restates a library constant: {pattern}"
