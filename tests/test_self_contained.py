"""The repository stands alone: no README or doc points outside it, no test reads outside it.

A fresh clone with nothing beside it must pass ``pip install -e '.[test]' && pytest``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SEARCHED_FOLDERS = ("docs", "tests", "benchmarks", "scripts", "flowstate")
"""The repository's own folders (a virtualenv or build output beside them is not searched)."""

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
"""A markdown link's target."""

PATH_IN_CODE = re.compile(r"`([^`\s]*\.\./[^`\s]*)`")
"""A relative path that climbs (``../x``) written in a code span."""


def _repo_files(suffix: str) -> list[Path]:
    found = list(REPO.glob(f"*{suffix}"))
    for folder in SEARCHED_FOLDERS:
        found += (REPO / folder).rglob(f"*{suffix}")
    return sorted(path for path in found if "__pycache__" not in path.parts)


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root)


def _escaping_references(doc: Path, root: Path = REPO) -> list[str]:
    """The links and climbing paths of ``doc`` that leave ``root`` or name nothing."""
    text = doc.read_text(encoding="utf-8")
    found = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor in the page
        path = target.split("#", 1)[0]
        if path.startswith("/") or not _inside(doc.parent / path, root):
            found.append(f"link {target} leaves the repository")
        elif not (doc.parent / path).exists():
            found.append(f"link {target} names no file of the repository")
    for path in PATH_IN_CODE.findall(text):
        if not _inside(doc.parent / path, root):
            found.append(f"path {path} leaves the repository")
    return found


def test_markdown_files_are_found():
    names = {str(path.relative_to(REPO)) for path in _repo_files(".md")}
    assert {"README.md", "docs/api.md", "tests/conformance/vectors/README.md"} <= names


@pytest.mark.parametrize("doc", _repo_files(".md"), ids=lambda p: str(p.relative_to(REPO)))
def test_no_readme_or_doc_points_outside_the_repository(doc: Path):
    assert _escaping_references(doc) == []


def test_the_check_catches_links_and_paths_that_leave_the_repository(tmp_path: Path):
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "cli.md").write_text("")
    doc = root / "docs" / "api.md"
    doc.write_text(
        "the contract is `../../shared/API.md`, see [it](../../shared/API.md), [gone](gone.md),\n"
        "[abs](/etc/passwd); fine: [cli](cli.md#top), `../README.md`, [web](https://x.org/a)\n"
    )
    assert len(_escaping_references(doc, root)) == 4


def _climbs_out(node: ast.AST, module: Path, roots: dict[str, Path]) -> Path | None:
    """The folder a ``Path(__file__)…parent…`` expression (or a name bound to one) stands for."""
    if isinstance(node, ast.Name):
        return roots.get(node.id)
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name) and func.id == "Path" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Name) and arg.id == "__file__":
                return module
        if isinstance(func, ast.Attribute) and func.attr in {"resolve", "absolute"}:
            return _climbs_out(func.value, module, roots)
        return None
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        base = _climbs_out(node.value, module, roots)
        return None if base is None else base.parent
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and (
        node.value.attr == "parents" and isinstance(node.slice, ast.Constant)
    ):
        base = _climbs_out(node.value.value, module, roots)
        return None if base is None else base.parents[int(node.slice.value)]
    return None


def _reads_outside(module: Path, root: Path = REPO) -> list[str]:
    """Places in ``module`` that name a folder above the repository or a path that climbs."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    roots: dict[str, Path] = {}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            folder = _climbs_out(node.value, module, roots)
            if isinstance(target, ast.Name) and folder is not None:
                roots[target.id] = folder
    for node in ast.walk(tree):
        folder = _climbs_out(node, module, roots)
        if folder is not None and not folder.is_relative_to(root):
            line = getattr(node, "lineno", "?")
            found.append(f"line {line}: {ast.unparse(node)} is {folder}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and (
            re.search(r"(^|/)\.\./|/\.\.$", node.value) and "\n" not in node.value
        ):
            found.append(f"line {node.lineno}: path {node.value!r} climbs")
    return found


SOURCES = [path for path in _repo_files(".py")
           if path.relative_to(REPO).parts[0] in {"tests", "benchmarks", "scripts"}
           and path != Path(__file__).resolve()]


@pytest.mark.parametrize("module", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_test_reads_outside_the_repository(module: Path):
    assert _reads_outside(module) == []


def test_the_check_catches_a_test_that_reads_beside_the_repository(tmp_path: Path):
    root = tmp_path / "repo"
    (root / "tests" / "conformance").mkdir(parents=True)
    module = root / "tests" / "conformance" / "replay.py"
    module.write_text(
        "from pathlib import Path\n"
        "ROOT = Path(__file__).resolve().parents[2]\n"
        "VECTORS = ROOT / 'tests' / 'conformance' / 'vectors'\n"
        "SHARED = ROOT.parent / 'shared' / 'conformance'\n"
        "ABOVE = Path(__file__).parent.parent.parent.parent\n"
        "API = Path('../shared/API.md')\n"
    )
    assert sorted({line.split(":")[0] for line in _reads_outside(module, root)}) == [
        "line 4", "line 5", "line 6"]
