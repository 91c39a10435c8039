"""CUDA graph capture, checked on a CPU against a stand-in for ``torch.cuda``.

The stand-in records which device is current and which stream is active at each call,
and its graph replays what was captured. It catches what broke the first version on a
second GPU: warm-up and capture on a stream of the *current* device instead of the run's,
a new stream per warm-up step, and a failed capture leaving the device unchecked. That the
replayed step computes what the eager one does on real hardware is checked by
tests/test_gpu.py and ``cnnconv doctor``.
"""

import contextlib

import pytest
import torch

from cnnconv.engine import cuda_graph
from cnnconv.engine.cuda_graph import StepGraph


class FakeStream:
    def __init__(self, device_index: int) -> None:
        self.device_index = device_index

    def wait_stream(self, other: "FakeStream") -> None:
        pass


class FakeGraph:
    def __init__(self) -> None:
        self.body = None

    def replay(self) -> None:
        self.body()


class FakeCuda:
    """The parts of ``torch.cuda`` StepGraph uses; current device 0 unless entered."""

    def __init__(self, fail_capture: bool = False) -> None:
        self.device_index = 0
        self.defaults = {}
        self.active = None
        self.capturing = None
        self.capture_streams = []
        self.synchronized = []
        self.fail_capture = fail_capture

    @contextlib.contextmanager
    def device(self, device):
        previous, self.device_index = self.device_index, torch.device(device).index
        try:
            yield
        finally:
            self.device_index = previous

    def Stream(self, device=None):
        return FakeStream(self.device_index if device is None else torch.device(device).index)

    def current_stream(self, device=None):
        index = self.device_index if device is None else torch.device(device).index
        return self.defaults.setdefault(index, FakeStream(index))

    @contextlib.contextmanager
    def stream(self, stream):
        previous, self.active = self.active, stream
        try:
            yield
        finally:
            self.active = previous

    def synchronize(self, device=None):
        self.synchronized.append(torch.device(device).index if device is not None else self.device_index)

    def empty_cache(self):
        pass

    def set_stream(self, stream):
        self.active = stream

    def CUDAGraph(self):
        return FakeGraph()

    @contextlib.contextmanager
    def graph(self, graph, stream=None):
        self.capture_streams.append((self.device_index, stream))
        self.capturing, previous_stream, self.active = graph, self.active, stream
        try:
            yield
            if self.fail_capture == "oom":
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            if self.fail_capture:
                raise RuntimeError("operation not permitted when stream is capturing")
        finally:
            self.capturing, self.active = None, previous_stream


@pytest.fixture
def fake(monkeypatch):
    cuda = FakeCuda()
    for name in ("device", "Stream", "current_stream", "stream", "synchronize", "empty_cache",
                 "CUDAGraph", "graph", "set_stream"):
        monkeypatch.setattr(torch.cuda, name, getattr(cuda, name))
    monkeypatch.setattr(cuda_graph, "_probe", lambda device: 4.0)
    return cuda


def doubling_step(cuda: FakeCuda, log: list):
    """A step ``x -> 2x`` that logs its context; captured, it records its kernel."""
    def step(x):
        stream = cuda.active
        log.append((cuda.device_index, stream, cuda.capturing is not None))
        if cuda.capturing is not None:
            out = torch.empty_like(x)
            cuda.capturing.body = lambda: out.copy_(x * 2)
            return (out,)
        return (x * 2,)
    return step


def test_warm_up_and_capture_run_on_the_runs_device_with_one_side_stream(fake):
    log = []
    graph = StepGraph(doubling_step(fake, log), torch.device("cuda:1"))
    outputs = [graph(torch.full((3,), float(i)))[0].clone() for i in range(8)]
    assert [o.tolist() for o in outputs] == [[2.0 * i] * 3 for i in range(8)]
    warm_up, capture = log[:3], log[3]
    assert len(log) == 4, "after capture, steps are replays, not eager calls"
    assert all(device == 1 for device, _, _ in log)
    side = graph.stream
    assert side.device_index == 1 and all(stream is side for _, stream, _ in log)
    assert not any(captured for _, _, captured in warm_up) and capture[2]
    assert fake.capture_streams == [(1, side)]
    assert graph.captured and fake.device_index == 0  # the caller's device is restored


def test_a_failed_capture_warns_checks_the_device_and_trains_eagerly(fake, monkeypatch):
    fake.fail_capture = True
    probed = []
    monkeypatch.setattr(cuda_graph, "_probe", lambda device: probed.append(device) or 4.0)
    log = []
    graph = StepGraph(doubling_step(fake, log), torch.device("cuda:1"))
    for _ in range(3):
        graph(torch.ones(2))
    with pytest.warns(UserWarning, match=r"capture failed on cuda:1.*training eagerly"):
        out = graph(torch.full((2,), 5.0))
    assert out[0].tolist() == [10.0, 10.0]
    assert graph(torch.full((2,), 6.0))[0].tolist() == [12.0, 12.0]
    assert not graph.captured and "not permitted" in graph.failure
    assert 1 in fake.synchronized and probed == [torch.device("cuda:1")]


def test_a_device_left_unusable_by_a_failed_capture_says_how_to_go_on(fake, monkeypatch):
    fake.fail_capture = True

    def broken(device):
        raise RuntimeError("CUDA error: operation failed due to a previous error during capture")
    monkeypatch.setattr(cuda_graph, "_probe", broken)
    graph = StepGraph(doubling_step(fake, []), torch.device("cuda:1"), warmup=0)
    with pytest.raises(RuntimeError, match=r"unusable.*cuda_graph=False"):
        graph(torch.ones(2))


def test_running_out_of_memory_in_capture_is_not_a_capture_failure(fake):
    """It propagates, so train_seeds can halve the stack, instead of training eagerly at
    the same size."""
    fake.fail_capture = "oom"
    graph = StepGraph(doubling_step(fake, []), torch.device("cuda:1"), warmup=0)
    with pytest.raises(torch.OutOfMemoryError):
        graph(torch.ones(2))
    assert graph.failure is None


def test_graphs_need_a_cuda_device():
    with pytest.raises(ValueError, match="CUDA device"):
        StepGraph(lambda x: (x,), torch.device("cpu"))
