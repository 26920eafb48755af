"""The package tree is the pipeline: each stage imports only from the stages below it, no file imports
itself back through another (function-local imports included), and the torch-free stages stay torch-free."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "notus_lab"
LAYERS = ("core", "config", "data", "models", "judging", "train", "study")  # bottom to top; commands above all


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, known: dict) -> set[str]:
    """Every notus_lab module a file imports, wherever in the file the import sits."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("notus_lab"):
            for alias in node.names:  # `from notus_lab.config import memory` imports the submodule
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("notus_lab")}
    return out


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return -1  # notus_lab/__init__: the version only
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else len(LAYERS)  # a command module


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports_of(p, known) - {m} for m, p in known.items()}


def test_every_import_points_down_the_pipeline():
    upward = [f"{m} -> {t}" for m, targets in graph().items() for t in targets if layer(t) > layer(m)]
    assert not upward, upward


def test_no_import_cycle_between_files():
    g = graph()
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for t in sorted(g.get(m, ())):
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t) :] + [t])
            elif t not in state:
                visit(t, stack + [t])
        state[m] = "done"

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_the_checker_sees_a_function_local_cycle(tmp_path):
    """The checks above would pass vacuously if imports inside functions were missed."""
    a = tmp_path / "a.py"
    a.write_text("def f():\n    from notus_lab.train.pipeline import run\n")
    assert "notus_lab.train.pipeline" in imports_of(a, modules())
    assert layer("notus_lab.train.pipeline") > layer("notus_lab.data.pairs") > layer("notus_lab.core.files")


def test_data_and_config_import_no_torch():
    """Binarizing and validating stay fast: importing every module of data/ and config/ loads no torch."""
    names = [m for m in modules() if m.split(".")[1:2] in (["data"], ["config"], ["core"])]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in names)
        + "print(','.join(sorted(k for k in ('torch', 'transformers', 'trl') if k in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert len(names) >= 15 and out.stdout.strip() == "", (names, out.stdout, out.stderr)


def test_no_function_over_90_lines():
    """Long functions hide the steps a name should say."""
    long = [
        f"{p.relative_to(PACKAGE)}:{n.name} {n.end_lineno - n.lineno + 1}"
        for p in PACKAGE.rglob("*.py")
        for n in ast.walk(ast.parse(p.read_text()))
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 90
    ]
    assert not long, long
