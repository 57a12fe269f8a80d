"""The docs stay true: a short front door, real paths, real screenshots, every result indexed.

README.md is the front door (at most 150 lines, the two commands); the depth lives in docs/.
Every repository path the docs mention (``odenet/...``, ``benchmarks/...``, ``docs/...``,
``tests/...``, ``pages/...``) must exist, every ``path::name`` must name something defined in
that file, every dotted ``odenet.x.y`` reference must import, every relative Markdown link must
resolve, and every benchmark script and result file must be in benchmarks/README.md, so a moved
file or a renamed function breaks a test instead of a reader's trust.
"""

from __future__ import annotations

import glob
import importlib
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BENCH_INDEX = ROOT / "benchmarks" / "README.md"
README_MAX_LINES = 150

# A repository path: one of the top folders, then path characters ({a,b} and * are expanded,
# <placeholder> parts are checked up to the placeholder).  Not preceded by a path character, so
# `https://host/odenet` and `../docs/x.md` are not taken for repo-root paths.
_PATH = re.compile(r"(?<![\w./@-])((?:odenet|benchmarks|docs|tests|pages)/[\w.*{},<>/-]*)")
# `git show <commit>:<path>`: a result that history keeps (not in the tree any more)
_HISTORY = re.compile(r"\b([0-9a-f]{7,40}):((?:odenet|benchmarks|docs|tests|pages)/[\w./-]+)")
_NODE = re.compile(r"((?:tests|benchmarks|odenet|pages)/[\w/.-]+\.py)::(\w+)")
_DOTTED = re.compile(r"(?<![\w./-])(odenet(?:\.\w+)+)")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def doc_files() -> list[Path]:
    """README.md, every docs/*.md and benchmarks/README.md: the files whose claims are checked."""
    return [README, *sorted((ROOT / "docs").glob("*.md")), BENCH_INDEX]


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _expand_braces(token: str) -> list[str]:
    """``benchmarks/{numerics,app}/x`` -> both paths (one level of braces, as the docs use)."""
    m = re.search(r"\{([^{}]*)\}", token)
    if not m:
        return [token]
    return [alt for part in m.group(1).split(",")
            for alt in _expand_braces(token[:m.start()] + part + token[m.end():])]


def _exists(token: str) -> bool:
    """Whether a mentioned path exists: globs need one match; a <placeholder> is checked up to its folder."""
    token = token.rstrip(".,:;")
    if "<" in token:
        token = token[:token.index("<")].rsplit("/", 1)[0]
    if any(ch in token for ch in "*?["):
        return bool(glob.glob(str(ROOT / token)))
    return (ROOT / token).exists()


def mentioned_paths(text: str) -> list[str]:
    """Repo-root paths a doc mentions (history references ``<commit>:<path>`` excluded)."""
    history_spans = [m.span(2) for m in _HISTORY.finditer(text)]
    out = []
    for m in _PATH.finditer(text):
        if any(a <= m.start(1) < b for a, b in history_spans):
            continue
        out.extend(_expand_braces(m.group(1).rstrip(".,:;")))
    return out


def missing_paths(path: Path) -> list[str]:
    """Paths ``path`` mentions that do not exist in the tree."""
    return sorted({p for p in mentioned_paths(_text(path)) if not _exists(p)})


def broken_links(path: Path) -> list[str]:
    """Relative Markdown links (and images) in ``path`` whose target does not exist."""
    bad = []
    for target in _LINK.findall(_text(path)):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor in the same file
        file_part = target.split("#", 1)[0]
        if file_part and not (path.parent / file_part).exists():
            bad.append(target)
    return bad


def unknown_nodes(path: Path) -> list[str]:
    """``file.py::name`` references whose file does not define ``name`` (a test, function or class)."""
    bad = []
    for file, name in _NODE.findall(_text(path)):
        src = ROOT / file
        if not src.is_file() or not re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{name}\b", _text(src), re.M):
            bad.append(f"{file}::{name}")
    return bad


