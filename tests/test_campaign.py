"""``./dev gpu`` (cnnconv.campaign) on a CPU: its steps, their order and commands, what it
says without a GPU, and how a step cut off at its time limit stops the campaign with the
command that continues it."""

import subprocess
from pathlib import Path

import pytest

from cnnconv import campaign


def test_every_claim_file_belongs_to_exactly_one_step():
    files = sorted(p.relative_to(campaign.ROOT).as_posix()
                   for p in (campaign.ROOT / "claims").glob("test_*.py"))
    assert sorted(f for group in campaign.CLAIM_FILES.values() for f in group) == files
    assert campaign.STEPS[:3] == ["doctor", "bench", "P0"]


def test_claim_steps_run_at_paper_scale_and_report_per_source(tmp_path):
    (command,) = campaign.commands("P2", tmp_path)
    assert "claims/test_p2_resnet9.py" in command and "--cnnconv-scale=paper" in command
    assert f"--cnnconv-json={tmp_path / 'paper-P2' / 'verdicts.json'}" in command
    (bench,) = campaign.commands("bench", tmp_path)
    assert any(a.startswith("--benchmark-json=") and a.endswith(".json") for a in bench)


def test_without_a_gpu_it_says_what_to_run_instead(capsys, monkeypatch):
    monkeypatch.setattr(campaign.torch.cuda, "is_available", lambda: False)
    assert campaign.main([]) == 2
    assert "no CUDA GPU here" in capsys.readouterr().err


def test_a_step_cut_off_at_its_limit_stops_with_the_command_that_continues(tmp_path, capsys,
                                                                         monkeypatch):
    monkeypatch.setattr(campaign.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(campaign, "gpu_slug", lambda: "test-gpu")
    ran = []

    def fake_run(command, cwd, timeout):
        ran.append(command)
        if "claims/test_p3_tricks.py" in command:
            raise subprocess.TimeoutExpired(command, timeout)
        return subprocess.CompletedProcess(command, 0)
    monkeypatch.setattr(campaign.subprocess, "run", fake_run)
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
    assert all(isinstance(c, list) and c for c in campaign.commands(step, Path(tmp_path)))
