"""The house keeps its shape: folders in the order data travels, each importing only from those before it,
no import circle, modules of one idea (about 400 lines at most), and no private name used across modules.

docs/design.md explains the order; this test reads the imports as written (``ast``), lazy ones included.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The order data travels: a module may import from its own folder and from folders earlier in this list.
LAYERS = ["config", "datasets", "training", "diagnostics", "results", "store", "run", "grid", "analysis",
          "present", "cli"]
MAX_LINES = 400


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / "ceag").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module, names, line) of every ``import``/``from ... import`` in the file, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names]
    return found


def layer(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "ceag" or len(parts) < 2:
        return None
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else None


def test_every_folder_of_ceag_has_its_place_in_the_order():
    folders = {p.name for p in (ROOT / "ceag").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(LAYERS), sorted(folders ^ set(LAYERS))


def test_no_module_imports_from_a_folder_later_in_the_order():
    wrong = []
    for name, path in modules().items():
        mine = layer(name)
        for target, _, line in imports(path):
            theirs = layer(target)
            if mine is not None and theirs is not None and theirs > mine:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target} ({LAYERS[theirs]} comes after "
                             f"{LAYERS[mine]})")
    assert not wrong, "\n".join(wrong)


def test_no_import_circle():
    graph = {name: {t for t, _, _ in imports(path) if t in modules() and t != name} for name, path in modules().items()}
    # a package's __init__ that re-exports its modules is not a circle with them
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    seen, stack, circles = set(), [], []

    def visit(node: str) -> None:
        if node in stack:
            circles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        stack.pop()

    for node in sorted(graph):
        visit(node)
    assert not circles, circles


@pytest.mark.parametrize("name", sorted(modules()))
def test_a_module_holds_one_idea_of_a_few_hundred_lines(name):
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines: split it by idea"


def test_no_private_name_is_imported_across_modules():
    private = [f"{path.relative_to(ROOT)}:{line} imports {target}.{n}"
               for path in [*modules().values(), *ROOT.glob("dashboard/*.py"), ROOT / "app.py"]
               for target, names, line in imports(path) if target.startswith("ceag")
               for n in names if n.startswith("_") and not n.startswith("__")]
    assert not private, "\n".join(private)
