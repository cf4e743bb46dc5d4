"""The package's folders are layers: a module imports only from its own layer or lower ones, and the modules
import each other without cycles. Read from the source with `ast` (lazy imports inside functions count too),
so the rule holds without importing anything.

    shared    config, metrics, errors, cli, resources   import nothing of ours but `errors`
    drawing   parse, validate, simplify; the batch type
    render    strokes -> image / sequence; augmentation
    store     readers, prepare, merge, the store format
    sources   Google and Kaggle downloads
    models    registry, timm + our sequence models
    runs      the run folder, reports, figures
    train     data, engine, plan, optimisation, distributed, the train recipe
    predict   loaded runs and exported files, ensemble, submission, the predict recipe
    export    a run -> ONNX (fp32, int8) or a .doodle package, with its checks
    app, tools  the drawing page; the tools/*.py commands (the top: anything below)

A layer's `recipe` module (the body of src/train.py, src/predict.py) is an interface, as the tools are: it may
import any layer (the train recipe runs finished runs as distillation teachers), and no module imports it but
the command in front of it: the layer's `console` (the `main()` of the entry script: it parses the arguments,
then imports the recipe, so `--help` and mistakes answer before torch loads).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "doodle"
SHARED = {"config", "metrics", "errors", "cli", "resources", "__init__"}
LAYERS = ["shared", "drawing", "render", "store", "sources", "models", "runs", "train", "predict", "export", "app"]
RANK = {name: i for i, name in enumerate(LAYERS)} | {"tools": len(LAYERS) - 1}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """The doodle modules `name` imports (`from doodle.x import y` counts doodle.x.y when that is a module)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("doodle")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("doodle"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in known else node.module)
    return {m for m in out if m != name}


def layer(module: str) -> str:
    parts = module.split(".")
    if parts[-1] in ("recipe", "console"):
        return "tools"
    return "shared" if len(parts) < 3 and (len(parts) == 1 or parts[1] in SHARED) else parts[1]


def graph() -> dict[str, set[str]]:
    trees = modules()
    known = set(trees)
    return {name: imports_of(name, tree, known) - {"doodle"} for name, tree in trees.items()}


def test_every_module_is_in_a_layer():
    assert len(graph()) > 40
    assert {layer(m) for m in graph()} <= set(RANK), sorted({layer(m) for m in graph()} - set(RANK))
    assert not [p for p in PACKAGE.glob("*.py") if p.stem not in SHARED], "new top-level modules go in a layer"


def test_no_module_imports_from_a_higher_layer():
    wrong = [f"{m} ({layer(m)}) imports {d} ({layer(d)})" for m, deps in graph().items() for d in sorted(deps)
             if RANK[layer(d)] > RANK[layer(m)]]
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_a_recipe():
    """...but its own console, the command in front of it."""
    wrong = [f"{m} imports {d}" for m, deps in graph().items() for d in sorted(deps)
             if d.endswith(".recipe") and m != d.removesuffix(".recipe") + ".console"]
    assert not wrong, wrong


def test_shared_modules_import_only_errors():
    wrong = [f"{m} imports {d}" for m, deps in graph().items() if layer(m) == "shared"
             for d in sorted(deps) if d not in ("doodle.errors", "doodle.resources")]
    assert not wrong, wrong


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(g.get(m, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join(path[path.index(d):] + [d]) if d in path else f"{m} -> {d}")
            elif d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles


def test_moved_map_names_only_what_exists():
    """docs/MOVED.md (old module -> new) names, in its right-hand column, modules and functions that exist."""
    import re

    rows = [line.split("|") for line in (SRC.parent / "docs" / "MOVED.md").read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| before")]
    names = [n for r in rows for n in re.findall(r"`(doodle\.[\w.]+)`", r[2])]
    assert len(names) > 40
    for name in names:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):  # the longest prefix that is a module or package
            path = SRC.joinpath(*parts[:cut])
            found = path.with_suffix(".py") if path.with_suffix(".py").is_file() else path / "__init__.py"
            if found.is_file():
                break
        assert cut >= 2, f"docs/MOVED.md: {name}: no such module"
        text = found.read_text()
        for attr in parts[cut:]:
            assert re.search(rf"^(def|class) {attr}\b|^{attr} = ", text, re.M), f"docs/MOVED.md: {name}: not found"
