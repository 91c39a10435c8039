import json

import pytest

from cnnconv.cli import main


def test_models_lists_parameter_counts(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "11,181,642" in out and "62,006" in out and "cbam=all" in out


def test_train_prints_a_summary_uses_the_store_and_writes_json(tmp_path, capsys):
    args = ["train", "--model", "resnet9", "-O", "width=4", "--dataset", "synthetic",
            "--precision", "fp32", "--batch-size", "32", "--iters", "20", "--seeds", "2",
            "--store", str(tmp_path / "s"), "--json", str(tmp_path / "run.json")]
    assert main(args) == 0
    first = capsys.readouterr()
    assert "resnet9(width=4) synthetic fp32 bs32 lr0.01 20 it: trained 2 seed(s) x 20 it in" in first.err
    assert "20 iterations" in first.out
    assert "2 seed(s) stacked" in first.out
    assert main(args) == 0
    assert capsys.readouterr().err.count("cached in") == 2
    saved = json.loads((tmp_path / "run.json").read_text())
    assert [run["spec"]["seed"] for run in saved] == [0, 1]
    assert len(saved[0]["losses"]) == 20 and saved[0]["spec"]["precision"] == "fp32"
    assert main(["store", "list", "--store", str(tmp_path / "s")]) == 0
    assert "2 entries" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["train", "--model", "vgg"], "invalid choice: 'vgg' (choose from"),
    (["train", "--precision", "fp8"], "invalid choice: 'fp8'"),
    (["train", "-O", "width"], "is not NAME=VALUE"),
])
def test_bad_values_exit_non_zero_listing_choices(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["-O", "depth=3"], "takes no option 'depth'; its options are width"),
    (["-O", "width=0"], "model option width must be an integer >= 1, got 0"),
    (["--lr", "nan"], "lr must be a finite number >= 0, got nan"),
    (["--momentum", "1.5"], "momentum must be a finite number in [0, 1), got 1.5"),
    (["--epochs", "0"], "epochs must be a finite number > 0, got 0.0"),
])
def test_bad_run_values_are_refused_before_training(args, message, capsys, tmp_path):
    code = main(["train", "--dataset", "synthetic", "--store", str(tmp_path), *args])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("*.npz"))  # nothing trained


def test_missing_data_names_the_fix(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("CNNCONV_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    code = main(["train", "--iters", "2", "--store", str(tmp_path / "s")])
    assert code == 2 and "cnnconv data fetch cifar10" in capsys.readouterr().err
    assert main(["data"]) == 0
    assert "cifar10        not found" in capsys.readouterr().out


def test_claims_passes_extra_arguments_to_pytest(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr("pytest.main", lambda args: seen.append(args) or 0)
    assert main(["claims", "--report", str(tmp_path / "r"), "-q", "-k", "P0-PREC", "-x"]) == 0
    args = seen[0]
    assert args[0].endswith("claims") and "--cnnconv-scale=cpu" in args
    assert args[-4:] == ["-q", "-k", "P0-PREC", "-x"]
    assert f"--cnnconv-report={tmp_path / 'r' / 'README.md'}" in args


def test_other_commands_reject_unknown_arguments(capsys):
    with pytest.raises(SystemExit):
        main(["models", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_claims_without_a_claims_folder_names_the_option(capsys, tmp_path, monkeypatch):
    """Installed, away from a checkout, there is no claims/ to run: say where it was looked
    for and how to name one (the package no longer looks for its own checkout)."""
    monkeypatch.chdir(tmp_path)
    assert main(["claims", "--report", str(tmp_path / "r")]) == 2
    assert "no folder of claim tests at claims" in capsys.readouterr().err
    assert main(["claims", "--claims", str(tmp_path / "none")]) == 2
    assert "--claims DIR" in capsys.readouterr().err
