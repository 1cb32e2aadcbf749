"""Imports point down the flow: every import of every module of imssa_hw (lazy imports inside
functions and imports for type checking count too) is one that the table "| layer | imports |"
of docs/architecture.md allows, the table names every layer and orders them, no two packages
import each other, directly or round a longer cycle, and the model and the compiler import
without torch."""

from __future__ import annotations

import ast
import functools
import re
import subprocess
import sys
from pathlib import Path

import imssa_hw

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"imssa_hw": ROOT / "imssa_hw", "imssa_hw.drivers": ROOT / "drivers",
           "imssa_hw.calibration": ROOT / "calibration", "imssa_hw.cli": ROOT / "cli"}
ARCHITECTURE = ROOT / "docs" / "architecture.md"
TABLE = "| layer | imports |"


def layer_of(module: str) -> str:
    """`imssa_hw.hil.budget` -> `hil`; loose modules (`imssa_hw.errors`) are their own layer, the
    package's `__init__` is `imssa_hw`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def modules() -> dict[str, Path]:
    """Every module of imssa_hw (`imssa_hw.hil.budget`) and its file."""
    found = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            relative = path.relative_to(folder).with_suffix("")
            found[".".join([package, *relative.parts]).removesuffix(".__init__")] = path
    return found


@functools.cache
def import_graph() -> dict[str, dict[str, str]]:
    """Per layer, the other layers it imports, each with the first module that does. A name
    read from the package itself (`imssa_hw.__version__`) is no layer. Read once per test
    process (two tests ask; neither changes it)."""
    found = modules()
    layers = {layer_of(m) for m in found}
    graph: dict[str, dict[str, str]] = {}
    for module, path in sorted(found.items()):
        source = layer_of(module)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path}:{node.lineno}: a relative import"
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                target = layer_of(name)
                if name.startswith("imssa_hw.") and target in layers and target != source:
                    graph.setdefault(source, {}).setdefault(target, module)
    return graph


def _names(cell: str) -> list[str]:
    """The `quoted` names of a table cell, without those of its remarks in parentheses."""
    return re.findall(r"`([^`]+)`", re.sub(r"\([^()]*\)", "", cell))


def documented_layers() -> list[tuple[list[str], set[str], set[str]]]:
    """The rows of the table: the row's layers, the layers they may import ("all of the above":
    every layer of the rows above, less those named), and the layers the row names."""
    lines = ARCHITECTURE.read_text().splitlines()
    assert TABLE in lines, f"{ARCHITECTURE} has no table {TABLE}"
    rows: list[tuple[list[str], set[str], set[str]]] = []
    above: set[str] = set()
    for line in lines[lines.index(TABLE) + 2:]:
        if not line.startswith("|"):
            break
        layers, imports = (cell.strip() for cell in line.strip().strip("|").split("|"))
        named = set(_names(imports))
        allowed = above - named if imports.startswith("all of the above") else named
        rows.append((_names(layers), allowed, named))
        above |= set(_names(layers))
    return rows


def test_the_table_names_every_layer_once_and_each_imports_only_from_above():
    rows = documented_layers()
    listed = [layer for layers, _, _ in rows for layer in layers]
    assert len(listed) == len(set(listed)), f"a layer listed twice: {listed}"
    assert set(listed) == {layer_of(m) for m in modules()}
    above: set[str] = set()
    for layers, allowed, named in rows:
        assert named <= above, f"{layers} may import {sorted(named - above)}, not on a row above"
        assert allowed <= above
        above |= set(layers)


def test_every_import_is_one_the_table_allows():
    allowed = {layer: may for layers, may, _ in documented_layers() for layer in layers}
    graph = import_graph()
    assert {"training", "hil", "workflows", "compiler", "model", "imssa_hw"} <= set(graph)
    wrong = [f"{module} imports {target}" for source, targets in sorted(graph.items())
             for target, module in sorted(targets.items()) if target not in allowed.get(source, ())]
    assert not wrong, f"imports {ARCHITECTURE.name} does not allow: {'; '.join(wrong)}"


def test_no_import_cycles_between_packages():
    graph = import_graph()
    visiting, done = [], set()

    def visit(node: str) -> None:
        assert node not in visiting, f"import cycle: {' -> '.join(visiting[visiting.index(node):] + [node])}"
        if node in done:
            return
        visiting.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        visiting.pop()
        done.add(node)
    for node in sorted(graph):
        visit(node)


def test_the_model_and_the_compiler_import_without_torch():
    code = ("import sys, imssa_hw.model.reference, imssa_hw.model.checkpoint, "
            "imssa_hw.model.loop_scales, imssa_hw.compiler; print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_only_the_shared_modules_and_the_api_stay_loose():
    """Every other module belongs to a package of the flow (docs/architecture.md)."""
    loose = sorted(p.name for p in Path(imssa_hw.__file__).parent.glob("*.py"))
    assert loose == ["__init__.py", "api.py", "config.py", "errors.py", "extras.py", "files.py"]
