"""Live training progress, shared by ``cnnconv train`` and the pytest plugin.

The engine reports a ``train.Tick`` every ``train.CHECK_EVERY`` steps (when it looks at the
losses anyway, so progress costs no extra host synchronisation). A ``ProgressLine``
turns the ticks of one arm -- possibly several computations: stacks of seeds, or seed
after seed -- into one line: label, seeds, iterations done/total, the current mean loss,
the rate in seed-iterations per second and the time left. On a terminal the line updates
in place; elsewhere (CI logs) a plain line is written at most every ``every`` seconds,
and one when the arm is done. ``StreamDisplay`` writes it to a stream (the CLI's
stderr), ``TerminalDisplay`` to pytest's terminal, in step with pytest's own lines.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:  # the engine's report; imported for its type only (this module is light)
    from cnnconv.engine.train import Tick


class Display(Protocol):
    """Where progress goes: ``update`` replaces the live line, ``line`` writes a whole one."""

    live: bool

    def update(self, text: str) -> None: ...

    def line(self, text: str) -> None: ...


class StreamDisplay:
    """Progress on a text stream (``cnnconv train``: stderr), live where it is a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()

    def update(self, text: str) -> None:
        width = shutil.get_terminal_size().columns
        self.stream.write(f"\r{text[:width - 1]}\x1b[K")  # a wrapped line could not be rewritten
        self.stream.flush()

    def line(self, text: str) -> None:
        if self.live:
            self.update(text)
            self.stream.write("\n")
        else:
            self.stream.write(f"{text}\n")
        self.stream.flush()


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 20 s``, ``2 h 05 min``: as precise as a person needs."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def seed_range(seeds: tuple[int, ...]) -> str:
    """``seed 3`` or ``seeds 0-4`` (or a list where they are not consecutive)."""
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    if list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return "seeds " + ",".join(map(str, seeds))


class ProgressLine:
    """The progress of one arm: ``seeds`` runs to train (in one or several computations),
    reported through ``display``.

    Call it with each ``Tick`` (it is a ``Progress``); ``close`` writes the final line.
    """

    def __init__(self, label: str, seeds: int, display: Display, every: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.seeds, self.display, self.every = label, seeds, display, every
        self._clock = clock
        self._started = self._printed = clock()
        self._done: dict[tuple[int, ...], int] = {}
        self._last: Tick | None = None

    @property
    def seed_iterations(self) -> tuple[int, int]:
        """Seed-iterations done and in all (all computations have the same length)."""
        total = self._last.total * self.seeds if self._last else 0
        return sum(len(seeds) * done for seeds, done in self._done.items()), total

    def __call__(self, tick: Tick) -> None:
        self._done[tick.seeds] = tick.done
        self._last = tick
        now = self._clock()
        if self.display.live:
            self.display.update(self.text(now))
        elif now - self._printed >= self.every:
            self.display.line(self.text(now))
            self._printed = now

    def text(self, now: float) -> str:
        tick = self._last
        assert tick is not None
        done, total = self.seed_iterations
        elapsed = now - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = duration((total - done) / rate) if rate > 0 else "?"
        return (f"{self.label} {seed_range(tick.seeds)}: {tick.done}/{tick.total} it, "
                f"loss {tick.loss:.4f}, {rate:.1f} seed-it/s, ETA {eta}")

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent inside (a distillation teacher trained first) is not this arm's."""
        began = self._clock()
        try:
            yield
        finally:
            self._started += self._clock() - began

    def close(self) -> None:
        """The final line: what was trained, how long it took, at what rate (nothing if
        nothing was trained)."""
        if self._last is None:
            return
        done, _ = self.seed_iterations
        seeds = len({seed for stack in self._done for seed in stack})
        elapsed = self._clock() - self._started
        rate = done / elapsed if elapsed > 0 else 0.0
        self.display.line(
            f"{self.label}: trained {seeds} seed(s) x {self._last.total} it in "
            f"{duration(elapsed)} ({rate:.1f} seed-it/s), loss {self._last.loss:.4f}")


class TerminalDisplay:
    """Progress on pytest's terminal (``reporter``: its ``TerminalReporter``), written
    with output capture suspended (``capture``: its ``CaptureManager``, as pytest's live
    logging does). On a terminal the line updates in place and its last state stays until
    pytest writes again; elsewhere whole lines are written."""

    # pytest's own mark of a line that is open but is no file's line of result letters:
    # its ensure_newline() ends it, and its next result starts a line of its own
    OPEN_LINE = -2

    def __init__(self, reporter: Any, capture: Any) -> None:
        self.reporter, self.capture = reporter, capture
        self.live = bool(reporter.isatty)
        self._keep = False  # the open line is a final state, to be kept
        self._wrote = False

    @contextlib.contextmanager
    def _uncaptured(self) -> Iterator[None]:
        if self.capture is None:
            yield
            return
        with self.capture.global_and_fixture_disabled():
            yield

    def update(self, text: str) -> None:
        reporter = self.reporter
        with self._uncaptured():
            if reporter.currentfspath not in (None, self.OPEN_LINE):  # pytest's line is open
                reporter.ensure_newline()
            elif reporter.currentfspath == self.OPEN_LINE and self._keep:
                reporter.write("\n")
            reporter.rewrite(text[:reporter._tw.fullwidth - 1], erase=True)
            reporter.currentfspath = self.OPEN_LINE
            reporter.flush()
        self._keep, self._wrote = False, True

    def line(self, text: str) -> None:
        if self.live:
            self.update(text)
            self._keep = True
            return
        with self._uncaptured():
            self.reporter.write_line(text)
            self.reporter.flush()
        self._wrote = True

    def resume(self, nodeid: str) -> None:
        """Before pytest reports the test that trained: give its result letter a line
        that starts with its file again (in verbose mode pytest does so itself)."""
        if self._wrote and self.reporter.showfspath and not self.reporter.showlongtestinfo:
            self.reporter.write_fspath_result(nodeid, "")
        self._wrote = self._keep = False
