"""Lanes that take the next tiles as they finish (`LanePool`) and frames kept in flight (`Projector.stream`):
the same results as one batch loop, in order, with failures kept to the job that failed."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from projection_helpers import spread_stop_setup

from edgeproj.runtime import Projector
from edgeproj.runtime.backends.base import Runner
from edgeproj.runtime.backends.ort_cpu import OrtCpuOptions
from edgeproj.runtime.lanes import LanePool
from edgeproj.runtime.manifest import Projection


@pytest.fixture(scope="module")
def setup(bundles, demo_root):
    # Tiles stop after different numbers of steps (0, 2 and 3 here): lanes finish at different times.
    return spread_stop_setup(bundles["l2ae"], demo_root, normals=2, defects=6, quantile=0.2)


def test_lanes_give_the_one_loop_result(setup):
    m, _, tiles, settings = setup
    with Projector(m, batch=4, options=OrtCpuOptions(lanes=1)) as one:
        assert one._pool is None  # one lane: the batch loop itself
        ref = one.project_patches(tiles, settings=settings)
    with Projector(m, batch=4, options=OrtCpuOptions(lanes=2)) as two:
        assert two._pool is not None and two._pool.lanes == 2
        ticks: list[int] = []
        got = two.project_patches(tiles, settings=settings, progress=ticks.append)
    assert sum(ticks) == len(tiles)
    assert len(set(ref.iterations.tolist())) > 2  # the stop rules really spread the work
    assert got.stop_reasons == ref.stop_reasons
    assert np.array_equal(got.iterations, ref.iterations)
    np.testing.assert_allclose(got.projection, ref.projection, atol=1e-5)
    np.testing.assert_allclose(got.recon, ref.recon, atol=1e-5)
    np.testing.assert_allclose(got.rec_loss0, ref.rec_loss0, rtol=1e-5)


def test_stream_keeps_order_and_results(setup):
    m, imgs, _, settings = setup
    with Projector(m, batch=9, options=OrtCpuOptions(lanes=2)) as proj:
        assert proj.pipelined
        ref = [proj.project([i], settings=settings, lean=True)[0] for i in imgs]
        for depth in (1, 2, 3):
            got = list(proj.stream(iter(imgs), settings=settings, lean=True, depth=depth))
            assert len(got) == len(imgs)
            for g, r in zip(got, ref):
                np.testing.assert_allclose(g.map, r.map, atol=1e-5)
                assert g.iterations == r.iterations and g.stop_reasons == r.stop_reasons


def test_a_bad_frame_fails_alone_and_later(setup):
    m, imgs, _, settings = setup
    with Projector(m, batch=9, options=OrtCpuOptions(lanes=2)) as proj:
        bad = proj.submit(np.zeros((64, 64, m.channels + 2), np.float32), settings=settings, lean=True)
        good = proj.submit(imgs[0], settings=settings, lean=True)
        with pytest.raises(Exception, match="the bundle expects"):
            bad()
        assert np.isfinite(good().score)


class _Fake(Runner):
    """x moves by -0.1 per step; energy = the sum of x; a negative tile raises in load. With a barrier,
    the first load of each fake waits for the other lanes' (so every lane must be running at once)."""

    name = "fake"

    def __init__(self, log=None, barrier: threading.Barrier | None = None, gate: threading.Event | None = None):
        super().__init__(None)
        self.log = log if log is not None else []
        self.barrier = barrier
        self.gate = gate  # a tile of value 7 waits for it (a chunk still running)
        self.started = threading.Event()

    def load(self, x0, weight, settings):
        self.started.set()
        if self.barrier is not None:
            barrier, self.barrier = self.barrier, None
            barrier.wait(timeout=30)
        if self.gate is not None and (x0 == 7).any():
            assert self.gate.wait(timeout=30)
        if (x0 < 0).any():
            raise RuntimeError("boom")
        self.x = np.array(x0, copy=True)
        self.log.append((threading.current_thread().name, len(x0)))

    def evaluate(self):
        e = self.x.reshape(len(self.x), -1).sum(1).astype(np.float32)
        return e, e, self.x

    def steps(self, k, active):
        es, rs = [], []
        for _ in range(k):
            e = self.evaluate()[0]
            self.x[active > 0] -= 0.1
            es.append(e)
            rs.append(e)
        return np.stack(es), np.stack(rs)

    def fetch(self):
        return self.x

    def gradient(self, x, x0, lam):
        raise NotImplementedError


