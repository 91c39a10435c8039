"""``./dev gpu``: bring up a GPU and measure it, in resumable steps of at most ten minutes.

The steps, in order: ``doctor`` (the self-check: ``cnnconv doctor`` and the tests marked
gpu), ``bench`` (GEMM per dtype and training throughput with N = 1, 4, 16, 64 stacked
seeds, saved to ``<benchmarks>/results/<gpu>-<date>.json``, in parts that resume too),
then the paper-scale claims source by source, cheapest first after P0: ``P0``, ``P1``,
``GEMM``, ``P2``, ``P4``, ``P3`` (benchmarks/paper_cost.py estimates each; README). A
source's step runs the claims whose markers name that source (``--cnnconv-source``),
wherever in the claims folder they are. Each step runs under a wall-clock limit
(``--step-seconds``, default 600). Every finished run is in the run store at once, so a
step cut off by its limit loses only the stack in flight: ``./dev gpu --from P3``
continues where it stopped. Reports go to ``<report>/paper-<step>/``; the last thing
printed is one table of every step and every verdict so far.

The folders of claims, benchmarks and tests are options whose defaults are those of a
checkout, where ``./dev gpu`` runs it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import torch

from cnnconv.harness.scales import SCALES

# The sources, in the order their claims run: P0 first, then cheapest first.
SOURCES = ("P0", "P1", "GEMM", "P2", "P4", "P3")
STEPS = ["doctor", "bench", *SOURCES]
GRACE = 30.0  # seconds a step cut off at its limit gets to write what it finished
# Seeds trained as one computation in a claim step (default: all of an arm's), so that no
# computation outlasts a step: a stack is stored only once it has finished. P3's longest
# runs (its strict-fp32 arm, its 2x-wide distillation teacher) and P2-94's 25 seeds of
# ResNet-9 would not, by the per-seed estimates in benchmarks/README.md (paper_cost.py).
STACK = {"P2": 8, "P3": 1}
FIRST_LOOK = SCALES["paper"].seeds  # seeds per arm of a claim step (see ``commands``)
# The bench step in parts, one pytest process each (``-k`` of the gpu-marked benchmarks;
# tests/test_campaign.py checks that they select each exactly once): a part's JSON counts
# only once its process has ended by itself (one stopped at the limit still writes the
# cases it had finished), so a bench cut off keeps the parts it finished and ``--from
# bench`` runs only the others.
BENCH_PARTS = {
    "gemm": "gemm",
    "resnet18-b64-tf32": "throughput and resnet18-b64-tf32",
    "resnet18-b64-bf16": "throughput and resnet18-b64-bf16",
    "resnet9-b512-bf16": "throughput and resnet9-b512-bf16",
}


@dataclass(frozen=True)
class Places:
    """Where the campaign reads its claims, benchmarks and GPU tests, and writes reports."""

    claims: Path = Path("claims")
    benchmarks: Path = Path("benchmarks")
    tests: Path = Path("tests")
    report: Path = Path("report")


def gpu_slug() -> str:
    """The GPU's name as a file name, e.g. ``nvidia-h100-80gb-hbm3``."""
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _pytest(*args: str) -> list[str]:
    """A pytest command line that loads the cnnconv plugin whether installed or not."""
    installed = any(e.value == "cnnconv.plugin" for e in entry_points(group="pytest11"))
    return [sys.executable, "-m", "pytest", *([] if installed else ["-p", "cnnconv.plugin"]),
            "-p", "no:cacheprovider", *args]


def bench_results(benchmarks: Path) -> Path:
    """Where the bench step saves what it measured: ``<benchmarks>/results/<gpu>-<date>.json``."""
    return benchmarks / "results" / f"{gpu_slug()}-{datetime.date.today()}.json"


def bench_part(benchmarks: Path, part: str) -> Path:
    """The JSON of one finished part of the bench, kept until the parts are merged (named
    without the date, so that a bench resumed after midnight still finds them)."""
    return bench_results(benchmarks).parent / f"{gpu_slug()}.parts" / f"{part}.json"


