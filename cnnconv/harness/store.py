"""The run store: finished runs cached on disk, keyed by the canonical spec.

One entry is one ``<key>.npz`` file (the arrays plus a JSON header), where the key hashes
the spec and the engine version. Writes go to a temporary file in the same directory and
are renamed into place, so a run killed half-way leaves no entry rather than a corrupt
one. ``get_or_train`` holds a per-key file lock (``filelock``, which also works on network
filesystems) while it computes, so processes sharing a store -- pytest-xdist workers,
several hosts -- compute each run once; a lock held by a process that died is released
by the operating system with the process. Each computation is appended to
``computed.jsonl``, which tells who computed what and when.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock

from cnnconv.engine.result import RunResult
from cnnconv.engine.spec import ENGINE_VERSION, RunSpec
from cnnconv.engine.train import train, train_seeds
from cnnconv.harness.paths import default_store_dir

WEIGHT_PREFIX = "weight:"


@dataclass(frozen=True)
class StoreEntry:
    """A listing row: where an entry is, what it holds, and whether it is current."""

    key: str
    path: Path
    label: str
    engine: int
    wall_time: float
    diverged_at: int | None
    created: float

    @property
    def stale(self) -> bool:
        return self.engine != ENGINE_VERSION


class RunStore:
    """A directory of finished runs; safe to share between processes and hosts."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_store_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "locks").mkdir(exist_ok=True)

    def path(self, spec: RunSpec) -> Path:
        return self.root / f"{spec.key()}.npz"

    def get(self, spec: RunSpec) -> RunResult | None:
        """The stored result for ``spec``, or None. A damaged entry is set aside, not used."""
        return self.load_key(spec.key())

    def load_key(self, key: str) -> RunResult | None:
        """The stored result under ``key``, or None (see ``get``)."""
        path = self.root / f"{key}.npz"
        if not path.exists():
            return None
        try:
            return _read(path)
        except Exception as error:  # a damaged file is a cache miss, never a crash
            aside = path.with_suffix(".corrupt")
            os.replace(path, aside)
            warnings.warn(f"run store entry {path} was unreadable ({error}); moved to {aside}",
                          stacklevel=2)
            return None

    def put(self, result: RunResult) -> Path:
        """Write atomically: a temporary file in the same directory, renamed into place."""
        path = self.path(result.spec)
        header = {
            "spec": result.spec.canonical(),
            "engine": ENGINE_VERSION,
            "eval_iterations": result.eval_iterations,
            "test_accuracy": result.test_accuracy,
            "samples_seen": result.samples_seen,
            "epochs": result.epochs,
            "wall_time": result.wall_time,
            "eval_time": result.eval_time,
            "diverged_at": result.diverged_at,
            "precision_state": result.precision_state,
            "environment": result.environment,
            "created": time.time(),
        }
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as handle:
                weights = {f"{WEIGHT_PREFIX}{name}": value
                           for name, value in (result.weights or {}).items()}
                np.savez(handle, losses=result.losses, train_correct=result.train_correct,
                         header=np.array(json.dumps(header)), **weights)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def get_or_train(
        self,
        spec: RunSpec,
        compute: Callable[[RunSpec], RunResult] = train,
        fresh: bool = False,
    ) -> RunResult:
        """The cached result, or compute it under the key's lock and store it.

        With ``fresh`` the cached entry is ignored and replaced.
        """
        if not fresh:
            cached = self.get(spec)
            if cached is not None:
                return cached
        with FileLock(self.root / "locks" / f"{spec.key()}.lock"):
            cached = None if fresh else self.get(spec)  # another process may have finished it
            if cached is not None:
                return cached
            result = compute(spec)
            self.put(result)
            self._journal(spec, result)
        return result

    def get_or_train_many(
        self,
        specs: list[RunSpec],
        compute: Callable[[list[RunSpec]], list[RunResult]] = train_seeds,
        fresh: bool = False,
    ) -> list[RunResult]:
        """``get_or_train`` for runs that differ only in seed: the missing ones are
        computed together (one vectorised computation) and stored one entry per seed.

        The locks of all missing keys are taken in key order, so processes asking for
        overlapping sets never deadlock; a process killed half-way stores none of its
        stack (the entries of earlier stacks stay).
        """
        results: dict[str, RunResult] = {}
        if not fresh:
            results = {s.key(): r for s in specs if (r := self.get(s)) is not None}
        missing = {s.key(): s for s in specs if s.key() not in results}  # in the caller's order
        if missing:
            with contextlib.ExitStack() as locks:
                for key in sorted(missing):
                    locks.enter_context(FileLock(self.root / "locks" / f"{key}.lock"))
                if not fresh:  # other processes may have finished some meanwhile
                    results.update({k: r for k, s in missing.items() if (r := self.get(s)) is not None})
                todo = [s for k, s in missing.items() if k not in results]
                if todo:
                    for spec, result in zip(todo, compute(todo)):
                        self.put(result)
                        self._journal(spec, result)
                        results[spec.key()] = result
        return [results[s.key()] for s in specs]

    def _journal(self, spec: RunSpec, result: RunResult) -> None:
        line = json.dumps({"key": spec.key(), "label": spec.label(), "pid": os.getpid(),
                           "host": os.uname().nodename, "wall_time": result.wall_time,
                           "stack": int(result.environment.get("stack", 1)),
                           "time": time.time()})
        with FileLock(self.root / "locks" / "journal.lock"):
            with open(self.root / "computed.jsonl", "a") as handle:
                handle.write(line + "\n")

    def computed(self) -> list[dict]:
        """Every computation recorded in the journal, oldest first."""
        journal = self.root / "computed.jsonl"
        if not journal.exists():
            return []
        return [json.loads(line) for line in journal.read_text().splitlines() if line]

    def entries(self) -> list[StoreEntry]:
        """All readable entries, oldest first."""
        rows = []
        for path in sorted(self.root.glob("*.npz")):
            try:
                header = _read_header(path)
            except Exception:
                continue
            rows.append(StoreEntry(
                path.stem, path, RunSpec.from_canonical(header["spec"]).label()
                if header["engine"] == ENGINE_VERSION else str(header["spec"]),
                header["engine"], header["wall_time"], header["diverged_at"], header["created"],
            ))
        return sorted(rows, key=lambda e: e.created)

    def prune(self, stale: bool = True, older_than_days: float | None = None,
              dry_run: bool = False) -> list[Path]:
        """Remove entries of other engine versions and/or older than a number of days,
        temporary files left by killed writers, and set-aside corrupt entries."""
        now = time.time()
        doomed = [e.path for e in self.entries()
                  if (stale and e.stale)
                  or (older_than_days is not None and now - e.created > older_than_days * 86400)]
        doomed += list(self.root.glob(".tmp-*")) + list(self.root.glob("*.corrupt"))
        if not dry_run:
            for path in doomed:
                path.unlink(missing_ok=True)
        return doomed


def _read_header(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as archive:
        return json.loads(str(archive["header"]))


def _read(path: Path) -> RunResult:
    with np.load(path, allow_pickle=False) as archive:
        header = json.loads(str(archive["header"]))
        losses = archive["losses"]
        train_correct = archive["train_correct"]
        weights = {name.removeprefix(WEIGHT_PREFIX): archive[name] for name in archive.files
                   if name.startswith(WEIGHT_PREFIX)}
    return RunResult(
        spec=RunSpec.from_canonical(header["spec"]),
        losses=losses,
        train_correct=train_correct,
        eval_iterations=header["eval_iterations"],
        test_accuracy=header["test_accuracy"],
        samples_seen=header["samples_seen"],
        epochs=header["epochs"],
        wall_time=header["wall_time"],
        eval_time=header["eval_time"],
        diverged_at=header["diverged_at"],
        precision_state=header["precision_state"],
        environment=header["environment"],
        weights=weights or None,
    )