def _tiles(values) -> np.ndarray:
    return np.asarray(values, np.float32).reshape(-1, 1, 1, 1) * np.ones((1, 1, 2, 2), np.float32)


def test_pool_orders_chunks_and_isolates_failures():
    fixed = Projection(max_iterations=3).without_stop_rules()
    assert fixed.stop.is_off
    log: list = []
    both = threading.Barrier(2)
    pool = LanePool([_Fake(log, both), _Fake(log, both)], max_chunk=2)
    try:
        jobs = [pool.submit(_tiles(np.arange(7) + 10 * j), None, fixed) for j in range(3)]
        failing = pool.submit(_tiles([1.0, -1.0, 2.0]), None, fixed)
        after = pool.submit(_tiles([5.0]), None, fixed)
        for j, job in enumerate(jobs):
            res = job.result(timeout=30)
            np.testing.assert_allclose(res.x0[:, 0, 0, 0], np.arange(7) + 10 * j)  # tile order kept
            np.testing.assert_allclose(res.projection, res.x0 - 0.3, atol=1e-6)
            assert (res.iterations == 3).all()
        with pytest.raises(RuntimeError, match="boom"):
            failing.result(timeout=30)
        assert after.result(timeout=30).projection[0, 0, 0, 0] == pytest.approx(4.7)
    finally:
        pool.close()
    assert {name for name, _ in log} == {"edgeproj-lane0", "edgeproj-lane1"}  # both lanes worked
    assert max(n for _, n in log) <= 2  # chunks never exceed max_chunk


def test_a_closed_pool_fails_queued_work_instead_of_hanging():
    pool = LanePool([_Fake()], max_chunk=1)
    pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(_tiles([1.0]), None, Projection(max_iterations=1))


def test_lanes_survive_failures_of_one_job_at_once():
    """Both lanes fail chunks of the same job together: the job fails once, both lanes go on."""
    fixed = Projection(max_iterations=2).without_stop_rules()
    both = threading.Barrier(2)
    pool = LanePool([_Fake(None, both), _Fake(None, both)], max_chunk=1)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            pool.submit(_tiles([-1.0, -2.0]), None, fixed).result(timeout=30)
        later = [pool.submit(_tiles([3.0, 4.0]), None, fixed) for _ in range(3)]
        assert all(np.allclose(j.result(timeout=30).projection[:, 0, 0, 0], [2.8, 3.8]) for j in later)
        assert all(t.is_alive() for t in pool._threads)
    finally:
        pool.close()


def test_close_finishes_running_work_and_fails_queued_work():
    fixed = Projection(max_iterations=1).without_stop_rules()
    gate = threading.Event()
    lane = _Fake(gate=gate)
    pool = LanePool([lane], max_chunk=4)
    running = pool.submit(_tiles([7.0]), None, fixed)
    assert lane.started.wait(timeout=30)
    queued = pool.submit(_tiles([1.0]), None, fixed)
    cancelled = pool.submit(_tiles([2.0]), None, fixed)
    assert cancelled.cancel()  # not started: the lane skips it
    closer = threading.Thread(target=pool.close)
    closer.start()
    with pool._cv:
        assert pool._cv.wait_for(lambda: pool._closed, timeout=30)
    gate.set()
    closer.join(timeout=30)
    assert not closer.is_alive()
    assert running.result(timeout=1).projection[0, 0, 0, 0] == pytest.approx(6.9)
    with pytest.raises(RuntimeError, match="closed before"):
        queued.result(timeout=1)
    assert cancelled.cancelled()
