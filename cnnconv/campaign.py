"""``./dev gpu``: bring up a GPU and measure it, in resumable steps of at most ten minutes.

The steps, in order: ``doctor`` (the self-check: ``cnnconv doctor`` and the tests marked
gpu), ``bench`` (GEMM per dtype and training throughput with N = 1, 4, 16, 64 stacked
seeds, saved to ``benchmarks/results/<gpu>-<date>.json``, in parts that resume too), then
the paper-scale claims by source, cheapest first after P0: ``P0``, ``P1``, ``GEMM``,
``P2``, ``P4``, ``P3`` (benchmarks/paper_cost.py estimates each; README). Each step runs
under a wall-clock limit (``--step-seconds``, default 600). Every finished run is in the
run store at once, so a step cut off by its limit loses only the stack in flight:
``./dev gpu --from P3`` continues where it stopped. Reports go to ``report/paper-<step>/``; the last
thing printed is one table of every step and every verdict so far.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
CLAIM_FILES = {
    "P0": ["claims/test_p0_attention.py", "claims/test_p0_batch_size.py",
           "claims/test_p0_calibration.py", "claims/test_p0_precision.py"],
    "P1": ["claims/test_p1_lenet.py"],
    "GEMM": ["claims/test_gemm_dtype.py"],
    "P2": ["claims/test_p2_resnet9.py"],
    "P4": ["claims/test_p4_small_batch.py"],
    "P3": ["claims/test_p3_tricks.py"],
}
STEPS = ["doctor", "bench", *CLAIM_FILES]
# The bench step in parts, one pytest process each (``-k`` of the gpu-marked benchmarks;
# tests/test_campaign.py checks that they select each exactly once): pytest-benchmark
# writes its JSON when a process ends, so a bench cut off by the step's limit keeps the
# parts it finished, and ``--from bench`` runs only the others.
BENCH_PARTS = {
    "gemm": "gemm",
    "resnet18-b64-tf32": "throughput and resnet18-b64-tf32",
    "resnet18-b64-bf16": "throughput and resnet18-b64-bf16",
    "resnet9-b512-bf16": "throughput and resnet9-b512-bf16",
}


def gpu_slug() -> str:
    """The GPU's name as a file name, e.g. ``nvidia-h100-80gb-hbm3``."""
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _pytest(*args: str) -> list[str]:
    """A pytest command line that loads the cnnconv plugin whether installed or not."""
    installed = any(e.value == "cnnconv.plugin" for e in entry_points(group="pytest11"))
    return [sys.executable, "-m", "pytest", *([] if installed else ["-p", "cnnconv.plugin"]),
            "-p", "no:cacheprovider", *args]


def bench_results() -> Path:
    """Where the bench step saves what it measured: ``benchmarks/results/<gpu>-<date>.json``."""
    return ROOT / "benchmarks" / "results" / f"{gpu_slug()}-{datetime.date.today()}.json"


def bench_part(part: str) -> Path:
    """The JSON of one finished part of the bench, beside its results until they are merged."""
    results = bench_results()
    return results.with_name(f"{results.stem}.parts") / f"{part}.json"


def commands(step: str, report: Path) -> list[list[str]]:
    """The command lines of one step (of the bench, the parts not finished yet)."""
    if step == "doctor":
        return [[sys.executable, "-m", "cnnconv.cli", "doctor"], _pytest("tests", "-m", "gpu", "-q")]
    if step == "bench":
        return [_pytest("benchmarks", "-m", "gpu", "-k", selection, "--benchmark-only",
                        f"--benchmark-json={bench_part(part)}", "-q")
                for part, selection in BENCH_PARTS.items() if not bench_part(part).exists()]
    out = report / f"paper-{step}"
    # not -q: the progress line of each arm shows what a long step is doing
    return [_pytest(*CLAIM_FILES[step], "--cnnconv-scale=paper", "-m", "gpu",
                    f"--cnnconv-report={out / 'README.md'}", f"--cnnconv-json={out / 'verdicts.json'}")]


def run_step(step: str, report: Path, seconds: float) -> tuple[str, float]:
    """Run a step's commands within ``seconds`` in all; (outcome, wall seconds)."""
    started = time.perf_counter()
    for command in commands(step, report):
        left = seconds - (time.perf_counter() - started)
        print(f"\n== ./dev gpu: {step}: {' '.join(command[2:])}", flush=True)
        try:
            code = subprocess.run(command, cwd=ROOT, timeout=max(1.0, left)).returncode
        except subprocess.TimeoutExpired:
            return "stopped at the limit", time.perf_counter() - started
        if code not in (0, 1):  # 1: a test failed or a claim was not supported -- a result
            return f"error (exit {code})", time.perf_counter() - started
    if step == "bench":
        merge_bench_parts()
    return "done", time.perf_counter() - started


def merge_bench_parts() -> Path:
    """Join the bench's parts into one pytest-benchmark JSON (the first part's machine and
    commit information, every part's benchmarks) and remove the parts."""
    parts = [bench_part(part) for part in BENCH_PARTS]
    loaded = [json.loads(path.read_text()) for path in parts if path.exists()]
    merged = {**loaded[0], "benchmarks": [b for part in loaded for b in part["benchmarks"]]}
    results = bench_results()
    results.write_text(json.dumps(merged, indent=1))
    for path in parts:
        path.unlink(missing_ok=True)
    parts[0].parent.rmdir()
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
    parser.add_argument("--report", type=Path, default=ROOT / "report")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("./dev gpu: no CUDA GPU here (torch.cuda.is_available() is False); on a CPU run "
              "`./dev claims` or `cnnconv doctor`", file=sys.stderr)
        return 2
    steps = [args.only] if args.only else STEPS[STEPS.index(args.start):]
    done: list[tuple[str, str, float]] = []
    for step in steps:
        outcome, seconds = run_step(step, args.report, args.step_seconds)
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
