"""The texture check (edgeproj.runtime.texture) and the *_tex image scores that fuse it with the projection."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from edgeproj.errors import ConfigError
from edgeproj.runtime.manifest import IMAGE_SCORE_SPECS, IMAGE_SCORES, TEXTURE_SUFFIX
from edgeproj.runtime.scoring import MapNorm, Scorer, available, image_score, raw_counterpart
from edgeproj.runtime.texture import TEXTURE_EPS, TextureStats, border_bins, local_contrast, log_contrast


def _grain(seed: int, size: int = 64) -> np.ndarray:
    """A stationary grainy texture (a stand-in for a real surface), H x W x 1 in [0, 1]."""
    rng = np.random.default_rng(seed)
    return np.clip(0.5 + gaussian_filter(rng.normal(0, 0.4, (size, size)), 1.0), 0, 1)[..., None].astype(np.float32)


def _maps(images, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(0, 0.05, im.shape[:2]).astype(np.float32) for im in images]


@pytest.fixture(scope="module")
def norm():
    imgs = [_grain(i) for i in range(8)]
    return MapNorm.fit(_maps(imgs), imgs)


def test_local_contrast_matches_a_reference_standard_deviation():
    img = _grain(1)[..., 0].astype(np.float64)
    mu = gaussian_filter(img, 2.0, mode="reflect", truncate=3.0)
    ref = np.sqrt(np.maximum(gaussian_filter(img * img, 2.0, mode="reflect", truncate=3.0) - mu * mu, 0))
    ours = local_contrast(img.astype(np.float32), 2.0)
    inner = border_bins(img.shape) == 4
    assert np.abs(ours - ref)[inner].max() < 2e-3
    # RGB: the channel mean's contrast; a flat image: log of the epsilon, finite.
    rgb = np.repeat(img[..., None], 3, axis=2).astype(np.float32)
    assert np.allclose(local_contrast(rgb, 2.0), ours, atol=1e-6)
    assert np.allclose(log_contrast(np.full((16, 16), 0.3, np.float32)), np.log(TEXTURE_EPS), atol=1e-3)


def test_texture_statistics_are_the_normal_images_own(norm):
    imgs = [_grain(i) for i in range(8)]
    t = norm.texture
    v = np.concatenate([log_contrast(im).ravel() for im in imgs])
    b = np.concatenate([border_bins(im.shape[:2]).ravel() for im in imgs])
    for i in range(len(t.mean)):
        assert t.mean[i] == pytest.approx(v[b == i].mean(), rel=1e-6)
        assert t.spread[i] == pytest.approx(v[b == i].std(), rel=1e-5)
    scores = np.array([t.score(im) for im in imgs])
    assert t.score_mean == pytest.approx(scores.mean()) and t.score_spread == pytest.approx(scores.std())
    # Every projection score the *_tex kinds fuse with has its normal scale, measured with the same norm.
    base = [k for k, spec in IMAGE_SCORE_SPECS.items() if not spec[2]]
    assert set(t.fusion) == set(base)
    s = [image_score(m, "edge_max_smoothed", im, norm) for m, im in zip(_maps(imgs), imgs)]
    assert t.fusion["edge_max_smoothed"] == pytest.approx((np.mean(s), np.std(s)))


@pytest.mark.parametrize("kind", ["flat", "blur", "speck"])
def test_a_patch_without_the_normal_texture_is_found_where_the_map_sees_nothing(norm, kind):
    """A smooth patch (a filled or worn area), a blurred one, a high-contrast speck: the map (all zero:
    the autoencoder reconstructs it) has no evidence; the texture check has, and the fused score rises."""
    good = _grain(100)
    bad = good.copy()
    if kind == "flat":
        bad[20:40, 20:40] = 0.5
    elif kind == "blur":
        bad[20:40, 20:40, 0] = gaussian_filter(good[..., 0], 3)[20:40, 20:40]
    else:
        bad[30:34, 30:34] = np.where(np.indices((4, 4)).sum(0) % 2, 1.0, 0.0)[..., None]
    amap = np.zeros(good.shape[:2], np.float32)
    assert image_score(amap, "norm_max", bad, norm) == image_score(amap, "norm_max", good, norm)
    z_good, z_bad = norm.texture.score(good), norm.texture.score(bad)
    assert z_bad > z_good + 2
    assert image_score(amap, "norm_max_tex", bad, norm) > image_score(amap, "norm_max_tex", good, norm) + 1


def test_the_fused_score_is_the_larger_of_the_two_normal_scales(norm):
    t = norm.texture
    img = _grain(101)
    amap = _maps([img], seed=5)[0]
    for kind in ("map_max", "norm_max_smoothed8"):
        m, s = t.fusion[kind]
        zp = (image_score(amap, kind, img, norm) - m) / s
        zt = (t.score(img) - t.score_mean) / t.score_spread
        assert image_score(amap, kind + TEXTURE_SUFFIX, img, norm) == pytest.approx(max(zp, zt))
    # A projection that sees a defect decides alone, however normal the texture.
    hot = amap.copy()
    hot[10:14, 10:14] = 0.9
    m, s = t.fusion["map_max"]
    assert image_score(hot, "map_max_tex", img, norm) == pytest.approx((0.9 - m) / s)


def test_nan_in_the_map_never_passes_through_the_texture_check(norm):
    amap = np.zeros((64, 64), np.float32)
    amap[5, 5] = np.nan
    for kind in IMAGE_SCORES:
        assert np.isnan(image_score(amap, kind, _grain(3), norm)), kind


def test_texture_kinds_need_the_texture_statistics(norm):
    amap = np.zeros((64, 64), np.float32)
    old = MapNorm.from_dict({k: v for k, v in norm.to_dict().items() if k != "texture"})  # calibrated before
    assert old.texture is None and available("norm_max", old) and not available("norm_max_tex", old)
    assert not available("map_max_tex", None) and available("map_max", None)
    with pytest.raises(ConfigError, match="texture statistics"):
        image_score(amap, "norm_max_tex", _grain(3), old)
    with pytest.raises(ConfigError, match="texture statistics"):
        image_score(amap, "map_max_tex")
    with pytest.raises(ConfigError, match="lacks"):
        Scorer("map_max_smoothed_tex", old)
    assert raw_counterpart("norm_max_smoothed8_tex") == "map_max_smoothed8"
    assert raw_counterpart("map_max_tex") == "map_max"


def test_texture_statistics_round_trip_through_the_manifest(norm):
    again = MapNorm.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert again == norm
    img, amap = _grain(7), _maps([_grain(7)], 9)[0]
    assert image_score(amap, "edge_max_tex", img, again) == image_score(amap, "edge_max_tex", img, norm)


def _texture_dict(norm, **change) -> dict:
    return norm.to_dict() | {"texture": norm.texture.to_dict() | change}


@pytest.mark.parametrize(
    "change",
    [
        {"mean": [0.0] * 4},
        {"spread": [1, 1, 0, 1, 1]},
        {"mean": [0, 0, float("nan"), 0, 0]},
        {"score_spread": -1},
        {"fusion": {"map_max": [0.1, 0.0]}},
        {"fusion": {"map_max": [0.1]}},
        {"sigma": 0},
        {"border_edges": [2, 2, 8, 16]},
        {"mean": "zeros"},
        {"frame_hw": [64]},
        {"frame_hw": [64, 0]},
        {"frame_hw": [64.5, 64]},
    ],
)
def test_a_malformed_texture_section_is_refused(norm, change):
    with pytest.raises(ConfigError, match="map_norm.texture"):
        MapNorm.from_dict(_texture_dict(norm, **change))


def test_a_texture_section_without_a_field_is_refused(norm):
    d = norm.to_dict()
    del d["texture"]["score_mean"]
    with pytest.raises(ConfigError, match="map_norm.texture is malformed"):
        MapNorm.from_dict(d)


def test_a_projection_score_without_its_normal_scale_is_refused(norm):
    t = TextureStats(norm.texture.mean, norm.texture.spread, (64, 64), 1.0, 1.0, {})
    with pytest.raises(ConfigError, match="no normal scale"):
        t.combine("map_max", 0.1, t.score(_grain(1)))


def test_non_finite_normal_scores_stop_the_fit():
    imgs = [_grain(i) for i in range(4)]
    with pytest.raises(ConfigError, match="not finite"):
        TextureStats.fit(imgs).scaled(imgs, {"map_max": [0.1, float("nan"), 0.2, 0.1]})
    with pytest.raises(ConfigError, match="not finite"):
        TextureStats.fit(imgs).scaled(imgs, {"map_max": []})


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_frame_never_gets_a_finite_fused_score(norm, bad):
    """A NaN or Inf pixel with a finite map: the texture score is NaN, and so is the fused score (FAULT),
    never the projection's low one."""
    img = _grain(11)
    img[10:12, 10:12] = bad
    amap = _maps([img], 3)[0]
    assert np.isnan(norm.texture.score(img))
    for kind in ("map_max_tex", "edge_max_smoothed_tex"):
        assert np.isnan(image_score(amap, kind, img, norm)), kind


