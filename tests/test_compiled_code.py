"""Numba's on-disk cache (cache=True) is invalidated only when a compiled function's own file changes,
never when a compiled function it calls from another file does. So a compiled function may call only
compiled functions of its own file; otherwise an edit could leave stale machine code running."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "doodle"


def is_compiled(fn: ast.FunctionDef) -> bool:
    for dec in fn.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        if isinstance(target, ast.Attribute) and target.attr in ("njit", "jit", "vectorize", "guvectorize"):
            return True
        if isinstance(target, ast.Name) and target.id in ("njit", "jit"):
            return True
    return False


def compiled_functions(tree: ast.Module) -> list[ast.FunctionDef]:
    return [n for n in tree.body if isinstance(n, ast.FunctionDef) and is_compiled(n)]


def test_compiled_functions_call_only_compiled_functions_of_their_own_file():
    trees = {".".join(p.relative_to(SRC).with_suffix("").parts): ast.parse(p.read_text(), str(p))
             for p in sorted(SRC.rglob("*.py"))}
    compiled = {mod: {f.name for f in compiled_functions(t)} for mod, t in trees.items()}
    assert sum(map(len, compiled.values())) >= 10, "the scan found the package's compiled kernels"
    crossing = []
    for mod, tree in trees.items():
        imported = {}  # local name -> (module, name) for `from doodle.<module> import <name>`
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("doodle."):
                for alias in node.names:
                    imported[alias.asname or alias.name] = (node.module.removeprefix("doodle."), alias.name)
        for fn in compiled_functions(tree):
            for call in ast.walk(fn):
                if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in imported:
                    other, name = imported[call.func.id]
                    if name in compiled.get(other, set()):
                        crossing.append(f"{mod}.{fn.name} calls {other}.{name}")
    assert not crossing, f"compiled code calling compiled code of another file (stale-cache risk): {crossing}"
