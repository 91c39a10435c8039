"""The package's layout holds: layers that import only downwards, no module reaching into
another's private names, and a pytest plugin that costs nothing until a claim runs."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "cnnconv"
HEAVY = ("torch", "scipy", "matplotlib", "numpy")


def _module_graph():
    """benchmarks/module_graph.py, the notebook's measure of the import graph."""
    spec = importlib.util.spec_from_file_location("module_graph", ROOT / "benchmarks" / "module_graph.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_layers_import_only_downwards_and_nothing_imports_in_a_circle():
    graph = _module_graph()
    modules, edges = graph.edges_of(ROOT)
    assert "cnnconv.engine.train" in modules and len(edges) > 100
    assert graph.cycles(modules, edges) == []
    assert [e for e in edges if graph.runs_back_up(e, set())] == []


def test_an_engine_module_importing_the_harness_runs_back_up():
    graph = _module_graph()
    def back_up(source: str, target: str) -> bool:
        return graph.runs_back_up(graph.Edge(source, target, "import"), set())
    assert back_up("cnnconv.engine.train", "cnnconv.harness.progress")
    assert back_up("cnnconv.stats.decision", "cnnconv.harness.records")
    assert back_up("cnnconv.harness.plan", "cnnconv.tools.doctor")
    assert not back_up("cnnconv.harness.store", "cnnconv.engine.train")
    assert not back_up("cnnconv.engine.device", "cnnconv")  # the package's version


def private_reach_ins(source: str, module: str) -> list[str]:
    """Where ``source`` (the text of package module ``module``) imports or touches an
    underscore name of another cnnconv module: ``from cnnconv.x import _f``,
    ``x._f`` through an imported module, ``setattr(x, "_f", ...)``. Dunders are public."""
    def private(name: str) -> bool:
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    tree = ast.parse(source)
    aliases: set[str] = set()  # names bound to other cnnconv modules
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("cnnconv.") and alias.name != module:
                    aliases.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cnnconv"):
            for alias in node.names:
                if private(alias.name) and node.module != module:
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
                target = f"{node.module}.{alias.name}"
                if target != module and _is_module(target):
                    aliases.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in aliases and private(node.attr):
            found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr" \
                and len(node.args) >= 2 and isinstance(node.args[0], ast.Name) \
                and node.args[0].id in aliases and isinstance(node.args[1], ast.Constant) \
                and private(str(node.args[1].value)):
            found.append(f"line {node.lineno}: setattr({node.args[0].id}, {node.args[1].value!r})")
    return found


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def test_no_module_of_the_package_reaches_into_another_ones_private_names():
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if hits := private_reach_ins(path.read_text(), module):
            found[module] = hits
    assert found == {}


@pytest.mark.parametrize("source,hit", [
    ("from cnnconv.engine.train import _Training\n", "from cnnconv.engine.train import _Training"),
    ("from cnnconv.engine import train as train_mod\ntrain_mod._initial_model = None\n",
     "train_mod._initial_model"),
    ("import cnnconv.engine.memory as memory\nmemory._largest_batch_norm_input(1, 2, 3)\n",
     "memory._largest_batch_norm_input"),
    ("from cnnconv.engine import device\nsetattr(device, '_processes_per_device', 2)\n",
     "setattr(device, '_processes_per_device')"),
])
def test_a_reach_in_is_found(source, hit):
    """What the doctor once did (replace ``train._initial_model``, call ``train._footprint``)
    is caught, in each of its spellings."""
    assert [line.split(": ", 1)[1] for line in private_reach_ins(source, "cnnconv.tools.doctor")] == [hit]


def test_importing_the_plugin_imports_no_torch_scipy_matplotlib_or_numpy():
    """pytest imports the plugin in every session of an environment cnnconv is installed in."""
    code = ("import sys, cnnconv.plugin; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout
    assert out.strip() == "[]"


def test_a_pytest_session_without_claims_imports_none_of_them(pytester):
    """An unrelated project's test, with the plugin loaded: its session never builds the
    claims runner, so nothing heavy is imported (the fixture ``scale`` or a claim would)."""
    pytester.makepyfile(test_plain=f'''
        import sys

        def test_plain():
            assert "cnnconv.plugin" in sys.modules  # loaded, through its entry point
            assert not {{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r})
    ''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider",
                                           "-p", "no:benchmark", "-p", "no:hypothesispytest",
                                           "-p", "no:xdist", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