def test_a_fusion_section_without_the_chosen_base_is_refused_before_any_work(norm):
    d = _texture_dict(norm, fusion={"map_max": [0.01, 0.002]})
    partial = MapNorm.from_dict(d)
    assert available("map_max_tex", partial) and not available("edge_max_tex", partial)
    with pytest.raises(ConfigError, match="lacks"):
        Scorer("edge_max_tex", partial)


def test_another_frame_size_is_judged_at_the_calibration_size(norm):
    """The window is in pixels: a camera at twice the resolution sees every texture twice as smooth. The
    frame is resized to the calibration size first, so a good frame at 2x stays near its own score; the
    same statistics applied at 2x without the resize would call it far off."""
    from dataclasses import replace

    small = _grain(12)
    upscaled = cv2.resize(small[..., 0], (128, 128), interpolation=cv2.INTER_LINEAR)[..., None]
    assert norm.texture.frame_hw == (64, 64) and norm.texture.zmap(upscaled).shape == (64, 64)
    assert norm.texture.score(upscaled) < norm.texture.score(small) + 2
    unresized = replace(norm.texture, frame_hw=(128, 128))
    assert unresized.score(upscaled) > norm.texture.score(small) + 4


def test_small_calibration_images_still_give_texture_statistics():
    """Under 33 px a side some border bands hold no pixel: they take all pixels' statistics."""
    imgs = [_grain(i, size=24) for i in range(4)]
    t = TextureStats.fit(imgs)
    v = np.concatenate([log_contrast(im).ravel() for im in imgs])
    assert t.mean[-1] == pytest.approx(v.mean(), rel=1e-6) and all(s > 0 for s in t.spread)
    assert t.frame_hw == (24, 24)


