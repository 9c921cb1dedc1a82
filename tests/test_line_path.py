"""The line's short path: x0 evaluated inside the first step, no f(x_T) when the map does not need it,
and a lean projection with only what a verdict needs. Each must give the same result as the long path."""

from __future__ import annotations

import numpy as np
import pytest
from projection_helpers import spread_stop_setup

from edgeproj.runtime import Projector


@pytest.fixture(scope="module")
def setup(bundles, demo_root):
    # Half of the tiles stop at x0, the others step until the energy converges or the budget ends.
    return spread_stop_setup(bundles["l2ae"], demo_root, normals=3, defects=3, quantile=0.5)


def _project(m, tiles, settings, fuse: bool, final: bool = True, checkpoints=(), hook=None):
    with Projector(m, batch=4) as proj:
        assert proj.runner.fuses_first_step  # the CPU runner implements the fused path
        proj.runner.fuses_first_step = fuse
        return proj.project_patches(tiles, settings=settings, final=final, checkpoints=checkpoints, on_checkpoint=hook)


def test_fused_first_step_equals_a_separate_evaluation(setup):
    m, _, tiles, settings = setup
    seen: dict[bool, dict[int, list]] = {True: {}, False: {}}
    results = {}
    for fuse in (True, False):
        hook = lambda t, x0, x, fuse=fuse: seen[fuse].setdefault(t, []).append(x.copy())  # noqa: E731
        results[fuse] = _project(m, tiles, settings, fuse, checkpoints=(0, 1, 5), hook=hook)
    a, b = results[True], results[False]
    assert (a.iterations == 0).any() and (a.iterations > 1).any()
    assert a.stop_reasons == b.stop_reasons
    assert np.array_equal(a.iterations, b.iterations)
    np.testing.assert_allclose(a.projection, b.projection, atol=1e-6)
    np.testing.assert_allclose(a.recon0, b.recon0, atol=1e-6)
    np.testing.assert_allclose(a.rec_loss0, b.rec_loss0, rtol=1e-6)
    np.testing.assert_allclose(a.recon, b.recon, atol=1e-6)
    for ta, tb in zip(a.traces, b.traces):
        np.testing.assert_allclose(ta, tb, rtol=1e-5)
    # Tiles stopped at x0 were put back exactly, and the checkpoints saw the same projections.
    at_x0 = a.iterations == 0
    assert np.array_equal(a.projection[at_x0], a.x0[at_x0]) and (a.iterations[at_x0] == 0).all()
    for t in (0, 1, 5):
        np.testing.assert_allclose(np.concatenate(seen[True][t]), np.concatenate(seen[False][t]), atol=1e-6)


def test_without_the_final_evaluation(setup):
    m, _, tiles, settings = setup
    full = _project(m, tiles, settings, fuse=True)
    short = _project(m, tiles, settings, fuse=True, final=False)
    assert short.recon is None and np.isnan(short.rec_loss).all()
    assert short.stop_reasons == full.stop_reasons
    np.testing.assert_array_equal(short.projection, full.projection)


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
    ref = _project(m, tiles, settings, fuse=True)
    assert iters.tolist() == ref.iterations.tolist()
    np.testing.assert_allclose(x.numpy(), ref.projection, atol=2e-4)
