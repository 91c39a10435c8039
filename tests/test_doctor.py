"""``cnnconv doctor`` on a CPU: the CPU half runs, says there is no GPU, and a failed
check makes the command fail."""

import pytest

from cnnconv.cli import main
from cnnconv.tools import doctor


@pytest.fixture(scope="module")
def cpu_rows():
    return doctor.run_checks("cpu")


def test_the_cpu_half_checks_every_mode(cpu_rows):
    names = {row.name for row in cpu_rows}
    for mode in ("fp64", "fp32", "tf32", "bf16", "amp_bf16", "amp_fp16"):
        assert {f"{mode} matmul", f"{mode} conv", f"{mode} operand dtypes"} <= names
    assert all(row.passed is not False for row in cpu_rows), [r for r in cpu_rows if r.passed is False]
    assert not any(row.name.startswith(("CUDA graph", "memory")) for row in cpu_rows)


def test_a_mode_computing_in_the_wrong_precision_fails_its_row(monkeypatch):
    """tf32 that silently computed in fp32 would have an error far below TF32's roundoff."""
    monkeypatch.setitem(doctor.PRODUCT_ERROR, "fp32", (2.0**-14, 2.0**-9))  # as if fp32 were tf32
    rows = {row.name: row for row in doctor.check_products("cpu")}
    assert rows["fp32 matmul"].passed is False and rows["tf32 matmul"].passed is True


def test_the_command_prints_a_table_and_its_exit_code_follows_the_checks(capsys, monkeypatch):
    def dtypes(passed):
        return lambda device: [doctor.Check("dtypes", "0 off" if passed else "3 off", "0 off", passed)]
    monkeypatch.setattr(doctor, "check_dtypes", dtypes(True))
    assert main(["doctor", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "no CUDA GPU here" in out and "tf32 matmul" in out and "rows ok" in out
    monkeypatch.setattr(doctor, "check_dtypes", dtypes(False))
    assert main(["doctor", "--device", "cpu"]) == 1
    assert "FAILED: dtypes" in capsys.readouterr().out


def test_a_check_that_raises_is_a_failed_row_and_the_others_still_run(monkeypatch):
    def check_products(device):
        raise RuntimeError("CUDNN_STATUS_NOT_SUPPORTED")
    monkeypatch.setattr(doctor, "check_products", check_products)
    monkeypatch.setattr(doctor, "check_optimizer", lambda device: doctor.Check("optimizer", "ok", "", True))
    monkeypatch.setattr(doctor, "check_dtypes", lambda device: [doctor.Check("dtypes", "0 off", "", True)])
    rows = {row.name: row for row in doctor.run_checks("cpu")}
    assert rows["check_products"].passed is False
    assert "RuntimeError: CUDNN_STATUS_NOT_SUPPORTED" in rows["check_products"].value
    assert rows["optimizer"].passed and rows["dtypes"].passed and "torch" in rows