def commands(step: str, places: Places) -> list[list[str]]:
    """The command lines of one step (of the bench, the parts not finished yet; of the
    doctor, its GPU tests where the tests folder is there)."""
    if step == "doctor":
        gpu_tests = places.tests / "test_gpu.py"
        if not gpu_tests.exists():
            print(f"./dev gpu: no {gpu_tests} (--tests names the folder): the doctor step runs "
                  "`cnnconv doctor` alone", file=sys.stderr)
        return [[sys.executable, "-m", "cnnconv.cli", "doctor"],
                *([_pytest(str(gpu_tests), "-m", "gpu", "-q")] if gpu_tests.exists() else [])]
    if step == "bench":
        return [_pytest(str(places.benchmarks), "-m", "gpu", "-k", selection, "--benchmark-only",
                        f"--benchmark-json={_unfinished(bench_part(places.benchmarks, part))}", "-q")
                for part, selection in BENCH_PARTS.items()
                if not bench_part(places.benchmarks, part).exists()]
    out = places.report / f"paper-{step}"
    # not -q: the progress line of each arm shows what a long step is doing. One look of 8
    # seeds, the paper scale's first: its steps are priced to fit a lent GPU's minutes at 8
    # seeds, and the later looks (up to 24) would triple an undecided claim's bill; a
    # runner with the time runs `pytest claims -m gpu` sequentially.
    stack = [f"--cnnconv-stack={STACK[step]}"] if step in STACK else []
    return [_pytest(str(places.claims), f"--cnnconv-source={step}", "--cnnconv-scale=paper",
                    f"--cnnconv-max-seeds={FIRST_LOOK}", "-m", "gpu", *stack,
                    f"--cnnconv-report={out / 'README.md'}", f"--cnnconv-json={out / 'verdicts.json'}")]


def _unfinished(part: Path) -> Path:
    """Where a bench part writes its JSON until its process has ended by itself."""
    return part.with_suffix(".tmp")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(command: list[str], seconds: float) -> int | None:
    """Run ``command`` for at most ``seconds``: its exit code, or None if it was stopped.
    ``GRACE`` seconds (a quarter of a short limit) before the limit it gets SIGINT, as from
    Ctrl-C, so that pytest still writes the verdicts and report of the claims that
    finished (and the run store keeps every finished run); only if it has not ended by
    the limit is it killed. The command starts with SIGINT's default action even where
    ours is ignored: a shell script's background job (``nohup ./dev gpu &``) ignores it,
    its children inherit that, and Python then never raises KeyboardInterrupt."""
    grace = min(GRACE, seconds / 4)
    process = subprocess.Popen(command, preexec_fn=_default_sigint)
    try:
        return process.wait(timeout=seconds - grace)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return None


def run_step(step: str, places: Places, seconds: float) -> tuple[str, float]:
    """Run a step's commands within ``seconds`` in all; (outcome, wall seconds). A command
    that fails does not stop the step's others (the doctor's tests still run, the other
    bench parts still measure); the outcome is then the first failure's."""
    started = time.perf_counter()
    outcome = "done"
    if step == "bench":  # pytest-benchmark writes its JSON into an existing folder only
        bench_part(places.benchmarks, "gemm").parent.mkdir(parents=True, exist_ok=True)
    for command in commands(step, places):
        left = seconds - (time.perf_counter() - started)
        if left <= 1:
            return "stopped at the limit", time.perf_counter() - started
        print(f"\n== ./dev gpu: {step}: {' '.join(command[2:])}", flush=True)
        code = run(command, left)
        unfinished = next((Path(a.split("=", 1)[1]) for a in command
                           if a.startswith("--benchmark-json=")), None)
        if unfinished is not None and unfinished.exists():  # a bench part: done if it ended
            if code in (0, 1):                               # by itself
                unfinished.rename(unfinished.with_suffix(".json"))
            unfinished.unlink(missing_ok=True)
        if code is None:
            return "stopped at the limit", time.perf_counter() - started
        if code not in (0, 1) and outcome == "done":
            # exit 1 (a test failed, a claim was not supported) is a result, not an error
            outcome = f"error (exit {code})"
    if outcome != "done":
        return outcome, time.perf_counter() - started
    if step == "bench":
        try:
            merge_bench_parts(places.benchmarks)
        except RuntimeError as error:
            print(error, file=sys.stderr)
            return "error (no bench JSON)", time.perf_counter() - started
    return "done", time.perf_counter() - started


