import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from cnnconv.engine.spec import RunSpec
from cnnconv.engine.train import train, train_seeds
from cnnconv.harness.store import RunStore

SPEC = RunSpec(model="lenet5", dataset="synthetic", precision="fp32", batch_size=32,
               iterations=12, lr=0.01)


def _python(code: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], **kwargs)


def test_round_trip_and_second_ask_is_a_hit(tmp_path):
    store = RunStore(tmp_path)
    first = store.get_or_train(SPEC)
    calls = []
    second = store.get_or_train(SPEC, compute=lambda s: calls.append(s) or train(s))
    assert not calls
    assert np.array_equal(first.losses, second.losses)
    assert second.spec == SPEC and second.precision_state == first.precision_state
    assert len(store.computed()) == 1 and len(store.entries()) == 1


def test_seeds_are_computed_together_and_stored_one_entry_each(tmp_path):
    store = RunStore(tmp_path)
    stacked = SPEC.replace(model="resnet9", model_options={"width": 4})
    store.get_or_train(stacked.replace(seed=1))  # one seed is cached already
    batches = []

    def compute(specs):
        batches.append([s.seed for s in specs])
        return train_seeds(specs)

    runs = store.get_or_train_many([stacked.replace(seed=s) for s in range(4)], compute)
    assert batches == [[0, 2, 3]]  # only the missing seeds, as one computation
    assert [r.spec.seed for r in runs] == [0, 1, 2, 3]
    assert [r["stack"] for r in store.computed()] == [1, 3, 3, 3]
    again = store.get_or_train_many([stacked.replace(seed=s) for s in range(4)], compute)
    assert len(batches) == 1 and np.array_equal(again[2].losses, runs[2].losses)


def test_kept_weights_round_trip(tmp_path):
    store = RunStore(tmp_path)
    result = store.get_or_train(SPEC.replace(keep_weights=True))
    loaded = store.get(SPEC.replace(keep_weights=True))
    assert set(loaded.weights) == set(result.weights) and "features.0.weight" in loaded.weights
    for name, value in result.weights.items():
        assert np.array_equal(loaded.weights[name], value)
    assert store.get_or_train(SPEC).weights is None


def test_another_process_hits_the_cache(tmp_path):
    RunStore(tmp_path).get_or_train(SPEC)
    child = _python(f"""
        from cnnconv.harness.store import RunStore
        from cnnconv.engine.spec import RunSpec
        spec = RunSpec.from_canonical({SPEC.canonical()!r})
        result = RunStore({str(tmp_path)!r}).get(spec)
        print(result is not None and len(result.losses))
    """, stdout=subprocess.PIPE, text=True)
    assert child.communicate(timeout=120)[0].strip() == "12"


def test_a_run_killed_half_way_leaves_no_entry_and_no_stuck_lock(tmp_path):
    child = _python(f"""
        import time
        from cnnconv.harness.store import RunStore
        from cnnconv.engine.spec import RunSpec
        spec = RunSpec.from_canonical({SPEC.canonical()!r})
        def slow(spec):
            print("computing", flush=True)
            time.sleep(60)
        RunStore({str(tmp_path)!r}).get_or_train(spec, compute=slow)
    """, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "computing"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    store = RunStore(tmp_path)
    assert store.get(SPEC) is None and not list(tmp_path.glob("*.npz"))
    started = time.monotonic()
    assert store.get_or_train(SPEC).losses.shape == (12,)  # the dead holder's lock is free
    assert time.monotonic() - started < 60


def test_a_writer_killed_before_the_rename_leaves_only_a_temporary_file(tmp_path):
    child = _python(f"""
        import os
        from cnnconv.harness import store as store_mod
        from cnnconv.engine.spec import RunSpec
        spec = RunSpec.from_canonical({SPEC.canonical()!r})
        store_mod.os.replace = lambda *a: os._exit(9)  # die between write and rename
        store_mod.RunStore({str(tmp_path)!r}).get_or_train(spec)
    """)
    assert child.wait(timeout=120) == 9
    assert list(tmp_path.glob(".tmp-*.npz")) and not list(tmp_path.glob("[!.]*.npz"))
    store = RunStore(tmp_path)
    assert store.get(SPEC) is None
    assert len(store.prune()) == 1 and not list(tmp_path.glob(".tmp-*"))


def test_a_corrupt_entry_is_set_aside_and_recomputed(tmp_path):
    store = RunStore(tmp_path)
    store.get_or_train(SPEC)
    store.path(SPEC).write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="unreadable"):
        assert store.get(SPEC) is None
    assert store.path(SPEC).with_suffix(".corrupt").exists()
    assert store.get_or_train(SPEC).losses.shape == (12,)


def test_processes_asking_for_the_same_run_compute_it_once(tmp_path):
    code = f"""
        from cnnconv.harness.store import RunStore
        from cnnconv.engine.spec import RunSpec
        spec = RunSpec.from_canonical({SPEC.canonical()!r})
        print(RunStore({str(tmp_path)!r}).get_or_train(spec).losses.sum())
    """
    children = [_python(code, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = {c.communicate(timeout=180)[0].strip() for c in children}
    assert len(outputs) == 1
    assert len(RunStore(tmp_path).computed()) == 1


def test_prune_removes_stale_engine_versions(tmp_path):
    store = RunStore(tmp_path)
    store.get_or_train(SPEC)
    path = store.path(SPEC)
    with np.load(path) as archive:
        arrays = dict(archive)
    header = json.loads(str(arrays["header"]))
    header["engine"] = -1
    arrays["header"] = np.array(json.dumps(header))
    np.savez(path, **arrays)
    assert store.entries()[0].stale
    assert store.prune(dry_run=True) == [path] and path.exists()
    assert store.prune() == [path] and not path.exists()
    assert os.listdir(tmp_path / "locks") is not None
