"""The line's short path: the step split into forward and update graphs (a tile the stop rule ends pays
for the forward only), no f(x_T) when the map does not need it, and a lean projection with only what a
verdict needs. Each must give the same result as the long path."""

from __future__ import annotations

import numpy as np
import pytest
from projection_helpers import spread_stop_setup

from edgeproj.runtime import Projector
from edgeproj.runtime.backends.ort_cpu import OrtCpuOptions, OrtCpuRunner


@pytest.fixture(scope="module")
def setup(bundles, demo_root):
    # Half of the tiles stop at x0, the others step until the energy converges or the budget ends.
    return spread_stop_setup(bundles["l2ae"], demo_root, normals=3, defects=3, quantile=0.5)


def _project(m, tiles, settings, whole_step: bool = False, final: bool = True, checkpoints=(), hook=None):
    with Projector(m, batch=4, options=OrtCpuOptions(whole_step=whole_step)) as proj:
        assert proj.runner.split is not whole_step  # the bundle carries the forward/update split
        return proj.project_patches(tiles, settings=settings, final=final, checkpoints=checkpoints, on_checkpoint=hook)


def test_forward_and_update_graphs_equal_the_step_graph(setup):
    m, _, tiles, settings = setup
    seen: dict[bool, dict[int, list]] = {True: {}, False: {}}
    results = {}
    for whole in (True, False):
        hook = lambda t, x0, x, whole=whole: seen[whole].setdefault(t, []).append(x.copy())  # noqa: E731
        results[whole] = _project(m, tiles, settings, whole, checkpoints=(0, 1, 5), hook=hook)
    a, b = results[False], results[True]
    assert (a.iterations == 0).any() and (a.iterations > 0).any()
    assert a.stop_reasons == b.stop_reasons
    assert np.array_equal(a.iterations, b.iterations)
    np.testing.assert_allclose(a.projection, b.projection, atol=1e-6)
    np.testing.assert_allclose(a.recon0, b.recon0, atol=1e-6)
    np.testing.assert_allclose(a.rec_loss0, b.rec_loss0, rtol=1e-6)
    np.testing.assert_allclose(a.recon, b.recon, atol=1e-6)
    for ta, tb in zip(a.traces, b.traces):
        np.testing.assert_allclose(ta, tb, rtol=1e-5)
    at_x0 = a.iterations == 0
    assert np.array_equal(a.projection[at_x0], a.x0[at_x0])
    for t in (0, 1, 5):
        np.testing.assert_allclose(np.concatenate(seen[True][t]), np.concatenate(seen[False][t]), atol=1e-6)


def test_a_tile_stops_where_the_rule_says_and_skips_that_update(setup, monkeypatch):
    """A tile that meets the L_r threshold at x_t returns x_t (its L_r is below the threshold), and the
    update graph ran exactly once per step taken: none for the step that found the tile finished."""
    m, _, tiles, settings = setup
    updated = []
    real = OrtCpuRunner._lane_advance

    def counting(self, lane, moving):
        if lane.pending is not None:
            idx = lane.pending[0]
            updated.append(int((moving[lane.sl][idx] > 0).sum()))
        return real(self, lane, moving)

    monkeypatch.setattr(OrtCpuRunner, "_lane_advance", counting)
    res = _project(m, tiles, settings)
    by_rule = np.array([r == "rec_loss_threshold" for r in res.stop_reasons])
    assert (by_rule & (res.iterations > 0)).any()  # some tiles stepped, then met the threshold
    assert (res.rec_loss[by_rule] < settings.stop.rec_loss_threshold).all()
    assert sum(updated) == int(res.iterations.sum())
    # Each tile's trace holds E at every x it was checked at: x0 and one per step, except after the last
    # step of a tile that ran out of steps (x_T is not checked).
    for reason, it, trace in zip(res.stop_reasons, res.iterations, res.traces):
        if it > 0:
            assert len(trace) == it + (reason != "max_iterations")


@pytest.mark.parametrize("chunk", [None, 3], ids=["probing", "device-like chunk 3"])
def test_without_the_final_evaluation(setup, chunk):
    """The lean path skips f(x_T) but still reports E at the x it returns: for tiles the rule stopped, tiles
    cut by the iteration limit, and on a runner that checks the rule after the step (as the GPUs do)."""
    m, _, tiles, settings = setup
    settings = settings.with_overrides(max_iterations=1)  # the tiles that move are cut by the limit
    opts = OrtCpuOptions(chunk=chunk)

    def run(final):
        with Projector(m, batch=4, options=opts) as proj:
            return proj.project_patches(tiles, settings=settings, final=final)

    full, short = run(True), run(False)
    assert short.recon is None and np.isnan(short.rec_loss).all()
    assert short.stop_reasons == full.stop_reasons
    assert "max_iterations" in full.stop_reasons and (full.iterations > 0).any()
    np.testing.assert_array_equal(short.projection, full.projection)
    np.testing.assert_allclose(short.energy, full.energy, rtol=1e-5)


def test_a_device_like_chunk_lets_a_stopped_tile_finish_its_chunk(setup):
    """ort-cpu with a chunk checks the rule as the GPU runners do: after the step, read back every k steps,
    so every tile that moved has taken a multiple of k steps (or the limit); the projector says so."""
    m, _, tiles, settings = setup
    with Projector(m, batch=4, options=OrtCpuOptions(chunk=3)) as proj:
        assert proj.stop_check == "after the step, read back every 3 steps"
        res = proj.project_patches(tiles, settings=settings)
    with Projector(m, batch=4) as proj:
        assert proj.stop_check == "before the step"
        probed = proj.project_patches(tiles, settings=settings)
    moved = res.iterations > 0
    assert moved.any()
    limit = settings.max_iterations
    assert all(it % 3 == 0 or it == limit for it in res.iterations[moved])
    assert (res.iterations >= probed.iterations).all() and (res.iterations > probed.iterations).any()


def test_lean_projection_keeps_the_verdict_inputs(setup):
    m, imgs, _, settings = setup
    with Projector(m, batch=4) as proj:
        full = proj.project(imgs, settings=settings)
        lean = proj.project(imgs, settings=settings, lean=True)
    for f, le in zip(full, lean):
        np.testing.assert_allclose(le.map, f.map, atol=1e-6)
        assert le.score == pytest.approx(f.score, abs=1e-6)
        assert le.stop_reasons == f.stop_reasons and le.iterations == f.iterations
        assert le.baseline_map is None and le.projection is None and le.recon is None and np.isnan(le.baseline_score)


def test_eager_torch_loop_mirrors_the_runtime_loop(setup, runs):
    """The benchmark's torch row does the same work: same stop decisions, same iterations, same result."""
    import torch

    from edgeproj.models.torch_reference import torch_project_stopping
    from edgeproj.training.run import load_run

    m, _, tiles, settings = setup
    model, _, _ = load_run(runs["l2ae"])
    x, iters = torch_project_stopping(model, torch.from_numpy(tiles), settings)
    ref = _project(m, tiles, settings)
    assert iters.tolist() == ref.iterations.tolist()
    np.testing.assert_allclose(x.numpy(), ref.projection, atol=2e-4)
