"""The package's shape, enforced: one folder per stage, imports only down the stages.

Read from the source text (nothing is imported), so a violation names the file and line.
The stages form a graph (``ALLOWED``): two halves, collecting and scoring, that meet only at
``sources`` and ``store``, with what needs both above them; a module may import its own stage
or a stage the graph allows, and another stage only through that stage's face.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "eznas_store"

#: shared leaves, each may import the ones before it
LEAVES = ("_version", "errors", "faces", "outputs", "terminals", "config")
#: where the two halves meet: what the world gives (spaces, tables, datasets) and the store
MEETING = ("sources", "store")
#: the collecting half, in data-flow order: run untrained networks, write them into a store
COLLECTING = ("collect", "ingest")
#: the scoring half, in data-flow order: programs over store chunks, fitness, evolution, reports
SCORING = ("programs", "evaluate", "fitness", "evolution", "report")
#: what needs both halves (collect -> score -> discard) sits above both, then the faces
ABOVE = ("storeless", "archsearch", "studies", "api", "cli")


def _allowed() -> dict[str, set[str]]:
    """stage -> the stages it may import besides itself: a graph, not a line, so neither half
    may reach into the other; they meet only at ``sources`` and ``store``."""
    allowed = {leaf: set(LEAVES[:i]) for i, leaf in enumerate(LEAVES)}
    base = set(LEAVES)
    allowed["sources"] = base
    allowed["store"] = base  # no sources either: a store knows no search space (below)
    for half in (COLLECTING, SCORING):
        for i, stage in enumerate(half):
            allowed[stage] = base | set(MEETING) | set(half[:i])
    for i, stage in enumerate(ABOVE):
        allowed[stage] = base | set(MEETING) | set(COLLECTING) | set(SCORING) | set(ABOVE[:i])
    return allowed


ALLOWED = _allowed()
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = _modules()


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, module) of every eznas_store import in the file, function-local ones too."""
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("eznas_store")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("eznas_store"):
                # `from eznas_store.x import y` may import the submodule x.y
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    out.append((node.lineno, sub if sub in MODULES else node.module))
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}:{node.lineno}: relative import (use absolute eznas_store.* imports)")
    return out


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__root__"


def test_imports_follow_the_stage_graph():
    bad = []
    for mod, path in MODULES.items():
        stage = _stage(mod)
        if stage == "__root__":  # the package's face re-exports lazily from any stage
            continue
        assert stage in ALLOWED, f"{path}: folder or module {stage!r} is not a stage of the graph"
        for line, target in _imports(path):
            t = _stage(target)
            if t not in ("__root__", stage) and t not in ALLOWED[stage]:
                bad.append(f"{path.relative_to(PKG.parent)}:{line}: {stage} imports {target} (stage {t})")
    assert not bad, "imports against the stage graph:\n" + "\n".join(sorted(set(bad)))


def test_the_two_halves_meet_only_at_sources_and_store():
    for a, b in ((SCORING, COLLECTING), (COLLECTING, SCORING)):
        for stage in a:
            assert not ALLOWED[stage] & set(b), f"{stage} may import {sorted(ALLOWED[stage] & set(b))}"
    for stage in MEETING:
        assert not ALLOWED[stage] - set(LEAVES), f"{stage} may import {sorted(ALLOWED[stage] - set(LEAVES))}"


def test_other_stages_import_a_stage_through_its_face():
    """``from eznas_store.<stage> import name``: the stage's ``__init__`` lists what it offers
    (``__all__``), so moving a module inside a stage changes no other stage."""
    bad = []
    for mod, path in MODULES.items():
        stage = _stage(mod)
        if stage == "__root__":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("eznas_store."):
                t = _stage(node.module)
                deep = node.module.count(".") > 1
                submodule = any(f"{node.module}.{a.name}" in MODULES for a in node.names)
                if t not in (stage, *LEAVES) and deep and not submodule:
                    bad.append(f"{path.relative_to(PKG.parent)}:{node.lineno}: from {node.module} import ...")
    assert not bad, "imports past a stage's face:\n" + "\n".join(sorted(bad))


def test_import_graph_has_no_circle():
    graph = {m: {t for _, t in _imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}
    # a package's __init__ importing its own submodules is a re-export, not a dependency
    for m in graph:
        graph[m] = {t for t in graph[m] if not (MODULES[m].name == "__init__.py" and t.startswith(m + "."))}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_store_knows_neither_torch_nor_search_spaces():
    for mod, path in MODULES.items():
        if _stage(mod) != "store":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                assert not n.split(".")[0] == "torch", f"{path}:{node.lineno}: store/ imports torch"
                assert not n.startswith(("eznas_store.sources", "eznas_store.collect")), (
                    f"{path}:{node.lineno}: store/ imports {n}")


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_module_and_function_sizes(mod):
    path = MODULES[mod]
    src = path.read_text()
    n = len(src.splitlines())
    assert n <= MAX_MODULE_LINES, f"{path}: {n} lines (at most {MAX_MODULE_LINES})"
    long = []
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                long.append(f"{node.name} ({length} lines, line {node.lineno})")
    assert not long, f"{path}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"


def test_every_stage_folder_says_its_job():
    for init in PKG.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 80 and "TODO" not in doc, f"{init}: needs a docstring: the stage's job, what comes in, what goes out"


def test_nothing_changes_process_state_at_import():
    """No warnings filters, RNG seeding or memo caches at module level."""
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            text = ast.unparse(node)
            assert "warnings.filterwarnings" not in text and "warnings.simplefilter" not in text, (
                f"{path}:{node.lineno}: process-wide warnings filter at import")
            assert "random.seed(" not in text and "torch.manual_seed(" not in text, (
                f"{path}:{node.lineno}: seeds a global RNG at import")
        for node in ast.walk(tree):
            for dec in getattr(node, "decorator_list", []):
                name = ast.unparse(dec)
                if "lru_cache" in name or name.endswith("cache"):
                    # only constants of the installation may be memoised by a module
                    assert getattr(node, "name", "") in _CONSTANT_MEMOS, (
                        f"{path}:{node.lineno}: module-level cache {node.name}: give it to an object with a lifetime")


#: memos of things that cannot change while a process runs (schema files shipped with the package)
_CONSTANT_MEMOS = {"load_schema", "schema_validator", "program_validators"}


def test_nothing_imports_the_cli():
    for mod, path in MODULES.items():
        if mod == "eznas_store.cli" or mod.startswith("eznas_store.cli."):
            continue
        for line, target in _imports(path):
            assert not target.startswith("eznas_store.cli"), f"{path}:{line}: imports the CLI (it only wires the stages)"


def test_every_name_of_every_face_resolves():
    import importlib

    for mod, path in MODULES.items():
        if path.name != "__init__.py" or mod.count(".") != 1:
            continue
        stage = importlib.import_module(mod)
        for name in getattr(stage, "_FACE", {}):
            assert getattr(stage, name) is not None, f"{mod} offers {name} but cannot give it"


def test_no_face_name_is_also_a_module_of_its_stage():
    """Python sets a package attribute to its submodule once that is imported, which would
    shadow the face's name of the same spelling."""
    for mod, path in MODULES.items():
        if path.name != "__init__.py" or mod.count(".") != 1:
            continue
        subs = {p.stem for p in path.parent.glob("*.py")} | {p.name for p in path.parent.iterdir() if p.is_dir()}
        import importlib

        clash = set(getattr(importlib.import_module(mod), "_FACE", {})) & subs
        assert not clash, f"{mod}: face names that are also its modules: {sorted(clash)}"
