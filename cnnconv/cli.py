"""The ``cnnconv`` command: train a run, list models and data, manage the store, run claims."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from cnnconv.engine import datasets
from cnnconv.engine.loader import AUGMENTATIONS
from cnnconv.engine.models import MODELS, build_model, count_parameters
from cnnconv.engine.optimizer import OPTIMIZERS
from cnnconv.engine.precision import MODES
from cnnconv.engine.result import RunResult
from cnnconv.engine.spec import SCHEDULES, RunSpec
from cnnconv.engine.train import train_seeds
from cnnconv.harness.paths import default_store_dir
from cnnconv.harness.progress import ProgressLine, StreamDisplay
from cnnconv.harness.scales import SCALES
from cnnconv.harness.store import RunStore
from cnnconv.tools import doctor


def _model_option(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"model option {text!r} is not NAME=VALUE (e.g. width=16)")
    name, value = text.split("=", 1)
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnconv", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("train", help="train a run, or several seeds of it (cached in the run store)")
    run.add_argument("--model", default="resnet18", choices=sorted(MODELS))
    run.add_argument("--model-option", "-O", action="append", type=_model_option, default=[],
                     metavar="NAME=VALUE", help="e.g. -O width=16 -O cbam=layer1")
    run.add_argument("--dataset", default="cifar10", choices=datasets.DATASETS)
    run.add_argument("--precision", default="tf32", choices=list(MODES))
    run.add_argument("--batch-size", type=int, default=64)
    length = run.add_mutually_exclusive_group()
    length.add_argument("--iters", type=int, dest="iterations")
    length.add_argument("--epochs", type=float)
    run.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS)
    run.add_argument("--lr", type=float, default=0.01)
    run.add_argument("--momentum", type=float, default=0.9)
    run.add_argument("--weight-decay", type=float, default=0.0)
    run.add_argument("--schedule", default="constant", choices=SCHEDULES)
    run.add_argument("--warmup", type=float, default=0.0, help="fraction of the run")
    run.add_argument("--label-smoothing", type=float, default=0.0)
    run.add_argument("--mixup-alpha", type=float, default=0.0)
    run.add_argument("--augment", default="crop_flip", choices=list(AUGMENTATIONS))
    run.add_argument("--train-subset", type=int)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--seeds", type=int, default=1,
                     help="train seeds SEED..SEED+N-1 as one vectorised computation")
    run.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    run.add_argument("--data-dir")
    run.add_argument("--store", type=Path, help=f"run store (default {default_store_dir()})")
    run.add_argument("--fresh", action="store_true", help="ignore a cached result")
    run.add_argument("--json", type=Path, dest="json_out", help="write the result here")

    doctor = commands.add_parser(
        "doctor", help="check that this machine computes what cnnconv says (run once per GPU runner)")
    doctor.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda where present, else cpu)")
    commands.add_parser("models", help="list models with parameter counts")

    data = commands.add_parser("data", help="show the data sets found, or fetch one")
    data.add_argument("action", nargs="?", choices=["show", "fetch"], default="show")
    data.add_argument("name", nargs="?", choices=["cifar10", "fashion-mnist"], default="cifar10")
    data.add_argument("--data-dir")

    store = commands.add_parser("store", help="list or prune the run store")
    store.add_argument("action", choices=["list", "prune"])
    store.add_argument("--store", type=Path)
    store.add_argument("--older-than-days", type=float)
    store.add_argument("--dry-run", action="store_true")

    claims = commands.add_parser(
        "claims", help="run the claims with pytest and write the report",
        description="Runs `pytest claims` with the given scale, writing report/ and "
                    "verdicts.json; extra arguments go to pytest.",
    )
    claims.add_argument("--scale", default="cpu", choices=list(SCALES))
    claims.add_argument("--report", type=Path, default=Path("report"))
    claims.add_argument("--claims", type=Path, default=Path("claims"),
                        help="the folder of claim tests (default: claims/ here)")
    return parser


def summarise(result: RunResult) -> str:
    """Human summary of a run, as printed by ``cnnconv train``."""
    n = len(result.losses)
    tail = result.losses[max(0, n - max(1, n // 10)):]
    lines = [
        f"run       {result.spec.label()}",
        f"key       {result.spec.key()}",
        f"length    {n} iterations, {result.epochs:.2f} epochs, {result.samples_seen} samples",
        f"loss      first {result.losses[0]:.4f}, mean of last 10% {float(tail.mean()):.4f}",
        "test acc  " + ", ".join(f"{a:.4f}@{i}" for i, a in
                                  zip(result.eval_iterations, result.test_accuracy)),
        f"time      {result.wall_time:.1f} s ({n / max(result.wall_time, 1e-9):.1f} it/s) "
        f"on {result.environment['device']}, {result.environment.get('stack', '1')} seed(s) stacked",
        f"precision {result.precision_state}",
    ]
    if result.diverged_at is not None:
        lines.insert(3, f"DIVERGED  non-finite loss at iteration {result.diverged_at}")
    return "\n".join(lines)


def _train(args: argparse.Namespace) -> int:
    options = dict(args.model_option)
    if args.iterations is None and args.epochs is None:
        args.iterations = 1000
    if args.seeds < 1:
        raise SystemExit(f"cnnconv train: --seeds must be at least 1, got {args.seeds}")
    spec = RunSpec(
        model=args.model, model_options=options, dataset=args.dataset,
        train_subset=args.train_subset, precision=args.precision, batch_size=args.batch_size,
        iterations=args.iterations, epochs=args.epochs, optimizer=args.optimizer, lr=args.lr,
        momentum=args.momentum, weight_decay=args.weight_decay, schedule=args.schedule,
        warmup=args.warmup, label_smoothing=args.label_smoothing,
        mixup_alpha=args.mixup_alpha, augment=args.augment, seed=args.seed, device=args.device,
    )
    specs = [spec.replace(seed=seed) for seed in range(args.seed, args.seed + args.seeds)]
    store = RunStore(args.store)
    cached = [] if args.fresh else [s for s in specs if store.get(s) is not None]

    def compute(todo: list[RunSpec]) -> list[RunResult]:
        progress = ProgressLine(todo[0].label().rsplit(" seed", 1)[0], len(todo), StreamDisplay())
        results = train_seeds(todo, data_dir=args.data_dir, progress=progress)
        progress.close()
        return results

    results = store.get_or_train_many(specs, compute, args.fresh)
    for spec in cached:
        print(f"cached in {store.path(spec)}", file=sys.stderr)
    print("\n\n".join(summarise(result) for result in results))
    if args.json_out:
        args.json_out.write_text(json.dumps([{
            "spec": r.spec.canonical(), "key": r.spec.key(), "losses": r.losses.tolist(),
            "eval_iterations": r.eval_iterations, "test_accuracy": r.test_accuracy,
            "samples_seen": r.samples_seen, "wall_time": r.wall_time,
            "diverged_at": r.diverged_at, "precision_state": r.precision_state,
            "environment": r.environment,
        } for r in results], indent=1))
    return 0


def _models() -> int:
    print(f"{'name':<10} {'parameters':>12}  description")
    for name, info in MODELS.items():
        print(f"{name:<10} {count_parameters(build_model(name)):>12,}  {info.description}")
    for cbam in ("layer1", "all"):
        count = count_parameters(build_model("resnet18", cbam=cbam))
        print(f"{'':<10} {count:>12,}  resnet18 with -O cbam={cbam}")
    return 0


def _data(args: argparse.Namespace) -> int:
    if args.action == "fetch":
        fetch = datasets.fetch_cifar10 if args.name == "cifar10" else datasets.fetch_fashion_mnist
        print(f"fetched {fetch()}")
        return 0
    print("searched, in order: " + ", ".join(
        f"{how}={path}" for how, path in datasets.candidate_dirs(args.data_dir)))
    for name, finder in (("cifar10", datasets.find_cifar10),
                         ("fashion-mnist", datasets.find_fashion_mnist)):
        try:
            print(f"{name:<14} {finder(args.data_dir)}")
        except datasets.DataError as error:
            print(f"{name:<14} not found: {error}")
    print(f"{'synthetic':<14} built in (unit tests only)")
    return 0


def _store(args: argparse.Namespace) -> int:
    store = RunStore(args.store)
    if args.action == "list":
        entries = store.entries()
        for entry in entries:
            flag = " stale" if entry.stale else ""
            flag += f" diverged@{entry.diverged_at}" if entry.diverged_at is not None else ""
            print(f"{entry.key}  {entry.wall_time:7.1f}s  {entry.label}{flag}")
        print(f"{len(entries)} entries in {store.root}")
        return 0
    removed = store.prune(older_than_days=args.older_than_days, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {len(removed)} files from {store.root}")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    """Print the self-check's table row by row; exit 1 if a check failed."""
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.device(device).type == "cpu":
        print("cnnconv doctor: no CUDA GPU here (torch.cuda.is_available() is False): running "
              "the CPU half (TF32 emulated, dtypes per mode)")
    print(doctor.format_row(doctor.Check("check", "measured", "expected")))
    checks = doctor.run_checks(device, report=lambda check: print(doctor.format_row(check), flush=True))
    failed = [c.name for c in checks if c.passed is False]
    print(f"{len(checks) - len(failed)} of {len(checks)} rows ok" + (
        f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _claims(args: argparse.Namespace, pytest_args_extra: list[str]) -> int:
    if not args.claims.is_dir():
        print(f"cnnconv claims: no folder of claim tests at {args.claims}; run it from a "
              "checkout of cnnconv, or name the folder with --claims DIR", file=sys.stderr)
        return 2
    args.report.mkdir(parents=True, exist_ok=True)
    pytest_args = [str(args.claims), f"--cnnconv-scale={args.scale}",
                   f"--cnnconv-report={args.report / 'README.md'}",
                   f"--cnnconv-json={args.report / 'verdicts.json'}", *pytest_args_extra]
    code = pytest.main(pytest_args)
    print(f"report: {args.report / 'README.md'}")
    return int(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "claims":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "models":
            return _models()
        if args.command == "doctor":
            return _doctor(args)
        if args.command == "data":
            return _data(args)
        if args.command == "store":
            return _store(args)
        return _claims(args, extra)
    except (ValueError, datasets.DataError, RuntimeError) as error:
        print(f"cnnconv: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
