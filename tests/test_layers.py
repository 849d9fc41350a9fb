"""The package's layers (docs/layout.md): import-linter's contract, no import cycles, and
imports inside functions only where they buy start-up time or guard an optional package."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "mal"


def test_import_linter_contracts_are_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is part of the dev extra"
    done = subprocess.run([lint], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def _cycle(graph) -> list[str] | None:
    """One import cycle between mal's modules (imports inside functions count), or None."""
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(edges):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_no_import_cycles_between_modules():
    graph = grimp.build_graph("mal")
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    class Graph:  # a -> b -> c -> a
        modules = {"a", "b", "c"}

        @staticmethod
        def find_modules_directly_imported_by(m):
            return {"a": {"b"}, "b": {"c"}, "c": {"a"}}[m]

    assert _cycle(Graph()) == ["a", "b", "c", "a"]


def function_level_imports() -> list[tuple[str, int, str, bool]]:
    """(file, line, module, has a reason comment) of every import inside a function body."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for sub in ast.walk(node):
                    if isinstance(sub, (ast.Import, ast.ImportFrom)):
                        module = sub.module if isinstance(sub, ast.ImportFrom) else sub.names[0].name
                        line, above = lines[sub.lineno - 1], lines[sub.lineno - 2] if sub.lineno > 1 else ""
                        found.append((str(path.relative_to(PACKAGE)), sub.lineno, module or "",
                                      "#" in line or above.strip().startswith("#")))
    return found


def test_imports_inside_functions_are_for_start_up_or_optional_packages():
    imports = function_level_imports()
    assert imports  # the scan sees them (cli/ has many)
    own = [(f, n, m) for f, n, m, _ in imports if m.startswith("mal") and not f.startswith("cli/")]
    assert not own, f"mal imports inside functions outside cli/ (move them to the top): {own}"
    bare = [(f, n, m) for f, n, m, commented in imports if not f.startswith("cli/") and not commented]
    assert not bare, f"imports inside functions without the reason beside them: {bare}"