@pytest.mark.parametrize("section", [{}, [], 0, "texture"])
def test_an_empty_or_wrong_texture_section_is_malformed_not_absent(norm, section):
    with pytest.raises(ConfigError, match="map_norm.texture"):
        MapNorm.from_dict(norm.to_dict() | {"texture": section})


def test_the_window_is_recorded_and_used():
    imgs = [_grain(i) for i in range(4)]
    wide = TextureStats.fit(imgs, 3.0)
    assert wide.sigma == 3.0 and TextureStats.fit(imgs).sigma == 2.0
    v = np.concatenate([log_contrast(im, 3.0).ravel() for im in imgs])
    b = np.concatenate([border_bins(im.shape[:2]).ravel() for im in imgs])
    assert wide.mean[4] == pytest.approx(v[b == 4].mean(), rel=1e-6)
    assert TextureStats.from_dict(wide.to_dict()) == wide


def test_all_scores_at_once_are_the_scores_one_by_one(norm):
    """image_scores shares each projection score and the texture score between the kinds that use them:
    every value equals image_score's, NaN maps included."""
    from edgeproj.runtime.scoring import image_scores

    img = _grain(21)
    for amap in (_maps([img], 4)[0], np.full((64, 64), np.nan, np.float32)):
        together = image_scores(amap, IMAGE_SCORES, img, norm)
        assert list(together) == list(IMAGE_SCORES)
        for kind in IMAGE_SCORES:
            alone = image_score(amap, kind, img, norm)
            assert together[kind] == alone or (np.isnan(together[kind]) and np.isnan(alone)), kind


# ------------------------------------------------------------------ the fused pixel map


def test_the_pixel_statistics_are_the_normal_z_pixels_own(norm):
    """pixel_z: the mean and spread of the normal images' |z| pixels."""
    imgs = [_grain(i) for i in range(8)]
    v = np.concatenate([norm.texture.zmap(im).ravel() for im in imgs]).astype(np.float64)
    assert norm.texture.pixel_z == pytest.approx((v.mean(), v.std()), rel=1e-5)


