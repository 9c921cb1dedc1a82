"""Synthetic defects: exact masks, sizes, determinism, and the MVTec-layout round trip through load_testset."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeproj.data.images import read_image, read_mask
from edgeproj.data.synthetic import (
    KINDS,
    MASK_MIN_CHANGE,
    MIN_MASK_PIXELS,
    inject,
    quantize,
    write_synthetic_set,
)
from edgeproj.errors import ConfigError, DataError
from edgeproj.evaluation.testset import load_testset
from edgeproj.preprocess import Preprocess

MAX_FRACTION = 0.03


def textured(seed: int, channels: int, h: int = 256, w: int = 256) -> np.ndarray:
    """Band-limited noise texture on 8-bit levels (so "the original" is exactly what a PNG holds)."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.standard_normal((h, w, channels)).astype(np.float32), (0, 0), 1.5).reshape(h, w, channels)
    if channels == 3:  # partly correlated channels with a colour offset: a coloured, not grey, texture
        noise = 0.6 * noise + 0.4 * noise.mean(axis=2, keepdims=True)
        noise += np.array([0.3, -0.2, 0.0], np.float32) * noise.std()
    img = quantize(0.5 + 0.12 * noise / noise.std())
    assert np.array_equal(img, quantize(img))
    return img


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixels that differ by at least MASK_MIN_CHANGE in any channel."""
    return (np.abs(a.astype(np.float64) - b.astype(np.float64)) >= MASK_MIN_CHANGE).any(axis=2)


IMAGES = {
    "gray": textured(0, 1),
    "rgb": textured(1, 3),
    "wide-gray": textured(2, 1, 96, 160),  # non-square, close to the 64 px minimum
}
DONORS = {"gray": [textured(10, 1)], "rgb": [textured(11, 3)], "wide-gray": [textured(12, 1, 80, 120)]}


@pytest.mark.parametrize("which", sorted(IMAGES))
@pytest.mark.parametrize("kind", KINDS)
def test_mask_is_exactly_the_visibly_changed_pixels(kind, which):
    img = IMAGES[which]
    h, w, c = img.shape
    for seed in range(6):
        for donors in (DONORS[which], ()):
            d = inject(img, kind, np.random.default_rng(seed), donors=donors, max_area_fraction=MAX_FRACTION)
            assert d.kind == kind
            assert d.image.shape == img.shape and d.image.dtype == np.float32
            assert d.mask.shape == (h, w) and d.mask.dtype == bool
            # 8-bit levels, exactly as a PNG read back
            assert np.array_equal(d.image, np.round(d.image * 255).astype(np.uint8).astype(np.float32) / 255.0)
            n = int(d.mask.sum())
            assert MIN_MASK_PIXELS <= n <= MAX_FRACTION * 1.5 * h * w, (seed, n)
            assert d.area_fraction == pytest.approx(n / (h * w))
            diff = np.abs(d.image.astype(np.float64) - img).max(axis=2)
            assert (diff[d.mask] >= MASK_MIN_CHANGE).all()  # every mask pixel visibly changed
            assert (diff[~d.mask] < MASK_MIN_CHANGE).all()  # and nothing else did
            # Local: whatever changed at all lies near the mask (no sub-threshold haze over the image).
            near = cv2.dilate(d.mask.astype(np.uint8), np.ones((31, 31), np.uint8)).astype(bool)
            assert not (diff > 0)[~near].any()


def test_kinds_look_like_their_description():
    img, rgb = IMAGES["gray"], IMAGES["rgb"]
    for seed in range(8):
        # scratch: thin (a 1-3 px line with its anti-aliased rim is at most ~5 px wide) and a clear shift
        d = inject(img, "scratch", np.random.default_rng(seed))
        assert cv2.distanceTransform(d.mask.astype(np.uint8), cv2.DIST_L2, 3).max() <= 3.0
        assert np.abs(d.image - img)[d.mask].max() >= 0.15 - 1e-6
        # missing: the hole is nearly flat, unlike the texture it replaces
        d = inject(img, "missing", np.random.default_rng(seed))
        inner = cv2.erode(d.mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        if inner.sum() > 20:
            assert d.image[inner].std() < 0.5 * img[inner].std()
        # blur: less high-frequency energy inside the region than before (a 9-px mask is too few to tell)
        d = inject(img, "blur", np.random.default_rng(seed))
        if d.mask.sum() >= 30:
            high = lambda x: np.abs(x[..., 0] - cv2.GaussianBlur(x[..., 0], (0, 0), 1.0))[d.mask].mean()
            assert high(d.image) < high(img)
        # stain on RGB: a colour cast, not only a brightness change
        d = inject(rgb, "stain", np.random.default_rng(seed))
        ratio = (d.image[d.mask] + 1e-3) / (rgb[d.mask] + 1e-3)
        assert np.ptp(ratio.mean(axis=0)) > 0.02
        # foreign: irregular outline, not a filled rectangle, once it is large enough to tell
        d = inject(img, "foreign", np.random.default_rng(seed), donors=DONORS["gray"])
        ys, xs = np.nonzero(d.mask)
        if d.mask.sum() > 100:
            assert d.mask.sum() < 0.95 * (np.ptp(ys) + 1) * (np.ptp(xs) + 1)


def test_foreign_takes_its_content_from_the_donor():
    donor = np.full((256, 256, 1), 200 / 255, np.float32)  # flat: any pasted pixel reads exactly 200/255
    for seed in range(5):
        d = inject(IMAGES["gray"], "foreign", np.random.default_rng(seed), donors=[donor])
        assert np.allclose(d.image[d.mask], 200 / 255)


def test_deterministic_under_a_seed():
    for kind in KINDS:
        a = inject(IMAGES["rgb"], kind, np.random.default_rng(7), donors=DONORS["rgb"])
        b = inject(IMAGES["rgb"], kind, np.random.default_rng(7), donors=DONORS["rgb"])
        c = inject(IMAGES["rgb"], kind, np.random.default_rng(8), donors=DONORS["rgb"])
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
        assert not np.array_equal(a.mask, c.mask)


def test_sizes_span_an_order_of_magnitude():
    fractions = {kind: [] for kind in KINDS}
    rng = np.random.default_rng(3)
    for i in range(40):
        kind = KINDS[i % len(KINDS)]
        fractions[kind].append(inject(IMAGES["gray"], kind, rng, donors=DONORS["gray"]).area_fraction)
    every = [f for fs in fractions.values() for f in fs]
    assert max(every) / min(every) >= 10
    assert min(every) * 256 * 256 < 60  # some defects only a few pixels across
    assert max(every) > 0.01  # and some large ones, bounded by the 3 % default
    assert max(every) <= 0.03


def test_flat_image_and_bad_arguments():
    flat = np.full((128, 128, 1), 0.5, np.float32)
    with pytest.raises(DataError, match="too flat"):
        inject(flat, "blur", np.random.default_rng(0))
    with pytest.raises(DataError, match="too flat"):
        inject(flat, "foreign", np.random.default_rng(0))  # no donor: only the same flat image
    assert inject(flat, "scratch", np.random.default_rng(0)).mask.any()  # an added defect still shows
    with pytest.raises(ConfigError, match="unknown synthetic defect kind 'dent'"):
        inject(IMAGES["gray"], "dent", np.random.default_rng(0))
    with pytest.raises(DataError, match="at least 64 px"):
        inject(np.zeros((32, 128, 1), np.float32), "scratch", np.random.default_rng(0))
    with pytest.raises(DataError, match="channels"):
        inject(IMAGES["gray"], "foreign", np.random.default_rng(0), donors=[IMAGES["rgb"]])
    with pytest.raises(ConfigError):
        inject(IMAGES["gray"], "stain", np.random.default_rng(0), max_area_fraction=0.0)


# ---------------------------------------------------------------- the written test set


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_write_synthetic_set_round_trip(tmp_path):
    images = [textured(20 + i, 1) for i in range(3)]
    names = ["a", "b", "c"]
    per_image = 4
    summary = write_synthetic_set(images, names, tmp_path, per_image=per_image, seed=5)
    assert summary["images"] == 3 and summary["defects"] == 12
    assert summary["per_kind"] == {"foreign": 3, "scratch": 3, "stain": 2, "missing": 2, "blur": 2}
    assert summary["kinds"] == list(KINDS) and summary["seed"] == 5 and summary["mask_min_change"] == MASK_MIN_CHANGE
    fr = summary["area_fraction"]
    assert 0 < fr["min"] <= fr["median"] <= fr["max"] <= 0.03
    assert json.loads((tmp_path / "synthetic" / "synthetic.json").read_text()) == summary

    ts = load_testset(tmp_path, "synthetic", Preprocess(mode="texture", resize=256, channels=1))
    assert ts.category.skipped == [] and len(ts.category.train) == 1
    assert len(ts.images) == 3 + 12 and int(ts.labels.sum()) == 12
    good = {p.stem: img for p, img, k in zip(ts.paths, ts.images, ts.kinds) if k == "good"}
    assert sorted(good) == names
    for i, name in enumerate(names):
        assert np.array_equal(good[name], images[i])
    fractions = []
    for path, img, mask, kind, label in zip(ts.paths, ts.images, ts.masks, ts.kinds, ts.labels):
        if kind == "good":
            assert not label and not mask.any()
            continue
        name, k = path.stem.rsplit("_", 1)
        i = names.index(name)
        assert label and kind == KINDS[(i * per_image + int(k)) % len(KINDS)]
        # The mask on disk is exactly the visibly changed pixels of the image on disk.
        assert np.array_equal(mask, changed(img, good[name]))
        assert mask.sum() >= MIN_MASK_PIXELS
        fractions.append(mask.mean())
    assert min(fractions) == pytest.approx(fr["min"]) and max(fractions) == pytest.approx(fr["max"])

    # Deterministic files, and a rerun replaces its own earlier output.
    before = _files(tmp_path / "synthetic")
    write_synthetic_set(images, names, tmp_path, per_image=per_image, seed=5)
    assert _files(tmp_path / "synthetic") == before
    write_synthetic_set(images, names, tmp_path, per_image=per_image, seed=6)
    assert _files(tmp_path / "synthetic") != before


def test_write_synthetic_set_rgb_single_image(tmp_path):
    img = textured(30, 3, 80, 112)
    summary = write_synthetic_set([img], ["only"], tmp_path, category="cat", per_image=2, seed=1, kinds=("stain", "foreign"))
    assert summary["per_kind"] == {"stain": 1, "foreign": 1}
    root = tmp_path / "cat"
    assert (root / "train" / "good" / "only.png").is_file()
    clean = read_image(root / "test" / "good" / "only.png", channels=3)
    assert np.array_equal(clean, img)
    for kind, k in (("stain", 0), ("foreign", 1)):
        bad = read_image(root / "test" / kind / f"only_{k}.png", channels=3)
        mask = read_mask(root / "ground_truth" / kind / f"only_{k}_mask.png", bad.shape)
        assert mask.any() and np.array_equal(mask, changed(bad, clean))


def test_write_synthetic_set_rejects_bad_input(tmp_path):
    imgs = [IMAGES["gray"]]
    with pytest.raises(ConfigError, match="unknown"):
        write_synthetic_set(imgs, ["a"], tmp_path, kinds=("scratch", "dent"))
    with pytest.raises(ConfigError, match="per_image"):
        write_synthetic_set(imgs, ["a"], tmp_path, per_image=0)
    with pytest.raises(ConfigError, match="no images"):
        write_synthetic_set([], [], tmp_path)
    with pytest.raises(ConfigError, match="names"):
        write_synthetic_set(imgs, ["a", "b"], tmp_path)
    with pytest.raises(ConfigError, match="unique"):
        write_synthetic_set(imgs * 2, ["a", "a"], tmp_path)
    with pytest.raises(DataError, match="at least 64 px"):
        write_synthetic_set([np.zeros((48, 48, 1), np.float32)], ["a"], tmp_path)
    with pytest.raises(DataError, match="channels"):
        write_synthetic_set([IMAGES["gray"], IMAGES["rgb"]], ["a", "b"], tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written before the checks pass
    (tmp_path / "synthetic").mkdir()
    (tmp_path / "synthetic" / "mine.txt").write_text("user data")
    with pytest.raises(DataError, match="not empty"):
        write_synthetic_set(imgs, ["a"], tmp_path)
    assert (tmp_path / "synthetic" / "mine.txt").read_text() == "user data"
