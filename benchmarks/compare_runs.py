"""Did a change move any result? Two CI runs' verdicts and run stores, compared (a script).

For a change meant to move nothing (a refactor), run ``.ci/run`` from a clean clone of the
revision before and of the one after, on the same machine, and compare the two checkouts:

- every claim record of ``report/verdicts.json``: its decision (verdict, p-values, effect,
  interval, n, text) and its arms (run keys, windows, per-seed metrics) -- all but the
  wall-clock fields, which no two runs share;
- the run stores ``.cnnconv/runs``: the same keys, and per key the same curves bit for
  bit (losses, correct counts, test accuracies and where they were measured).

Claims about wall-clock time (P1-BS-3) decide on timings, so their decisions may differ;
they are listed, not counted as a moved result.

    python benchmarks/compare_runs.py BEFORE_CHECKOUT AFTER_CHECKOUT
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

TIMED = {"P1-BS-3", "P2-TIME", "P3-FP16", "GEMM-DTYPE"}  # claims decided on wall clocks


def records(checkout: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    data = json.loads((checkout / "report" / "verdicts.json").read_text())
    return {(r["id"], r["scale"], r.get("dataset", "")): r for r in data["claims"]}


def without_clocks(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "arms": [{k: v for k, v in arm.items() if k != "wall_time"}
                               for arm in record["arms"]]}


def run(path: Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as archive:
        header = json.loads(str(archive["header"]))
        return {"losses": archive["losses"], "train_correct": archive["train_correct"],
                "test_accuracy": header["test_accuracy"], "eval_iterations": header["eval_iterations"],
                "diverged_at": header["diverged_at"], "spec": header["spec"]}


def same_run(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(np.array_equal(a[k], b[k], equal_nan=True) for k in ("losses", "train_correct")) \
        and all(a[k] == b[k] for k in ("test_accuracy", "eval_iterations", "diverged_at", "spec"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    moved = 0
    old, new = records(args.before), records(args.after)
    print(f"claim records: {len(old)} before, {len(new)} after, {len(old.keys() & new.keys())} in both")
    for key in sorted(old.keys() | new.keys()):
        if key not in old or key not in new:
            print(f"  only {'after' if key in new else 'before'}: {key}")
            moved += 1
            continue
        if without_clocks(old[key]) != without_clocks(new[key]):
            timed = key[0] in TIMED and without_clocks(old[key])["arms"] == without_clocks(new[key])["arms"]
            print(f"  {'timed, differs' if timed else 'MOVED'}: {key}: "
                  f"{old[key]['decision']['text']}  ->  {new[key]['decision']['text']}")
            moved += not timed
    stores = [sorted((c / ".cnnconv" / "runs").glob("*.npz")) for c in (args.before, args.after)]
    keys = [{p.stem: p for p in store} for store in stores]
    common = keys[0].keys() & keys[1].keys()
    print(f"run store: {len(keys[0])} runs before, {len(keys[1])} after, {len(common)} keys in both")
    for side, only in (("before", keys[0].keys() - common), ("after", keys[1].keys() - common)):
        for key in sorted(only):
            print(f"  only {side}: {key}")
            moved += 1
    different = [key for key in sorted(common) if not same_run(run(keys[0][key]), run(keys[1][key]))]
    print(f"  {len(common) - len(different)} of {len(common)} runs bit for bit the same")
    for key in different:
        print(f"  MOVED run {key}")
    moved += len(different)
    print("nothing moved" if not moved else f"{moved} results moved")
    return 1 if moved else 0


if __name__ == "__main__":
    sys.exit(main())
