"""The package's import graph points down: cli -> tools / analysis -> engine -> models, losses,
metrics -> data -> io. Every import counts, the ones inside functions too (a lazy import is
still an arrow). Read from the source with ``ast``: nothing is imported to check it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ceco3d", "data_prep")

# Module (or package) -> layer; a module may import its own layer and the ones below.
LAYERS = {
    "ceco3d.cli": 6,
    "ceco3d.tools": 5,
    "ceco3d.analysis": 5,
    "ceco3d.engine": 4,
    "ceco3d.viewer": 4,  # the interactive viewer of ceco3d-view: scan files, colours
    "ceco3d.models": 3,
    "ceco3d.losses": 3,
    "ceco3d.metrics": 3,
    "ceco3d.neural_collapse": 3,  # statistics that training logs and analysis reports
    "ceco3d.submission": 3,
    "ceco3d.viz": 3,
    "ceco3d.scan_export": 3,
    # Raw ScanNet -> arrays: it reads and writes through the data layer, and needs no engine.
    "data_prep": 2,
    "ceco3d.data": 2,
    "ceco3d.io": 1,
    "ceco3d.claims": 1,
    "ceco3d.errors": 1,
    "ceco3d.paths": 1,
    "ceco3d.device": 1,
    "ceco3d": 1,  # the package's own __init__ (only: a new subpackage needs its own entry)
}
# The tools sit on top of the library: only the entry points may call them.
TOOLS_USERS = ("ceco3d.tools", "ceco3d.cli")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    """The layer of the longest entry of LAYERS that is ``module`` or a package above it."""
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or (prefix != "ceco3d" and module.startswith(prefix + ".")):
            return LAYERS[prefix]
    raise KeyError(f"{module} has no layer in tests/test_layout.py: add it to LAYERS")


def is_module(name: str) -> bool:
    path = REPO_ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import of this repository's packages in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from ceco3d import viz` imports the module ceco3d.viz, not the package.
            names = [f"{node.module}.{a.name}" for a in node.names]
            names = [n if is_module(n) else node.module for n in names]
        else:
            assert not isinstance(node, ast.ImportFrom), f"{path}: relative import"
            continue
        found += [(node.lineno, n) for n in names if n.split(".")[0] in PACKAGES]
    return found


def source_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO_ROOT / package).rglob("*.py"))


def test_every_module_has_a_layer():
    for path in source_files():
        layer(module_name(path))


@pytest.mark.parametrize("path", source_files(), ids=lambda p: module_name(p))
def test_imports_point_down(path):
    importer = module_name(path)
    upward = [
        f"{path.relative_to(REPO_ROOT)}:{line} imports {module} (layer {layer(module)} above "
        f"{layer(importer)})"
        for line, module in imported_modules(path)
        if layer(module) > layer(importer)
    ]
    tools = [
        f"{path.relative_to(REPO_ROOT)}:{line} imports {module}: only cli and tools may"
        for line, module in imported_modules(path)
        if module.startswith("ceco3d.tools") and not importer.startswith(TOOLS_USERS)
    ]
    assert not upward + tools, "\n".join(upward + tools)


def test_the_check_sees_an_upward_import(tmp_path):
    """The rule itself: an engine module importing the analysis layer is caught."""
    path = REPO_ROOT / "ceco3d" / "engine" / "evaluate.py"
    assert layer("ceco3d.analysis.report") > layer(module_name(path))
    assert (1, "ceco3d.viz") in imported_modules_of("from ceco3d import viz\n", tmp_path)
    assert (2, "ceco3d.data.label_sets") in imported_modules_of(
        "def f():\n    from ceco3d.data.label_sets import LABEL_SETS\n", tmp_path
    )


def imported_modules_of(source: str, tmp_path: Path) -> list[tuple[int, str]]:
    path = tmp_path / "module.py"
    path.write_text(source)
    return imported_modules(path)


# A format has one owner: its file and folder names stand as string constants in that module only
# (docstrings and comments may mention them).
FORMAT_OWNERS = {
    "ceco3d/data/raw_layout.py": ("_vh_clean_2", "scans_test", "scannetv2_", ".aggregation.json"),
    "ceco3d/data/layout.py": ("manifest.json", "meta.json"),
}


def string_constants(path: Path) -> list[tuple[int, str]]:
    """The string constants of a module's code (f-string parts included), docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        and id(node) not in docstrings
    ]  # fmt: skip


@pytest.mark.parametrize("owner", sorted(FORMAT_OWNERS))
def test_a_format_is_named_by_its_owner_only(owner):
    found = [
        f"{path.relative_to(REPO_ROOT)}:{line}: {value!r}"
        for path in source_files()
        if str(path.relative_to(REPO_ROOT)) != owner
        for line, value in string_constants(path)
        if any(name in value for name in FORMAT_OWNERS[owner])
    ]
    assert not found, f"names that {owner} owns:\n" + "\n".join(found)


def test_the_owner_check_sees_a_name_in_code_but_not_in_a_docstring(tmp_path):
    path = tmp_path / "module.py"
    path.write_text('"""reads scans_test/"""\nFOLDER = "scans_test"\n')
    assert string_constants(path) == [(2, "scans_test")]