def merge_bench_parts(benchmarks: Path) -> Path:
    """Join the bench's parts into one pytest-benchmark JSON (the first part's machine and
    commit information, every part's benchmarks) and remove the parts."""
    parts = [bench_part(benchmarks, part) for part in BENCH_PARTS]
    missing = [path.name for path in parts if not path.exists()]
    if missing:
        raise RuntimeError(f"./dev gpu: bench parts {', '.join(missing)} ran but wrote no JSON "
                           f"(see their output above); rerun with ./dev gpu --only bench")
    loaded = [json.loads(path.read_text()) for path in parts]
    merged = {**loaded[0], "benchmarks": [b for part in loaded for b in part["benchmarks"]]}
    results = bench_results(benchmarks)
    results.write_text(json.dumps(merged, indent=1))
    shutil.rmtree(parts[0].parent)
    return results


def verdict_rows(report: Path) -> list[str]:
    rows = []
    for path in sorted(report.glob("paper-*/verdicts.json")):
        for record in json.loads(path.read_text())["claims"]:
            decision = record["decision"]
            rows.append(f"{record['id']:<16}{record.get('dataset', ''):<15}{decision['verdict']:<14}"
                        f"{decision.get('effect', float('nan')):>+10.4g}  n={decision.get('n', '')}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="start", choices=STEPS, default=STEPS[0],
                        help="start at this step (earlier ones are skipped)")
    parser.add_argument("--only", choices=STEPS, help="run only this step")
    parser.add_argument("--step-seconds", type=float, default=600.0,
                        help="wall-clock limit of each step (default 600)")
    defaults = Places()
    for name, what in (("claims", "the folder of claim tests"), ("benchmarks", "the benchmarks"),
                       ("tests", "the tests (the doctor step runs its test_gpu.py)"),
                       ("report", "where each step's report goes")):
        parser.add_argument(f"--{name}", type=Path, default=getattr(defaults, name),
                            help=f"{what} (default: {getattr(defaults, name)}/ here)")
    args = parser.parse_args(argv)
    places = Places(args.claims, args.benchmarks, args.tests, args.report)
    if not places.claims.is_dir():
        print(f"./dev gpu: no folder of claims at {places.claims}; run it from a checkout "
              "of cnnconv, or name the folder with --claims", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("./dev gpu: no CUDA GPU here (torch.cuda.is_available() is False); on a CPU run "
              "`./dev claims` or `cnnconv doctor`", file=sys.stderr)
        return 2
    steps = [args.only] if args.only else STEPS[STEPS.index(args.start):]
    done: list[tuple[str, str, float]] = []
    for step in steps:
        outcome, seconds = run_step(step, places, args.step_seconds)
        done.append((step, outcome, seconds))
        if outcome != "done":
            break
    print(f"\n{'step':<8}{'outcome':<24}{'seconds':>8}")
    for step, outcome, seconds in done:
        print(f"{step:<8}{outcome:<24}{seconds:>8.0f}")
    stopped = [step for step, outcome, _ in done if outcome != "done"]
    if stopped:
        print(f"continue with: ./dev gpu --from {stopped[0]}  (finished runs are in the store)")
    rows = verdict_rows(args.report)
    if rows:
        print(f"\n{'claim':<16}{'data':<15}{'verdict':<14}{'effect':>10}")
        print("\n".join(rows))
    return 1 if stopped else 0


if __name__ == "__main__":
    sys.exit(main())
