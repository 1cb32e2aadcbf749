"""Imports point down the flow: no two packages of imssa_hw import each other, directly or
round a longer cycle (lazy imports inside functions count too), and the model and the compiler
import without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import imssa_hw

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"imssa_hw": ROOT / "imssa_hw", "imssa_hw.drivers": ROOT / "drivers",
           "imssa_hw.calibration": ROOT / "calibration", "imssa_hw.cli": ROOT / "cli"}


def layer_of(module: str) -> str:
    """`imssa_hw.hil.budget` -> `hil`; loose modules (`imssa_hw.errors`) are their own layer."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            if package == "imssa_hw" and path.parent.name in ("drivers", "calibration", "cli"):
                continue
            relative = path.relative_to(folder).with_suffix("")
            module = ".".join([package, *relative.parts]).removesuffix(".__init__")
            source = layer_of(module)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                else:
                    continue
                for name in names:
                    if name.startswith("imssa_hw.") and layer_of(name) != source:
                        target = layer_of(name)
                        if (FOLDERS["imssa_hw"] / target).is_dir() or target in (
                                "drivers", "calibration", "cli") or \
                                (FOLDERS["imssa_hw"] / f"{target}.py").is_file():
                            graph.setdefault(source, set()).add(target)
    return graph


def test_no_import_cycles_between_packages():
    graph = import_graph()
    assert {"training", "hil", "workflows", "compiler", "model"} <= set(graph)
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
    code = ("import sys, imssa_hw.model.reference, imssa_hw.model.checkpoint, imssa_hw.compiler; "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_only_the_shared_modules_and_the_api_stay_loose():
    """Every other module belongs to a package of the flow (docs/architecture.md)."""
    loose = sorted(p.name for p in Path(imssa_hw.__file__).parent.glob("*.py"))
    assert loose == ["__init__.py", "api.py", "errors.py", "extras.py", "files.py"]
