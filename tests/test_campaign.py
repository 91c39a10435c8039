"""``./dev gpu`` (cnnconv.tools.campaign) on a CPU: its steps, their order and commands, what it
says without a GPU, and how a step cut off at its time limit stops the campaign with the
command that continues it."""

import json
import signal
import sys
import time
from pathlib import Path

import pytest

from cnnconv.tools import campaign

ROOT = Path(__file__).resolve().parent.parent


def test_every_source_of_the_claims_is_a_step(claim_sources):
    """The steps select claims by the source their markers name: none is left out."""
    assert set(claim_sources) == set(campaign.SOURCES)
    assert campaign.STEPS[:3] == ["doctor", "bench", "P0"]


def test_claim_steps_run_at_paper_scale_and_report_per_source(tmp_path):
    places = campaign.Places(report=tmp_path)
    (command,) = campaign.commands("P2", places)
    assert "claims" in command and "--cnnconv-source=P2" in command
    assert "--cnnconv-max-seeds=8" in command  # the first look: what a step is priced for
    assert "--cnnconv-scale=paper" in command
    assert f"--cnnconv-json={tmp_path / 'paper-P2' / 'verdicts.json'}" in command
    # no computation may outlast a step: P3's longest runs train one seed at a time
    assert "--cnnconv-stack=1" in campaign.commands("P3", places)[0]
    assert not any(a.startswith("--cnnconv-stack") for a in campaign.commands("P0", places)[0])
    bench = campaign.commands("bench", places)
    assert len(bench) == len(campaign.BENCH_PARTS)
    # each part writes beside its final name until its process has ended by itself
    assert [next(a for a in command if a.startswith("--benchmark-json=")) for command in bench] \
        == [f"--benchmark-json={campaign.bench_part(places.benchmarks, p).with_suffix('.tmp')}"
            for p in campaign.BENCH_PARTS]


def test_the_folders_are_options_and_a_missing_tests_folder_drops_only_its_command(tmp_path):
    places = campaign.Places(claims=tmp_path / "c", benchmarks=tmp_path / "b",
                             tests=tmp_path / "no-tests", report=tmp_path / "r")
    assert campaign.commands("doctor", places) == [[sys.executable, "-m", "cnnconv.cli", "doctor"]]
    assert str(tmp_path / "c") in campaign.commands("P0", places)[0]
    assert all(str(tmp_path / "b") in command for command in campaign.commands("bench", places))


def _collected(*args: str) -> list[str]:
    """Node IDs of the gpu-marked benchmarks that ``args`` select (collected, not run)."""
    ids: list[str] = []

    class Collector:
        def pytest_collection_finish(self, session):
            ids.extend(item.nodeid for item in session.items)
    pytest.main(["benchmarks", "-m", "gpu", "--collect-only", "-q", "-p", "no:cacheprovider",
                 f"--rootdir={ROOT}", *args], plugins=[Collector()])
    return ids


def test_the_bench_parts_select_every_gpu_benchmark_of_the_bench_once(monkeypatch):
    monkeypatch.chdir(ROOT)
    parts = [_collected("-k", selection) for selection in campaign.BENCH_PARTS.values()]
    assert all(parts)
    every = [node for part in parts for node in part]
    assert sorted(every) == sorted(_collected("-k", "gemm or throughput"))
    assert len(set(every)) == len(every)


def test_a_bench_cut_off_resumes_with_the_parts_it_had_not_finished(tmp_path, monkeypatch):
    monkeypatch.setattr(campaign, "bench_results", lambda benchmarks: tmp_path / "test-gpu-today.json")
    monkeypatch.setattr(campaign, "gpu_slug", lambda: "test-gpu")
    ran = []

    def fake_run(command, seconds):
        part = next(a.split("=", 1)[1] for a in command if a.startswith("--benchmark-json="))
        ran.append(Path(part).stem)
        assert Path(part).parent.is_dir()  # pytest-benchmark does not make it
        if len(ran) == 3:  # cut off by the step's limit, it still writes what it finished
            Path(part).write_text(json.dumps({"benchmarks": [{"name": "half of it"}]}))
            return None
        Path(part).write_text(json.dumps({"machine_info": {"node": "gpu"},
                                          "benchmarks": [{"name": Path(part).stem}]}))
        return 0
    monkeypatch.setattr(campaign, "run", fake_run)
    parts = list(campaign.BENCH_PARTS)
    places = campaign.Places(report=tmp_path)
    assert campaign.run_step("bench", places, 60)[0] == "stopped at the limit"
    assert ran == parts[:3] and not (tmp_path / "test-gpu-today.json").exists()
    ran.clear()
    assert campaign.run_step("bench", places, 60)[0] == "done"
    assert ran == parts[2:]  # the finished parts are not run again
    merged = json.loads((tmp_path / "test-gpu-today.json").read_text())
    assert merged["machine_info"] == {"node": "gpu"}
    assert [b["name"] for b in merged["benchmarks"]] == parts
    assert not (tmp_path / "test-gpu.parts").exists()


