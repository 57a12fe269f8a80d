"""Arrows point down only: each layer of odenet imports only the layers below it, and only
odenet/app imports streamlit (docs/architecture.md, "The layers").

The check reads the source with ``ast`` (no module is imported), so it sees every import: at the
top, inside functions, under ``if TYPE_CHECKING``, relative ones, ``from odenet import x`` and
``importlib.import_module("odenet.x")`` with a literal name."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "odenet"

# layer -> the other layers it may import (its own is always allowed). A layer is a subpackage
# (odenet/ode/...) or a bottom module (odenet/errors.py, odenet/utils.py). "odenet" itself, the
# re-exporting __init__, pulls in every layer, so no layer imports it.
BELOW = {
    "errors": set(),
    "utils": {"errors"},
    "ode": {"errors", "utils"},
    "data": {"errors", "utils"},
    "model": {"errors", "utils", "ode"},
    "train": {"errors", "utils", "ode", "model", "data"},
    "inspect": {"errors", "utils", "ode", "model", "data", "train"},
    "plane": {"errors", "utils", "ode", "model", "data", "inspect"},
    "app": {"errors", "utils", "ode", "model", "data", "train", "inspect", "plane"},
}
# the top of the package: the CLI, the public API and `python -m odenet` may import any layer
TOP = {"cli", "__init__", "__main__"}


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """``odenet/ode/solvers.py`` -> ``odenet.ode.solvers``; a package's ``__init__`` -> the package."""
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(path: Path, package: Path = PACKAGE) -> str:
    """The layer a file belongs to: its subpackage, or the module's own name at the top."""
    rel = path.relative_to(package)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _resolve(node: ast.ImportFrom, importer: str, is_package: bool, package: Path) -> list[str]:
    """The modules a ``from ... import ...`` names, relative ones made absolute. ``from odenet import
    ode`` names odenet.ode (a subpackage); ``from odenet import RKNet`` names odenet itself."""
    base = node.module or ""
    if node.level:
        parts = importer.split(".")
        anchor = parts if is_package else parts[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
    out = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}"
        sub = package.parent.joinpath(*candidate.split("."))
        out.append(candidate if sub.is_dir() or sub.with_suffix(".py").exists() else base)
    return out


def imports_of(source: str, path: Path, package: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in ``source``, at any depth."""
    importer = module_name(path, package)
    is_package = path.name == "__init__.py"
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found += [(node.lineno, name) for name in _resolve(node, importer, is_package, package)]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Name) and node.func.id == "__import__")
                   or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"))):
            found.append((node.lineno, node.args[0].value))
    return found


def violations(package: Path = PACKAGE) -> list[str]:
    """Every import in ``package`` that points up a layer or brings streamlit outside odenet/app,
    as 'file:line imports module (why)'."""
    bad = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).as_posix()
        layer = layer_of(path, package)
        if layer not in BELOW and layer not in TOP:
            bad.append(f"{rel}: layer '{layer}' is not in the rule: add it to BELOW here and to docs/architecture.md")
            continue
        for line, name in imports_of(path.read_text(), path, package):
            top = name.split(".")[0]
            if top == "streamlit" and layer != "app":
                bad.append(f"{rel}:{line} imports {name} (only odenet/app may import streamlit)")
            elif top == package.name and layer in BELOW:
                target = name.split(".")[1] if "." in name else package.name
                if target != layer and target not in BELOW[layer]:
                    allowed = ", ".join(sorted(BELOW[layer])) or "nothing of odenet"
                    bad.append(f"{rel}:{line} imports {name} (layer '{layer}' may import only: {allowed})")
    return bad


def test_arrows_point_down_only():
    bad = violations()
    assert not bad, "imports that break the layer rule (docs/architecture.md):\n" + "\n".join(bad)


def test_the_rule_covers_every_layer_in_the_tree():
    layers = {layer_of(p) for p in PACKAGE.rglob("*.py")}
    assert layers - TOP == set(BELOW)  # a new layer must be placed in the rule (and the docs)
    # every layer's allowed set lies strictly below it: the rule itself has no cycle
    order = list(BELOW)
    for layer, below in BELOW.items():
        assert all(order.index(b) < order.index(layer) for b in below), layer


def test_the_reader_sees_imports_at_every_depth():
    # the real tree: a nested import in a function, and a top-level one
    serve = imports_of((PACKAGE / "app/serve.py").read_text(), PACKAGE / "app/serve.py")
    assert {"odenet.train.config", "streamlit.web"} <= {n for _, n in serve}
    assert any(n == "odenet.ode.integrators" for _, n in imports_of(
        (PACKAGE / "ode/solvers.py").read_text(), PACKAGE / "ode/solvers.py"))
    # written forms the tree does not use yet, in a made-up file of the ode layer
    source = (
        "import math\n"
        "def f():\n"
        "    from odenet.train import config\n"          # line 3: nested, upward
        "    if True:\n"
        "        import streamlit as st\n"               # line 5: deeper still
        "from .. import model\n"                         # line 6: relative, -> odenet.model
        "from . import integrators\n"                    # line 7: relative, same layer
        "from odenet import RKNet\n"                     # line 8: the re-exporting root
        "import importlib\n"
        "m = importlib.import_module('odenet.app.cache')\n"  # line 10
    )
    assert sorted(imports_of(source, PACKAGE / "ode/fake.py")) == [
        (1, "math"), (3, "odenet.train.config"), (5, "streamlit"), (6, "odenet.model"), (7, "odenet.ode.integrators"),
        (8, "odenet"), (9, "importlib"), (10, "odenet.app.cache")]


def test_an_upward_import_is_named_with_file_line_and_module(tmp_path):
    pkg = tmp_path / "odenet"
    for rel, text in {
        "__init__.py": "from odenet.ode.solvers import solve\n",
        "errors.py": "",
        "ode/__init__.py": "",
        "ode/solvers.py": "import math\n\ndef solve():\n    from odenet.train.config import TrainConfig\n",
        "train/__init__.py": "",
        "train/config.py": "from odenet.ode.solvers import solve\nimport streamlit\n",
        "app/__init__.py": "import streamlit\nfrom odenet.train.config import x\n",
    }.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    assert violations(pkg) == [
        "odenet/ode/solvers.py:4 imports odenet.train.config (layer 'ode' may import only: errors, utils)",
        "odenet/train/config.py:2 imports streamlit (only odenet/app may import streamlit)",
    ]
