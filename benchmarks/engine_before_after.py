"""The CPU engine before and after a change, measured in one sitting (a script, not a
benchmark: it checks out the old engine beside the working tree).

A CPU's speed here varies by 1.5x from hour to hour (other tenants), so figures from
different days cannot be compared. This trains the same configurations with the engine
at ``--before`` (a git worktree of that revision) and with the working tree, alternating
engine by engine within each round, each run in a fresh process, and reports the median
seed-iterations per second of each (training steps only: evaluation excluded, start-up
included, as a claim's run pays it).

    CNNCONV_DATA=<cifar10 dir> python benchmarks/engine_before_after.py --before 9bf2fa8 \
        --rounds 5 --json benchmarks/results/NAME.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (name, model, options, batch, precision, seeds): the figure (width-8 ResNet-18,
# batch 64, tf32, 4 seeds), its 1-seed and fp32 neighbours, and the other protocols'
# configurations at the cpu scale's 5 seeds.
CONFIGS = [
    ("resnet18w8-b64-tf32-4", "resnet18", {"width": 8}, 64, "tf32", 4),
    ("resnet18w8-b64-tf32-1", "resnet18", {"width": 8}, 64, "tf32", 1),
    ("resnet18w8-b64-fp32-4", "resnet18", {"width": 8}, 64, "fp32", 4),
    ("resnet18w8-b64-bf16-5", "resnet18", {"width": 8}, 64, "bf16", 5),
    ("resnet9w4-b128-fp32-5", "resnet9", {"width": 4}, 128, "fp32", 5),
    ("resnet9w4-b128-tf32-5", "resnet9", {"width": 4}, 128, "tf32", 5),
    ("resnet9w4-b2-fp32-5", "resnet9", {"width": 4}, 2, "fp32", 5),
]

MEASURE = """
import json, sys, torch
from pathlib import Path
sys.path.insert(0, ".")
try:  # the package in subpackages (since issue #22)
    from cnnconv.engine.datasets import load_cifar10
    from cnnconv.engine.spec import RunSpec
    from cnnconv.engine.train import train_seeds
except ImportError:  # an older revision's flat package
    from cnnconv.data import load_cifar10
    from cnnconv.spec import RunSpec
    from cnnconv.train import train_seeds
model, options, batch, precision, seeds, steps, root = json.loads(sys.argv[1])
torch.set_num_threads(int(sys.argv[2]))
dataset = load_cifar10(Path(root))
spec = RunSpec(model=model, model_options=options, dataset="cifar10", precision=precision,
               batch_size=batch, iterations=steps, test_subset=batch)
runs = train_seeds([spec.replace(seed=s) for s in range(seeds)], dataset=dataset)
busy = sum((r.wall_time - r.eval_time) / int(r.environment["stack"]) for r in runs)
print(json.dumps(seeds * steps / busy))
"""


def measure(tree: Path, config: tuple, steps: int, threads: int, data_root: str) -> float:
    _, model, options, batch, precision, seeds = config
    args = json.dumps([model, options, batch, precision, seeds, steps, data_root])
    done = subprocess.run([sys.executable, "-c", MEASURE, args, str(threads)], cwd=tree,
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="git revision of the old engine")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", default="", help="run only configurations containing this")
    parser.add_argument("--json", type=Path, help="write the measurements here")
    options = parser.parse_args()
    data_root = os.environ.get("CNNCONV_DATA")
    if not data_root:
        sys.exit("set CNNCONV_DATA to a directory holding cifar-10-batches-py/")
    if (Path(data_root) / "cifar-10-batches-py").is_dir():
        data_root = str(Path(data_root) / "cifar-10-batches-py")
    configs = [c for c in CONFIGS if options.only in c[0]]
    speeds: dict[str, dict[str, list[float]]] = {c[0]: {"before": [], "after": []} for c in configs}
    with tempfile.TemporaryDirectory() as scratch:
        old = Path(scratch) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old), options.before],
                       cwd=ROOT, check=True)
        try:
            for round_ in range(options.rounds):
                for config in configs:
                    for label, tree in (("before", old), ("after", ROOT)):
                        speed = measure(tree, config, options.steps, options.threads, data_root)
                        speeds[config[0]][label].append(speed)
                        print(f"round {round_ + 1} {config[0]} {label}: {speed:.1f}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=True)
    print(f"\n| configuration | before ({options.before}) | after | ratio |\n|---|---|---|---|")
    table = {}
    for name, runs in speeds.items():
        before, after = statistics.median(runs["before"]), statistics.median(runs["after"])
        table[name] = {"before": before, "after": after, "ratio": after / before, **runs}
        print(f"| {name} | {before:.1f} | {after:.1f} | {after / before:.2f} |")
    if options.json:
        options.json.write_text(json.dumps({
            "before": options.before, "rounds": options.rounds, "steps": options.steps,
            "threads": options.threads, "unit": "seed-iterations/s (median)",
            "results": table}, indent=1) + "\n")


if __name__ == "__main__":
    main()