def test_a_bench_part_that_wrote_nothing_is_an_error_naming_the_rerun(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.setattr(campaign, "bench_results", lambda benchmarks: tmp_path / "test-gpu-today.json")
    monkeypatch.setattr(campaign, "gpu_slug", lambda: "test-gpu")
    monkeypatch.setattr(campaign, "run", lambda command, seconds: 1)
    assert campaign.run_step("bench", campaign.Places(report=tmp_path), 60)[0] == "error (no bench JSON)"
    assert "wrote no JSON" in capsys.readouterr().err


def test_without_a_claims_folder_it_names_the_option(capsys, tmp_path):
    assert campaign.main(["--claims", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert f"no folder of claims at {tmp_path / 'none'}" in err and "name the folder with --claims" in err


def test_without_a_gpu_it_says_what_to_run_instead(capsys, monkeypatch):
    monkeypatch.setattr(campaign.torch.cuda, "is_available", lambda: False)
    assert campaign.main([]) == 2
    assert "no CUDA GPU here" in capsys.readouterr().err


def test_a_step_cut_off_at_its_limit_stops_with_the_command_that_continues(tmp_path, capsys,
                                                                         monkeypatch):
    monkeypatch.setattr(campaign.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(campaign, "gpu_slug", lambda: "test-gpu")
    ran = []

    def fake_run(command, seconds):
        ran.append(command)
        if "--cnnconv-source=P3" in command:
            return None
        return 0
    monkeypatch.setattr(campaign, "run", fake_run)
    out = tmp_path / "paper-P0"
    out.mkdir()
    (out / "verdicts.json").write_text('{"claims": [{"id": "P0-PREC-1", "dataset": "cifar10", '
                                       '"decision": {"verdict": "supported", "effect": 0.01, "n": 8}}]}')
    assert campaign.main(["--from", "P4", "--report", str(tmp_path), "--step-seconds", "5"]) == 1
    text = capsys.readouterr().out
    assert "P3      stopped at the limit" in text
    assert "continue with: ./dev gpu --from P3" in text
    assert "P0-PREC-1" in text and "supported" in text
    assert len(ran) == 2  # P4, then P3; nothing after the cut


@pytest.mark.parametrize("step", campaign.STEPS)
def test_every_step_has_commands(step, tmp_path):
    commands = campaign.commands(step, campaign.Places(report=tmp_path))
    assert commands and all(isinstance(c, list) and c for c in commands)


def _writes_when_interrupted(path: Path) -> str:
    """A Python program that sleeps and, on KeyboardInterrupt, writes ``path``."""
    return ("import time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n"
            f"    open({str(path)!r}, 'w').write('finished')\n")


def test_a_command_at_its_limit_gets_sigint_first_to_write_what_it_finished(tmp_path, monkeypatch):
    """pytest answers SIGINT by finishing the session (verdicts and report of the claims
    that finished); a command that ignores it is killed at the limit."""
    monkeypatch.setattr(campaign, "GRACE", 0.5)
    wrote = tmp_path / "wrote"
    polite = _writes_when_interrupted(wrote)
    assert campaign.run([sys.executable, "-c", polite], seconds=3.0) is None
    assert wrote.read_text() == "finished"
    deaf = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)\n"
    started = time.perf_counter()
    assert campaign.run([sys.executable, "-c", deaf], seconds=1.5) is None
    assert time.perf_counter() - started < 10
    assert campaign.run([sys.executable, "-c", "raise SystemExit(1)"], seconds=30.0) == 1


def test_a_command_gets_sigint_where_the_campaign_itself_ignores_it(tmp_path, monkeypatch):
    """Started as a shell script's background job, ``./dev gpu`` ignores SIGINT, and so
    would every step it starts: none would write what it finished before being killed."""
    monkeypatch.setattr(campaign, "GRACE", 0.5)
    wrote = tmp_path / "wrote"
    polite = _writes_when_interrupted(wrote)
    ignoring = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        assert campaign.run([sys.executable, "-c", polite], seconds=3.0) is None
    finally:
        signal.signal(signal.SIGINT, ignoring)
    assert wrote.read_text() == "finished"


def test_a_failing_command_does_not_stop_the_rest_of_its_step(tmp_path, monkeypatch):
    ran = []

    def fake_run(command, seconds):
        ran.append(command)
        return 2 if len(ran) == 1 else 0  # the doctor crashes; its tests still run
    monkeypatch.setattr(campaign, "run", fake_run)
    assert campaign.run_step("doctor", campaign.Places(report=tmp_path), 60)[0] == "error (exit 2)"
    assert len(ran) == 2


def test_a_session_stopped_by_sigint_still_writes_the_verdicts_that_finished(pytester, tmp_path):
    """What the SIGINT before a step's limit relies on: pytest ends the session, and the
    plugin writes the verdicts of the claims that finished."""
    pytester.makepyfile(test_x="""
import os, signal
import pytest
from cnnconv import stats

@pytest.mark.claim("X-DONE")
def test_done():
    return stats.exact(1, True)

@pytest.mark.claim("X-CUT")
def test_cut():
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as campaign.run starts pytest
    os.kill(os.getpid(), signal.SIGINT)  # the campaign's signal, mid-claim
    return stats.exact(1, True)
""")
    out = tmp_path / "verdicts.json"
    result = pytester.runpytest_subprocess(f"--cnnconv-json={out}", "-p", "no:randomly")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert [v["id"] for v in json.loads(out.read_text())["claims"]] == ["X-DONE"]
