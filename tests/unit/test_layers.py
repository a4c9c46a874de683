"""The layers point one way.

Statically, over every import statement (module level and inside functions):
``models`` imports nothing from ``study``; only ``study.search.tune`` imports
Ray; only ``study.tracking`` imports MLflow; the import graph of ``study`` has
no cycles, between modules or between packages, and no package imports one
above it in :data:`PACKAGE_ORDER`. Dynamically, in a fresh interpreter: the pure modules load neither
Ray nor MLflow.
"""

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = [
    "models",
    "models.spectral",
    "models.stem",
    "models.resnet",
    "study.config",
    "study.band_warnings",
    "study.metrics",
    "study.errors",
    "study.provenance",
    "study.objectives",
    "study.selection.pareto",
    "study.selection.choose",
    "study.selection.choice",
    "study.analysis.outcomes",
    "study.analysis.paired",
    "study.analysis.statistics",
    "study.analysis.gains",
    "study.analysis.resampling",
    "study.reporting.formatting",
    "study.analysis.fourier",
    "study.analysis.importance",
    "study.analysis.planning",
    "study.search.racing",
    "study.search.harness",
    "study.search.races",
    "study.search.race_scores",
    "study.search.race_reporter",
    "study.search.spaces",
    "study.search.space_parser",
    "study.search.trials",
    "study.search.summary",
    "study.search.opening",
    "study.engine.trial",
    "study.data",
    "study.cifar10c",
    "study.bench",
    "study.cli",
]
HEAVY = ("ray", "mlflow")

PROBE = f"""
import importlib, json, sys
found = {{}}
for name in sys.argv[1:]:
    importlib.import_module(name)
    found[name] = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def loaded() -> dict:
    """Module name -> heavy modules in sys.modules right after importing it (cumulative, in order)."""
    present = [
        name
        for name in PURE
        if (ROOT / (name.replace(".", "/") + ".py")).exists() or (ROOT / name.replace(".", "/")).is_dir()
    ]
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *present],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", PURE)
def test_pure_module_loads_neither_ray_nor_mlflow(name, loaded):
    if name not in loaded:
        pytest.skip(f"{name} does not exist yet in this checkout, so there is nothing to import")
    assert loaded[name] == [], f"importing {name} (after {PURE[: PURE.index(name)]}) loaded {loaded[name]}"


def test_the_probe_can_see_heavy_imports():
    # Guard against a probe that could never fail: the same check does see a module that is imported.
    if importlib.util.find_spec("mlflow") is None:
        pytest.skip("mlflow is not installed, so the probe cannot be shown to detect it")
    probe = PROBE.replace("importlib.import_module(name)", "importlib.import_module(name); import mlflow")
    out = subprocess.run(
        [sys.executable, "-c", probe, "json"], capture_output=True, text=True, timeout=120, check=True
    )
    assert "mlflow" in json.loads(out.stdout.strip().splitlines()[-1])["json"]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports() -> dict[str, set[str]]:
    """Module -> every module it names in an import statement (absolute names)."""
    out: dict[str, set[str]] = {}
    for top in ("models", "study"):
        for path in (ROOT / top).rglob("*.py"):
            name = _module_name(path)
            found: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    found.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module)
                    # ``from study.search import tune`` names the module study.search.tune.
                    found.update(f"{node.module}.{a.name}" for a in node.names)
            out[name] = found
    return out


IMPORTS = _imports()


def _importers(prefix: str) -> set[str]:
    return {
        m for m, names in IMPORTS.items() if any(n == prefix or n.startswith(prefix + ".") for n in names)
    }


def test_models_import_nothing_from_study():
    assert not {m for m in _importers("study") if m.startswith("models")}


def test_only_the_tune_module_imports_ray():
    assert _importers("ray") == {"study.search.tune"}


def test_only_tracking_imports_mlflow():
    offenders = {m for m in _importers("mlflow") if not m.startswith("study.tracking")}
    assert not offenders, offenders
    assert _importers("mlflow"), "the scan sees no MLflow importer at all"


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of a directed graph as a path of nodes (first == last), or [] when there is none."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(m: str, path: list[str]) -> list[str]:
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n) :] + [n]
            if state.get(n) is None:
                found = visit(n, path + [n])
                if found:
                    return found
        state[m] = 2
        return []

    for m in sorted(graph):
        if state.get(m) is None:
            found = visit(m, [m])
            if found:
                return found
    return []


def test_the_import_graph_of_study_has_no_cycles():
    modules = {m for m in IMPORTS if m.startswith("study")}
    graph = {m: {n for n in IMPORTS[m] if n in modules and n != m} for m in modules}
    # A package's __init__ re-exporting its own modules is not a cycle through them.
    graph = {m: {n for n in deps if not n.startswith(m + ".")} for m, deps in graph.items()}
    cycle = find_cycle(graph)
    assert not cycle, " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


# Packages from the bottom up: each may import only those before it. Pure helpers first,
# then data, the statistics, training, choosing, rendering, MLflow, Ray, commands.
PACKAGE_ORDER = [
    "models",
    "study.errors",
    "study.provenance",
    "study.files",
    "study.npyfiles",
    "study.limits",
    "study.yamlfiles",
    "study.metrics",
    "study.objectives",
    "study.config",
    "study.band_warnings",
    "study.corruptions",
    "study.data",
    "study.cifar10c",
    "study.analysis",
    "study.exported",
    "study.engine",
    "study.selection",
    "study.reporting",
    "study.tracking",
    "study.search",
    "study.bench",
    "study.cli",
]


def package_of(module: str) -> str:
    """``study.tracking.runs`` -> ``study.tracking``; ``models.stem`` -> ``models``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "study" and len(parts) > 1 else parts[0]


def package_graph(imports: dict[str, set[str]]) -> dict[str, set[str]]:
    """Package -> the other packages of ``models``/``study`` its modules import (the bare
    ``study`` of ``from study import metrics`` is not a package of its own)."""
    packages = {package_of(m) for m in imports} - {"study"}
    graph: dict[str, set[str]] = {p: set() for p in packages}
    for m, names in imports.items():
        if package_of(m) == "study":
            continue
        for n in names:
            target = package_of(n)
            if target in packages and target != package_of(m):
                graph[package_of(m)].add(target)
    return graph


def test_the_package_graph_has_no_cycles():
    cycle = find_cycle(package_graph(IMPORTS))
    assert not cycle, "package cycle: " + " -> ".join(cycle)


def test_no_package_imports_one_above_it():
    graph = package_graph(IMPORTS)
    unplaced = sorted(set(graph) - set(PACKAGE_ORDER))
    assert not unplaced, f"place these packages in PACKAGE_ORDER: {unplaced}"
    rank = {p: i for i, p in enumerate(PACKAGE_ORDER)}
    upward = sorted(f"{p} -> {q}" for p, deps in graph.items() for q in deps if rank[q] > rank[p])
    assert not upward, "imports of a package above: " + "; ".join(upward)


def test_the_package_check_sees_an_upward_import_and_a_cycle():
    # The check can fail: tracking importing reporting while reporting imports tracking.
    fake = {
        "study.tracking.runs": {"study.reporting.figures_trial"},
        "study.reporting.report": {"study.tracking.queries"},
    }
    graph = package_graph(fake)
    assert graph == {"study.tracking": {"study.reporting"}, "study.reporting": {"study.tracking"}}
    assert find_cycle(graph) in (
        ["study.reporting", "study.tracking", "study.reporting"],
        ["study.tracking", "study.reporting", "study.tracking"],
    )