def test_the_fused_pixel_map_is_the_larger_of_the_two_standardized_maps(norm):
    from edgeproj.runtime.scoring import fused_pixel_map

    t = norm.texture
    img = _grain(30)
    amap = _maps([img], 6)[0]
    m, s = t.pixel_z
    expected = np.maximum(norm.apply(amap, img, contrast=False), (t.zmap(img) - m) / s)
    assert np.allclose(fused_pixel_map(amap, img, norm), expected, rtol=1e-5, atol=1e-5)


def test_a_flat_patch_shows_in_the_fused_pixel_map_only(norm):
    """A flat patch the autoencoder reconstructs (the map sees nothing there): the projection map cannot
    localize it, the fused map does, several normal standard deviations high inside the patch."""
    from edgeproj.metrics import roc_auc
    from edgeproj.runtime.scoring import pixel_map

    img = _grain(31)
    img[20:40, 20:40] = 0.5
    mask = np.zeros((64, 64), bool)
    mask[22:38, 22:38] = True
    amap = _maps([img], 7)[0]
    fused = pixel_map(amap, "map_max_tex", img, norm)
    assert roc_auc(mask.ravel(), amap.ravel()) < 0.6
    assert roc_auc(mask.ravel(), fused.ravel()) > 0.95
    assert np.median(fused[mask]) > 3


def test_the_pixel_map_follows_the_image_score(norm):
    """A score without the texture check keeps the projection map (the same array); a *_tex score of a bundle
    calibrated before the pixel statistics keeps it too: its pixel threshold was set on that map."""
    from dataclasses import replace

    from edgeproj.runtime.scoring import fuses_pixels, pixel_map

    img = _grain(32)
    amap = _maps([img], 8)[0]
    assert pixel_map(amap, "norm_max", img, norm) is amap and not fuses_pixels("norm_max", norm)
    assert fuses_pixels("map_max_tex", norm) and pixel_map(amap, "map_max_tex", img, norm) is not amap
    older = replace(norm, texture=replace(norm.texture, pixel_z=None))
    assert MapNorm.from_dict(older.to_dict()) == older and "pixel_z" not in older.to_dict()["texture"]
    assert pixel_map(amap, "map_max_tex", img, older) is amap and not fuses_pixels("map_max_tex", older)
    assert pixel_map(amap, "map_max", img, None) is amap
    with pytest.raises(ConfigError, match="pixel statistics"):
        older.texture.standard_zmap(img, (64, 64))


@pytest.mark.parametrize("bad", ["map", "frame"])
def test_nan_stays_nan_in_the_fused_pixel_map(norm, bad):
    from edgeproj.runtime.scoring import fused_pixel_map

    img, amap = _grain(33), _maps([_grain(33)], 9)[0]
    if bad == "map":
        amap[4, 4] = np.nan
    else:
        img[4, 4] = np.inf
    assert np.isnan(fused_pixel_map(amap, img, norm)[4, 4])


def test_the_fused_pixel_map_has_the_maps_size_for_another_frame_size(norm):
    big = cv2.resize(_grain(34)[..., 0], (128, 96), interpolation=cv2.INTER_LINEAR)[..., None]
    assert norm.texture.standard_zmap(big, (96, 128)).shape == (96, 128)


@pytest.mark.parametrize("stats", [[0.1], [0.1, 0.0], [0.1, float("nan")], [1, -2], "ab"])
def test_malformed_pixel_statistics_are_refused(norm, stats):
    with pytest.raises(ConfigError, match="map_norm.texture"):
        MapNorm.from_dict(_texture_dict(norm, pixel_z=stats))


def test_score_and_pixel_map_together_are_each_alone(norm):
    """The line measures the frame's |z| map once for both: the same score and map as one by one, NaN included."""
    from edgeproj.runtime.scoring import pixel_map, score_and_pixel_map

    img = _grain(35)
    for amap in (_maps([img], 10)[0], np.full((64, 64), np.nan, np.float32)):
        for kind in ("map_max", "edge_max_smoothed_tex", "norm_max_tex"):
            score, pmap = score_and_pixel_map(amap, kind, img, norm)
            alone = image_score(amap, kind, img, norm)
            assert score == alone or (np.isnan(score) and np.isnan(alone)), kind
            assert np.array_equal(pmap, pixel_map(amap, kind, img, norm), equal_nan=True), kind
