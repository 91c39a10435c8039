"""cnnconv works installed, not only checked out: a wheel built from this checkout and
installed in a fresh virtual environment loads its plugin from the wheel and plans the
checkout's claims (nothing in the package looks for a repository around it)."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a fresh venv with cnnconv installed from a wheel of this checkout.
    Its dependencies (torch and the rest) come from this environment's site-packages
    through a .pth file rather than a second download; cnnconv itself only from the wheel."""
    pytest.importorskip("setuptools", reason="pip install setuptools (the [test] extra has it)")
    tmp = tmp_path_factory.mktemp("installed")
    source = tmp / "source"  # a copy: building in the checkout would leave build/ behind
    shutil.copytree(ROOT / "cnnconv", source / "cnnconv", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp / "wheels"), str(source)], check=True)
    (wheel,) = (tmp / "wheels").glob("cnnconv-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True)
    return python


def test_the_wheel_holds_every_module_and_its_plugin_comes_from_it(installed, tmp_path):
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts)
                     for p in (ROOT / "cnnconv").rglob("*.py"))
    code = ("import importlib.util, json, sys\n"
            f"print(json.dumps({{name: importlib.util.find_spec(name).origin for name in {modules!r}}}))")
    found = json.loads(subprocess.run([str(installed), "-c", code], capture_output=True, text=True,
                                      cwd=tmp_path, check=True).stdout)
    assert len(found) > 40
    for name, origin in found.items():
        assert Path(origin).is_relative_to(installed.parent.parent), (name, origin)


def test_the_installed_plugin_plans_the_claims_of_the_checkout(installed, tmp_path, cifar_dir):
    """From a folder outside the checkout, the installed plugin collects and plans the
    checkout's claims folder (its conftest.py only, not the checkout's root one) on real
    CIFAR-10."""
    plan = tmp_path / "plan.json"
    done = subprocess.run(
        [str(installed), "-m", "pytest", str(ROOT / "claims"), "--confcutdir", str(ROOT / "claims"),
         "-p", "no:cacheprovider", "-q", "--cnnconv-scale=cpu", "--cnnconv-plan",
         f"--cnnconv-data={cifar_dir.parent}", f"--cnnconv-store={tmp_path / 'store'}",
         f"--cnnconv-json={plan}"],
        capture_output=True, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": ""})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "cnnconv plan: nothing was trained" in done.stdout
    # every source but P4, whose claims are all slow at cpu scale (skipped, so not planned)
    claims = json.loads(plan.read_text())["plan"]
    assert {claim["claim"].split("-")[0] for claim in claims} == {"P0", "P1", "P2", "P3", "GEMM"}
    assert sum(len(claim["runs"]) for claim in claims) > 100
