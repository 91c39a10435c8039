"""Fixed seeds against sequential looks: how verdicts differ between claims sessions (a script).

Each argument is ``NAME=PATH[,PATH...]``: a session's ``--cnnconv-json`` files of verdicts
(several when it ran in parts); the table lists
every claim test with, per session, its verdict, p, the level it was decided at and its
seeds ("12/16": decided at 12 of a cap of 16). Then, for each pair of sessions named with
``--pair A,B``, the claims whose verdict class changed: supported <-> refuted (the data
contradicting themselves) and decided <-> inconclusive (more seeds, or another draw of
rounding, settling or unsettling a claim), and the inconclusive count of each session::

    python benchmarks/sequential_verdicts.py fixed5=f.json sequential=s.json \\
        --pair fixed5,sequential

Claims decided on wall clocks (``compare_runs.TIMED``) are listed, not counted.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from compare_runs import TIMED

Key = tuple[str, str, str]


def load(paths: str) -> dict[Key, dict[str, Any]]:
    """The claims of comma-separated verdict files, by claim, scale and data set."""
    claims = [r for path in paths.split(",") for r in json.loads(Path(path).read_text())["claims"]]
    return {(r["id"], r["scale"], r.get("dataset", "")): r for r in claims}


def cell(record: dict[str, Any] | None) -> str:
    if record is None:
        return "-"
    d, look = record["decision"], record.get("sequential") or {}
    seeds = f"{look['n']}/{look['cap']}" if len(look.get("looks", ())) > 1 else str(d["n"])
    return f"{d['verdict'][:5]} p={d['p_value']:.3g} @{d['alpha']:.3g} n={seeds}"


def changes(a: dict[Key, dict], b: dict[Key, dict]) -> tuple[list[Key], list[Key]]:
    """Claims whose verdict swapped supported <-> refuted, and those decided in one session
    and inconclusive in the other."""
    swapped, unsettled = [], []
    for key in sorted(a.keys() & b.keys()):
        if key[0] in TIMED:
            continue
        pair = {a[key]["decision"]["verdict"], b[key]["decision"]["verdict"]}
        if pair == {"supported", "refuted"}:
            swapped.append(key)
        elif "inconclusive" in pair and len(pair) == 2:
            unsettled.append(key)
    return swapped, unsettled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sessions", nargs="+", metavar="NAME=PATH[,PATH...]")
    parser.add_argument("--pair", action="append", default=[], metavar="A,B")
    args = parser.parse_args()
    sessions = {name: load(paths) for name, paths in (s.split("=", 1) for s in args.sessions)}
    keys = sorted(set().union(*sessions.values()))
    print(f"{'claim':<16} {'scale':<5} {'data':<13} " + " ".join(f"{n:<40}" for n in sessions))
    for key in keys:
        timed = " (timed)" if key[0] in TIMED else ""
        print(f"{key[0]:<16} {key[1] or '-':<5} {key[2] or '-':<13} "
              + " ".join(f"{cell(s.get(key)):<40}" for s in sessions.values()) + timed)
    for name, records in sessions.items():
        counted = [r for k, r in records.items() if k[0] not in TIMED]
        undecided = sum(r["decision"]["verdict"] == "inconclusive" for r in counted)
        print(f"{name}: {undecided} inconclusive of {len(counted)} claims "
              f"({len(records) - len(counted)} timed, not counted)")
    for pair in args.pair:
        first, second = pair.split(",")
        swapped, unsettled = changes(sessions[first], sessions[second])
        print(f"{first} -> {second}: supported<->refuted {len(swapped)} "
              f"{[k[0] for k in swapped]}, decided<->inconclusive {len(unsettled)} "
              f"{[k[0] for k in unsettled]}")


if __name__ == "__main__":
    main()
