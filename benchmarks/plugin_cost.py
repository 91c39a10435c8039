"""What installing cnnconv costs a pytest session without claims (a script, not a benchmark).

pytest loads every ``pytest11`` entry point of its environment, so cnnconv's plugin is
imported by every test session there, claims or not. This measures, with ``PYTHON`` (an
environment where cnnconv is installed; default: this one):

- the plugin's import time: ``python -X importtime -c "import cnnconv.plugin"``, the
  cumulative microseconds of ``cnnconv.plugin``;
- an unrelated project of one trivial test, run by ``python -m pytest -q`` with the plugin
  and without it (``-p no:cnnconv``), alternating, each in a fresh process.

Medians over ``--rounds``. The machine's speed drifts, so only figures taken in one
sitting compare (run it for two environments back to back).

    python benchmarks/plugin_cost.py [--python .venv/bin/python] [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def import_time(python: str, folder: Path) -> float:
    """Seconds ``import cnnconv.plugin`` takes, cumulatively (``-X importtime``), run in
    ``folder`` (in a checkout, ``-c`` would import the checkout's cnnconv)."""
    done = subprocess.run([python, "-X", "importtime", "-c", "import cnnconv.plugin"],
                          capture_output=True, text=True, check=True, cwd=folder)
    for line in done.stderr.splitlines():
        parts = [part.strip() for part in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == "cnnconv.plugin":
            return int(parts[1]) / 1e6
    raise RuntimeError(f"{python} did not import cnnconv.plugin:\n{done.stderr[-2000:]}")


def session_time(python: str, project: Path, *options: str) -> float:
    """Wall seconds of ``python -m pytest -q`` in ``project`` (a fresh process)."""
    started = time.perf_counter()
    subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options],
                   cwd=project, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        (project / "test_unrelated.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
        session_time(args.python, project)  # warm the file cache once
        imports, with_plugin, without = [], [], []
        for _ in range(args.rounds):
            imports.append(import_time(args.python, project))
            with_plugin.append(session_time(args.python, project))
            without.append(session_time(args.python, project, "-p", "no:cnnconv"))
    print(f"python {args.python}, {args.rounds} rounds, medians (min-max)")

    def show(name: str, values: list[float]) -> None:
        print(f"{name:<34} {statistics.median(values):6.2f} s ({min(values):.2f}-{max(values):.2f})")
    show("import cnnconv.plugin (cumulative)", imports)
    show("pytest, one unrelated test", with_plugin)
    show("the same with -p no:cnnconv", without)
    print(f"{'cost of the plugin':<34} {statistics.median(with_plugin) - statistics.median(without):6.2f} s")


if __name__ == "__main__":
    main()
