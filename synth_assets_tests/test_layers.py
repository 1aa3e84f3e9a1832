"""The package's layers (README, "Layout"): every import points down, and none goes round
in a circle. Imports inside functions count too: hiding a cycle there is still a cycle."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "synth_assets"

# Lowest first; a module may import its own layer and those below it.
LAYERS = [
    # storage.py: the DuckDB tables and partition writes, pure like core (the generation
    # cache uses its connect-and-wait)
    ("core", ["synth_assets.core", "synth_assets.storage"]),
    ("generation", ["synth_assets.generation"]),
    # dagster_internals: Dagster's private APIs, wrapped; it imports nothing of ours
    # candidates: which training_dataset version a check or a publication acts on
    # dataset_index: the dataset's dedup index and build state, in SQL (core and storage below it)
    ("resources", ["synth_assets.resources", "synth_assets.partitions",
                   "synth_assets.quality", "synth_assets.dagster_internals", "synth_assets.candidates",
                   "synth_assets.dataset_index"]),
    ("assets", ["synth_assets.assets", "synth_assets.batch"]),
    ("checks, planning, automation", ["synth_assets.checks", "synth_assets.planning", "synth_assets.automation",
                                      "synth_assets.jobs", "synth_assets.sensors", "synth_assets.schedules"]),
    ("definitions", ["synth_assets.definitions", "synth_assets.settings", "synth_assets.merge"]),
    ("run", ["synth_assets.run", "synth_assets.serve", "synth_assets.review_page",
             "synth_assets.migrate", "synth_assets.prune"]),
]


def layer_of(module: str) -> int:
    for level, (_, prefixes) in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return level
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and to the README's layout")


def import_graph() -> dict[str, set[str]]:
    modules = {".".join(("synth_assets", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__"):
               path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            # `from synth_assets.assets import x` names a module when x is one, else the package
            imported |= {name for name in names if name in modules and name not in (module, "synth_assets")}
        graph[module] = imported
    return graph


def test_every_import_points_down_the_layers() -> None:
    upward = [f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
              for module, targets in import_graph().items() for target in targets
              if layer_of(target) > layer_of(module)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle() -> None:
    graph = import_graph()
    # A package's __init__ importing its own modules is not a cycle of the design.
    for module in graph:
        graph[module] = {t for t in graph[module] if not (module.startswith(t + ".") and t in graph)}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


def test_core_reads_no_environment_and_knows_no_dagster() -> None:
    for path in (PACKAGE / "core").rglob("*.py"):
        text = path.read_text()
        assert "os.environ" not in text and "getenv" not in text, f"{path.name} reads the environment"
        assert "dagster" not in import_lines(text), f"{path.name} imports dagster"


def test_the_check_finds_an_upward_import(tmp_path, monkeypatch) -> None:
    global PACKAGE
    fake = tmp_path / "synth_assets"
    (fake / "core").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "core" / "__init__.py").write_text("")
    (fake / "core" / "x.py").write_text("def f():\n    from synth_assets.run import main\n")
    (fake / "run.py").write_text("from synth_assets.core import x\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", fake)
    assert "synth_assets.run" in import_graph()["synth_assets.core.x"]
    try:
        test_no_import_cycle()
    except graphlib.CycleError:
        pass
    else:
        raise AssertionError("the cycle core.x -> run -> core.x was not found")


def import_lines(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if line.lstrip().startswith(("import ", "from ")))
