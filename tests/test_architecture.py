"""The folder tree is the architecture: imports only point down the stages, never in a cycle, and the
modules a Dataflow worker imports stay free of TensorFlow, Keras and matplotlib.

Every `import` statement counts, at module level or inside a function (a lazy import is still an
edge of the graph), under TYPE_CHECKING too.
"""
from __future__ import annotations

import ast
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("core", "pipeline", "detect", "trainer")
# Lowest first: a module may import its own stage and the stages before it, never a later one.
STAGES = (
    "core",
    "pipeline",
    "detect",
    "trainer.pictures",
    "trainer.augment",
    "trainer.features",
    "trainer.recipe",
    "trainer.data",
    "trainer.evaluation",
    "trainer.model",
    "trainer.training",
    "trainer.pretrain",
    "trainer.inference",
    "trainer.pseudo",
    "trainer.baseline",
)
# The trainer reads shards through the data contract (core), never through the Beam job's package; the
# detection job reads an exported model through core.export_layout, never through the trainer.
FORBIDDEN = {"trainer": ("pipeline", "detect"), "detect": ("trainer",)}
WORKER_PACKAGES = ("core", "pipeline")  # what `pip install .` puts on a Dataflow worker imports
HEAVY = ("tensorflow", "keras", "matplotlib")


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports_of(path: pathlib.Path, known: set[str]) -> tuple[set[str], set[str]]:
    """(project modules, top-level third-party packages) that `path` imports anywhere in its body."""
    project, external = set(), set()

    def add(name: str) -> None:
        if name.split(".")[0] in PACKAGES:
            while name not in known and "." in name:
                name = name.rsplit(".", 1)[0]
            project.add(name)
        else:
            external.add(name.split(".")[0])

    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                add(full if full in known else node.module)
    return project, external


def stage_of(module: str) -> int:
    matches = [i for i, s in enumerate(STAGES) if module == s or module.startswith(s + ".")]
    return max(matches) if matches else -1


@pytest.fixture(scope="module")
def graph() -> dict[str, tuple[set[str], set[str]]]:
    modules = project_modules()
    return {name: imports_of(path, set(modules)) for name, path in modules.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_every_module_belongs_to_a_stage(graph):
    assert [m for m in graph if stage_of(m) < 0 and m not in ("trainer",)] == []


def test_no_import_cycle(graph):
    edges = {m: {d for d in deps if d != m and d in graph and not m.startswith(d + ".")}
             for m, (deps, _) in graph.items()}
    assert find_cycle(edges) is None


def test_imports_point_down_the_stages(graph):
    upward = [f"{m} -> {d}" for m, (deps, _) in graph.items() for d in deps
              if d in graph and stage_of(d) > stage_of(m)]
    assert upward == []


def test_detect_imports_no_keras(graph):
    """The detection job runs a SavedModel with TensorFlow alone: no Keras, no matplotlib."""
    heavy = [f"{m} -> {x}" for m, (_, external) in graph.items() if m.split(".")[0] == "detect"
             for x in sorted(external & {"keras", "matplotlib"})]
    assert heavy == []


def test_trainer_does_not_import_the_beam_job(graph):
    wrong = [f"{m} -> {d}" for m, (deps, _) in graph.items() for pkg, banned in FORBIDDEN.items()
             if m.split(".")[0] == pkg for d in deps if d.split(".")[0] in banned]
    assert wrong == []


def test_worker_modules_import_no_tensorflow_keras_or_matplotlib(graph):
    heavy = [f"{m} -> {x}" for m, (_, external) in graph.items() if m.split(".")[0] in WORKER_PACKAGES
             for x in sorted(external & set(HEAVY))]
    assert heavy == []


def test_the_beam_job_runs_without_loading_tensorflow():
    """Importing every worker module (and Beam itself) leaves TF, Keras and matplotlib unloaded."""
    worker_modules = [m for m in project_modules() if m.split(".")[0] in WORKER_PACKAGES]
    code = ("import importlib, sys\n"
            f"for m in {worker_modules!r}: importlib.import_module(m)\n"
            f"print(sorted(h for h in {HEAVY!r} if h in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def _install_requires() -> list[str]:
    """setup.py's install_requires (what a Dataflow worker installs), read from the file's AST."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            return [ast.literal_eval(e) for e in node.value.elts]
    raise AssertionError("setup.py has no install_requires")


# Import name -> distribution name, where they differ.
_DISTRIBUTIONS = {"apache_beam": "apache-beam", "google_crc32c": "google-crc32c", "sklearn": "scikit-learn"}
# Imported by core.fs only for gs:// (google-cloud-storage comes with the gcp extra) and by the
# protobuf runtime Beam installs.
_OPTIONAL_ON_WORKERS = {"google"}


def test_a_worker_installs_what_the_job_imports_and_no_more(graph):
    names = {re.split(r"[<>=\[ ;]", r, maxsplit=1)[0].lower() for r in _install_requires()}
    assert not names & {"tensorflow", "tensorboard", "keras", "matplotlib"}, names
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    imported = {x for m, (_, external) in graph.items() if m.split(".")[0] in WORKER_PACKAGES for x in external}
    missing = sorted(x for x in imported - stdlib - _OPTIONAL_ON_WORKERS
                     if _DISTRIBUTIONS.get(x, x).lower() not in names)
    assert missing == []


def runtime_imports_of(path: pathlib.Path) -> set[str]:
    """Names a module imports when it is imported: module-level statements only, not under TYPE_CHECKING,
    not inside functions (a lazy import runs only when its function does)."""
    names: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.update({node.module, *(f"{node.module}.{alias.name}" for alias in node.names)})
            elif isinstance(node, ast.If):
                if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.With):
                visit(node.body)
            elif isinstance(node, ast.Try):
                for block in (node.body, *(handler.body for handler in node.handlers), node.orelse, node.finalbody):
                    visit(block)

    visit(ast.parse(path.read_text(), str(path)).body)
    return names


def test_the_model_builds_without_tensorflow():
    """trainer.model.network (backbones, heads, losses, LWLRAP) imports no TensorFlow: benchmarks/bench_keras_jax
    builds and times the trainer's model on a machine with JAX and no TensorFlow."""
    modules = {**project_modules(), **{module_name(p): p for p in sorted((ROOT / "benchmarks").glob("*.py"))}}
    seen, todo, external = set(), ["trainer.model.network", "benchmarks.bench_keras_jax"], set()
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for prefix in (".".join(parts[:i]) for i in range(1, len(parts) + 1)):  # packages' __init__ run first
            if prefix in modules and prefix not in seen:
                seen.add(prefix)
                for imported in runtime_imports_of(modules[prefix]):
                    if imported.split(".")[0] in (*PACKAGES, "benchmarks"):
                        todo.append(imported)
                    else:
                        external.add(imported.split(".")[0])
    assert "trainer.model.heads" in seen and "trainer.evaluation.lwlrap" in seen  # the walk follows imports
    assert "tensorflow" not in external, sorted(m for m in seen)
