"""The progress line: what it says, when it writes, and how it shares pytest's terminal."""

from types import SimpleNamespace

import pytest

from cnnconv.engine.train import Tick
from cnnconv.harness.progress import ProgressLine, TerminalDisplay, duration, seed_range


class Recorder:
    """A display that keeps what it was given."""

    def __init__(self, live: bool) -> None:
        self.live, self.updates, self.lines = live, [], []

    def update(self, text):
        self.updates.append(text)

    def line(self, text):
        self.lines.append(text)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_live_line_counts_seed_iterations_over_every_stack():
    clock, display = Clock(), Recorder(live=True)
    line = ProgressLine("P0-PREC-2 bf16", 5, display, clock=clock)
    clock.now = 10.0
    line(Tick((0, 1, 2), 50, 100, 2.0))  # 150 of 500 seed-iterations in 10 s
    assert display.updates[-1] == ("P0-PREC-2 bf16 seeds 0-2: 50/100 it, loss 2.0000, "
                                   "15.0 seed-it/s, ETA 23 s")
    clock.now = 20.0
    line(Tick((0, 1, 2), 100, 100, 1.5))
    clock.now = 25.0
    line(Tick((3, 4), 50, 100, 1.8))  # 400 done: the first stack is not forgotten
    assert display.updates[-1].endswith("16.0 seed-it/s, ETA 6 s")
    assert "seeds 3-4: 50/100 it" in display.updates[-1]
    clock.now = 30.0
    line(Tick((3, 4), 100, 100, 1.4))
    line.close()
    assert display.lines == ["P0-PREC-2 bf16: trained 5 seed(s) x 100 it in 30 s "
                             "(16.7 seed-it/s), loss 1.4000"]


def test_elsewhere_it_writes_a_plain_line_at_most_every_interval_and_when_done():
    clock, display = Clock(), Recorder(live=False)
    line = ProgressLine("P1 lr0.5", 1, display, every=30.0, clock=clock)
    for now, done in ((10, 20), (31, 60), (40, 80), (59, 90), (62, 100)):
        clock.now = now
        line(Tick((3,), done, 100, 1.0))
    line.close()
    assert display.updates == []
    assert [text.split(":")[0] for text in display.lines] == ["P1 lr0.5 seed 3"] * 2 + ["P1 lr0.5"]
    assert "60/100 it" in display.lines[0] and "100/100 it" in display.lines[1]
    assert display.lines[2].startswith("P1 lr0.5: trained 1 seed(s) x 100 it in 1 min 02 s")


def test_a_run_that_never_ticked_writes_nothing():
    display = Recorder(live=False)
    ProgressLine("cached", 5, display).close()
    assert display.lines == [] and display.updates == []


@pytest.mark.parametrize("seconds,text", [(0.4, "0 s"), (59, "59 s"), (200, "3 min 20 s"),
                                          (7500, "2 h 05 min"), (-1, "0 s")])
def test_durations_read_as_a_person_would(seconds, text):
    assert duration(seconds) == text


def test_seed_ranges():
    assert seed_range((3,)) == "seed 3"
    assert seed_range((0, 1, 2, 3)) == "seeds 0-3"
    assert seed_range((0, 2, 5)) == "seeds 0,2,5"


class FakeReporter:
    """The parts of pytest's TerminalReporter the display uses, logging each call."""

    def __init__(self, fspath=None, verbose=False):
        self.currentfspath = fspath
        self.isatty = True
        self.showfspath, self.showlongtestinfo = True, verbose
        self._tw = SimpleNamespace(fullwidth=40)
        self.calls = []

    def ensure_newline(self):
        if self.currentfspath:
            self.calls.append(("ensure_newline",))
        self.currentfspath = None

    def write(self, text):
        self.calls.append(("write", text))

    def rewrite(self, text, erase=False):
        self.calls.append(("rewrite", text))

    def write_line(self, text):
        self.calls.append(("write_line", text))

    def write_fspath_result(self, nodeid, result):
        self.calls.append(("write_fspath_result", nodeid))
        self.currentfspath = nodeid.split("::")[0]

    def flush(self):
        pass


def _display(reporter):
    return TerminalDisplay(reporter, capture=None)


def test_the_terminal_line_leaves_pytests_line_and_keeps_each_final_state():
    reporter = FakeReporter(fspath="claims/test_p0_precision.py")  # a line of dots is open
    display = _display(reporter)
    display.update("arm a 10/100")
    display.line("arm a: trained")
    display.update("arm b " + "x" * 60)  # longer than the terminal: cut, never wrapped
    assert reporter.calls == [
        ("ensure_newline",), ("rewrite", "arm a 10/100"), ("rewrite", "arm a: trained"),
        ("write", "\n"), ("rewrite", ("arm b " + "x" * 60)[:39]),
    ]
    # pytest's own writers (live logging, a warning) end the open line as they end its own
    reporter.ensure_newline()
    display.update("arm c")  # on the fresh line: no blank line
    assert reporter.calls[-2:] == [("ensure_newline",), ("rewrite", "arm c")]
    # pytest then writes the test's result letter: on a line of its file again
    display.resume("claims/test_p0_precision.py::test_x")
    assert reporter.calls[-1] == ("write_fspath_result", "claims/test_p0_precision.py::test_x")
    display.resume("claims/test_p0_precision.py::test_y")  # it trained nothing: no new line
    assert len(reporter.calls) == 8


def test_verbose_pytest_resumes_its_own_line():
    reporter = FakeReporter(verbose=True)
    display = _display(reporter)
    display.line("arm a: trained")
    display.resume("test_x")
    assert ("write_fspath_result", "test_x") not in reporter.calls


def test_off_a_terminal_the_display_writes_whole_lines():
    reporter = FakeReporter()
    reporter.isatty = False
    display = _display(reporter)
    assert not display.live
    display.line("arm a: trained")
    assert reporter.calls == [("write_line", "arm a: trained")]


def test_a_teachers_training_is_not_the_students_time():
    clock, display = Clock(), Recorder(live=False)
    student = ProgressLine("P3-KD distilled", 1, display, clock=clock)
    with student.paused():
        clock.now = 100.0  # the teacher trains first, inside the student's computation
    clock.now = 110.0
    student(Tick((0,), 100, 100, 1.0))
    student.close()
    assert "in 10 s (10.0 seed-it/s)" in display.lines[-1]
