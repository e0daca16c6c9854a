"""The architecture, checked by parsing imports: packages depend only downwards, and no file cycles.

Layers, bottom to top (a module may import its own layer or any layer below it, never above):

    core         errors, io, registry, codes, codes_io, metrics, threads, eval_protocol, presets
    data         datasets, sources, splits, token sequences
    nets         image backbones, hash heads, text encoders, image transforms
    features     image/text encoders (on nets), feature caches, attaching features to datasets
    training     trainer, batch sources, optimisers, checkpoint format, DDP
    methods      method definitions and their shared math (base classes, similarity, losses)
    inference    checkpoint -> method, dataset, split; raw queries -> features
    index        Hamming index backends, building an index from a checkpoint
    experiments  settings/presets resolution, the one run, seed grids, reports
    serve        the HTTP search service and its web page (over index + inference)
    cli          commands (and ``python -m cmhash``)

Every import statement counts, including those inside functions (lazy imports still couple
the packages). A new package must be placed in :data:`LAYERS` here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import cmhash

SRC = Path(cmhash.__file__).resolve().parent
LAYERS = ["core", "data", "nets", "features", "training", "methods", "inference", "index", "experiments", "serve", "cli"]
CORE_PACKAGES = {"presets"}
TOP = {"__main__": "cli"}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in SRC.rglob("*.py")}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "core"
    head = parts[1]
    if head in TOP:
        return TOP[head]
    if head in CORE_PACKAGES or (SRC / f"{head}.py").exists():
        return "core"
    return head


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """cmhash modules imported by ``module`` (``from X import Y`` counts X.Y when that is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if is_pkg else module.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for name in names:
            if name == "cmhash" or name.startswith("cmhash."):
                while name not in modules and "." in name:
                    name = name.rsplit(".", 1)[0]
                if name != module:
                    out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def test_every_package_has_a_layer():
    unknown = sorted({layer_of(m) for m in all_modules()} - set(LAYERS))
    assert not unknown, f"place these packages in LAYERS (tests/test_layout.py): {unknown}"


def test_no_package_imports_a_layer_above_it():
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad = []
    for mod, deps in graph().items():
        for dep in deps:
            if rank[layer_of(dep)] > rank[layer_of(mod)]:
                bad.append(f"{mod} ({layer_of(mod)}) imports {dep} ({layer_of(dep)})")
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def test_no_import_cycles_between_files():
    g = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_methods_package_holds_only_methods_and_their_math():
    """Every module of methods/ registers a method, or is shared math that some module of methods/ uses."""
    from cmhash.methods import METHODS, SHARED_MODULES

    registered_in = {cls.__module__ for cls in (METHODS.get(n) for n in METHODS.names())}
    g = graph()
    used = {dep for mod, deps in g.items() if mod.startswith("cmhash.methods.") for dep in deps}
    for path in (SRC / "methods").glob("*.py"):
        mod = f"cmhash.methods.{path.stem}"
        if path.stem == "__init__" or path.stem.startswith("_"):
            continue
        ok = mod in registered_in or mod in used or path.stem in SHARED_MODULES
        assert ok, f"methods/{path.stem}.py registers no method and no method uses it: it does not belong in methods/"


def test_the_checker_sees_upward_and_cyclic_imports(tmp_path):
    """The parser itself: relative imports, imports inside functions, and 'from pkg import module'."""
    modules = {"cmhash.methods.x": tmp_path / "x.py", "cmhash.experiments.run": tmp_path / "r.py", "cmhash.methods": tmp_path / "__init__.py"}
    (tmp_path / "x.py").write_text("def f():\n    from cmhash.experiments import run\n    from . import y\n")
    deps = imports_of("cmhash.methods.x", tmp_path / "x.py", modules)
    assert "cmhash.experiments.run" in deps and "cmhash.methods" in deps
    assert layer_of("cmhash.experiments.run") == "experiments" and layer_of("cmhash.errors") == "core"


# ------------------------------------------------------------------ imports by name (importlib)
# Registries and the package root's facade import modules from a string (importlib), which no
# import statement shows: ``cmhash.load`` lives in inference/, ``cmhash.open_index`` in index/,
# yet ``cmhash/__init__.py`` is core. Strings that name a cmhash module are checked here too.
FACADE = "cmhash"  # the root: core for what it defines (__version__), the user's entry point for _API


def named_modules(path: Path, modules: dict[str, Path]) -> set[str]:
    """cmhash modules named by a whole string constant in the file (a lazy, importlib-style import)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value in modules and n.value != FACADE}


def facade_uses(path: Path) -> list[str]:
    """Places where a module reaches a facade name (``cmhash.load``...) through the package root."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module == FACADE and not n.level:
            out += [f"line {n.lineno}: from cmhash import {a.name}" for a in n.names if a.name in cmhash._API]
        elif isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == FACADE and n.attr in cmhash._API:
            out.append(f"line {n.lineno}: cmhash.{n.attr}")
    return out


def test_modules_named_for_lazy_import_respect_the_layers_too():
    rank = {name: i for i, name in enumerate(LAYERS)}
    modules = all_modules()
    bad = []
    for mod, path in modules.items():
        if mod == FACADE:
            continue  # checked below: it only re-exports, lazily, and nothing inside cmhash goes through it
        for dep in named_modules(path, modules):
            if rank[layer_of(dep)] > rank[layer_of(mod)]:
                bad.append(f"{mod} ({layer_of(mod)}) names {dep} ({layer_of(dep)}) for import")
    assert not bad, "upward imports by name:\n" + "\n".join(sorted(bad))


def test_the_package_root_is_a_lazy_facade_no_cmhash_module_goes_through():
    import importlib
    import sys

    modules = all_modules()
    root = modules[FACADE]
    assert named_modules(root, modules) == set(cmhash._API.values())  # everything it names is in _API
    root_deps = imports_of(FACADE, root, modules)
    assert all(layer_of(d) == "core" for d in root_deps), root_deps  # statically it stays at the bottom
    for name, mod in cmhash._API.items():  # each name is where the facade says
        assert hasattr(importlib.import_module(mod), name), f"cmhash.{name}: {mod} has no {name}"
    bad = [f"{m}: {use}" for m, p in modules.items() if m != FACADE for use in facade_uses(p)]
    assert not bad, "modules inside cmhash must import from the defining module, not the facade:\n" + "\n".join(bad)
    # and `import cmhash` stays cheap: the facade imports nothing heavy until a name is used
    code = "import sys, cmhash; print(sorted(m for m in ('torch', 'faiss', 'cmhash.inference.model', 'cmhash.index.search') if m in sys.modules))"
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**__import__("os").environ, "PYTHONPATH": str(SRC.parent)})
    assert out.stdout.strip() == "[]", out.stdout


def test_the_name_checker_sees_lazy_imports_and_facade_uses(tmp_path):
    modules = {"cmhash.data.x": tmp_path / "x.py", "cmhash.index.search": tmp_path / "s.py"}
    (tmp_path / "x.py").write_text(
        "import importlib, cmhash\nfrom cmhash import open_index\n"
        "def f():\n    return importlib.import_module('cmhash.index.search'), cmhash.load('run')\n"
    )
    assert named_modules(tmp_path / "x.py", modules) == {"cmhash.index.search"}
    uses = facade_uses(tmp_path / "x.py")
    assert any("from cmhash import open_index" in u for u in uses) and any("cmhash.load" in u for u in uses)