def _resolves(dotted: str) -> bool:
    """``odenet.a.b.c``: the longest importable module prefix, then attributes for the rest."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def unresolved_names(path: Path) -> list[str]:
    """Dotted ``odenet.…`` names in ``path`` that do not import (a renamed module or function)."""
    names = {m.rstrip(".") for m in _DOTTED.findall(_text(path))}
    return sorted(n for n in names if not _resolves(n))


def _is_shallow() -> bool | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() == "true" if out.returncode == 0 else None


# -- the front door --------------------------------------------------------------------------------
def test_readme_is_a_short_front_door_with_the_two_commands():
    lines = _text(README).splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; the depth belongs in docs/"
    text = "\n".join(lines)
    assert re.search(r"^make run\b", text, re.M), "README must show `make run`"
    assert re.search(r"^make test\b", text, re.M), "README must show `make test`"
    ci = _text(ROOT / ".ci" / "run")
    assert re.search(r"^make test$", ci, re.M), ".ci/run no longer calls `make test`: README's claim is false"


def test_every_make_target_the_docs_name_exists():
    targets = set(re.findall(r"^([\w-]+):", _text(ROOT / "Makefile"), re.M))
    named = {t for doc in doc_files() for t in re.findall(r"`make ([a-z][\w-]*)", _text(doc))}
    named |= set(re.findall(r"^make ([a-z][\w-]*)", _text(README), re.M))
    assert {"run", "test"} <= named
    assert not named - targets, f"the docs name make targets the Makefile lacks: {sorted(named - targets)}"


def test_every_page_is_shown_with_its_screenshot():
    shown = {Path(p).name for p in _IMAGE.findall(_text(README))}
    pages = sorted(p.stem for p in (ROOT / "pages").glob("*.py") if p.stem != "__init__")
    assert pages, "no pages found"
    missing = [p for p in pages if f"{p}.png" not in shown]
    assert not missing, f"pages without a screenshot in README.md: {missing}"


def test_every_screenshot_the_readme_shows_exists():
    images = _IMAGE.findall(_text(README))
    assert len(images) >= 8
    missing = [p for p in images if not (ROOT / p).is_file()]
    assert not missing, f"README shows images that do not exist: {missing}"


def test_the_docs_the_issue_asks_for_exist_and_are_linked_from_the_readme():
    readme = _text(README)
    for name in ("architecture", "benchmarks", "reliability", "deploying", "library", "digit_check"):
        assert (ROOT / "docs" / f"{name}.md").is_file(), name
        assert f"docs/{name}.md" in readme, f"README does not link docs/{name}.md"
    assert "benchmarks/README.md" in readme


# -- paths, links and names in every doc -------------------------------------------------------------
@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_path_a_doc_mentions_exists(doc):
    assert doc.is_file(), f"{doc.relative_to(ROOT)} is missing"
    assert not missing_paths(doc), f"{doc.relative_to(ROOT)} mentions paths that do not exist"


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(doc):
    assert not broken_links(doc)


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_named_test_or_function_exists(doc):
    assert not unknown_nodes(doc)


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_dotted_odenet_name_imports(doc):
    assert not unresolved_names(doc)


def test_history_references_name_real_commits_and_paths():
    """``<commit>:<path>`` (a superseded result kept by git) must be readable with ``git show``."""
    refs = sorted({ref for doc in doc_files() for ref in _HISTORY.findall(_text(doc))})
    if _is_shallow() is not False:
        pytest.skip("no full git history here (a shallow clone or no git): history references not checked")
    bad = [f"{c}:{p}" for c, p in refs
           if subprocess.run(["git", "cat-file", "-e", f"{c}:{p}"], cwd=ROOT, capture_output=True).returncode]
    assert not bad, f"history references git cannot show: {bad}"


_PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


@pytest.mark.parametrize("doc", [README, ROOT / "docs" / "library.md"], ids=lambda p: str(p.relative_to(ROOT)))
def test_the_python_examples_run(doc, capsys):
    """Every ```python block of the README and docs/library.md runs, top to bottom in one namespace."""
    blocks = _PYTHON_BLOCK.findall(_text(doc))
    assert blocks, f"{doc.name} shows no Python example"
    namespace: dict = {"__name__": "__doc_example__"}
    for block in blocks:
        exec(compile(block, str(doc), "exec"), namespace)  # noqa: S102 - our own docs, run as a reader would
    assert "torch" in namespace  # the examples really ran (they all start from `import torch`)


# -- benchmarks/ as an index ----------------------------------------------------------------------
def _bench_files(*patterns: str) -> list[str]:
    found = set()
    for pat in patterns:
        found.update(p.relative_to(ROOT).as_posix() for p in (ROOT / "benchmarks").rglob(pat))
    return sorted(f for f in found if "__pycache__" not in f and not f.endswith("__init__.py"))


def test_every_result_file_is_in_the_benchmark_index():
    index = _text(BENCH_INDEX)
    results = _bench_files("*.json", "*.log")
    assert results, "no benchmark results found"
    missing = [f for f in results if f not in index]
    assert not missing, (f"result files not in benchmarks/README.md: {missing} (index them, or git rm a "
                         "superseded one: history lives in git)")


def test_every_benchmark_script_is_in_the_benchmark_index():
    index = _text(BENCH_INDEX)
    missing = [f for f in _bench_files("*.py", "*.sh") if f not in index]
    assert not missing, f"benchmark scripts not in benchmarks/README.md: {missing}"


# -- the checks themselves catch what they are for ------------------------------------------------------
def test_the_path_check_catches_a_broken_path(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("See `benchmarks/app/soak.py` and `benchmarks/app/no_such_file.json`, "
                   "`docs/pretrained/rk4_kinetic.*`, `benchmarks/{numerics,nowhere}/`, `runs/<name>/`, "
                   "https://lab.example.org/odenet, git show 2f61062:benchmarks/soak_before_trim.json.\n"
                   "[ok](x.md) [bad](missing.md) `tests/unit/test_docs.py::test_no_such_test`\n")
    assert missing_paths(doc) == ["benchmarks/app/no_such_file.json", "benchmarks/nowhere/"]
    assert broken_links(doc) == ["missing.md"]
    assert unknown_nodes(doc) == ["tests/unit/test_docs.py::test_no_such_test"]


def test_the_name_check_catches_a_renamed_function(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("`odenet.ode.integrators.METHODS`, `odenet.train.config.TrainConfig.from_preset`, "
                   "`odenet.ode.integrators.no_such_registry`, `odenet.no_such_module.f`.\n")
    assert unresolved_names(doc) == ["odenet.no_such_module.f", "odenet.ode.integrators.no_such_registry"]
