"""Data layer: image I/O, the MVTec reader, the procedural demo set and the `data` CLI verbs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from edgeproj.data import (
    list_categories,
    list_images,
    load_category,
    looks_like_mvtec,
    normal_images,
    read_image,
    read_mask,
    write_png,
)
from edgeproj.data.demo import DEFECT_KINDS, NOISE_SIGMA, make_demo, render
from edgeproj.errors import ConfigError, DataError

SMALL = dict(size=128, n_train=3, n_test_good=2, n_test_per_defect=2)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    make_demo(root, seed=0, **SMALL)
    return root


@pytest.fixture
def cat_copy(demo_root, tmp_path) -> Path:
    """A private copy of the stone category, for tests that break files."""
    shutil.copytree(demo_root / "stone", tmp_path / "stone")
    return tmp_path


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _hf_sigma(img: np.ndarray, where: np.ndarray | None = None) -> float:
    """Robust std of the high-frequency residual (image minus a gaussian blur)."""
    f = img.astype(np.float64) / 255.0
    r = f - cv2.GaussianBlur(f, (0, 0), 1.0)
    r = r[where] if where is not None else r.ravel()
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


# ---------------------------------------------------------------- demo generator


def test_demo_is_deterministic(demo_root, tmp_path):
    make_demo(tmp_path / "again", seed=0, **SMALL)
    assert _files(tmp_path / "again") == _files(demo_root)
    make_demo(tmp_path / "other", seed=1, **SMALL)
    a, b = _files(demo_root), _files(tmp_path / "other")
    assert a.keys() == b.keys()
    pngs = [k for k in a if k.endswith(".png") and "ground_truth" not in k]
    assert all(a[k] != b[k] for k in pngs)


def test_demo_layout_and_masks(demo_root):
    assert list_categories(demo_root) == ["grid", "stone"]
    for cat in ("grid", "stone"):
        d = demo_root / cat
        assert len(list_images(d / "train" / "good")) == 3
        assert len(list_images(d / "test" / "good")) == 2
        assert not (d / "ground_truth" / "good").exists()
        for kind in DEFECT_KINDS:
            imgs = list_images(d / "test" / kind)
            masks = list_images(d / "ground_truth" / kind)
            assert [p.stem + "_mask" for p in imgs] == [m.stem for m in masks]
            for p, m in zip(imgs, masks):
                img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
                mask = cv2.imread(str(m), cv2.IMREAD_UNCHANGED)
                assert img.dtype == np.uint8 and img.shape == (128, 128)
                assert mask.shape == img.shape and set(np.unique(mask)) <= {0, 255}
                frac = (mask > 0).mean()
                assert 0 < frac < 0.05, (p, frac)


@pytest.mark.parametrize("category", ["grid", "stone"])
@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_demo_defect_changes_match_mask(category, kind):
    for i in range(3):
        good = render(category, "good", [7, i], 128)
        bad = render(category, kind, [7, i], 128)
        changed = good.clean != bad.clean
        m = bad.mask
        assert m.any()
        assert changed[m].all()  # every masked pixel was changed
        if kind == "stain":  # soft edge: changed beyond the 0.3 opacity mask, but only nearby
            near = cv2.dilate(m.astype(np.uint8), np.ones((41, 41), np.uint8)).astype(bool)
            assert not (changed & ~near).any()
        else:
            assert not (changed & ~m).any()  # and nothing else
        # Moderate contrast, not saturated; identical sensor noise outside the defect.
        delta = np.abs(good.clean - bad.clean)[m].mean()
        assert 0.03 < delta < 0.4, delta
        assert ((bad.image == 0) | (bad.image == 255))[m].mean() < 0.05
        if kind != "stain":
            assert np.array_equal(good.image[~m], bad.image[~m])


def test_demo_noise_same_in_good_and_defect_images(demo_root):
    for cat in ("grid", "stone"):
        d = demo_root / cat
        good = [_hf_sigma(cv2.imread(str(p), 0)) for p in list_images(d / "test" / "good")]
        for kind in DEFECT_KINDS:
            for p in list_images(d / "test" / kind):
                s = _hf_sigma(cv2.imread(str(p), 0))
                assert 0.85 < s / np.mean(good) < 1.15, (p, s, good)
    # Inside a defect the sensor noise is there too: a residual of pure noise at the least.
    for cat in ("grid", "stone"):
        for kind in ("hole", "scratch", "patch"):
            for i in range(3):
                r = render(cat, kind, [3, i], 128)
                noise = r.image / 255.0 - r.clean
                assert abs(noise[r.mask].std() - NOISE_SIGMA) < 0.006
                inner = cv2.erode(r.mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
                if inner.sum() > 20:
                    assert _hf_sigma(r.image, inner) > 0.6 * NOISE_SIGMA


def test_demo_refuses_foreign_folder_and_bad_options(tmp_path):
    (tmp_path / "grid").mkdir()
    (tmp_path / "grid" / "mine.txt").write_text("user data")
    with pytest.raises(DataError, match="not empty"):
        make_demo(tmp_path, **SMALL)
    with pytest.raises(ConfigError):
        make_demo(tmp_path / "x", categories=("wood",))


def test_demo_rerun_replaces_its_own_output(tmp_path):
    make_demo(tmp_path, seed=0, size=64, n_train=4, n_test_good=1, n_test_per_defect=1, categories=("grid",))
    make_demo(tmp_path, seed=0, size=64, n_train=2, n_test_good=1, n_test_per_defect=1, categories=("grid",))
    assert len(list_images(tmp_path / "grid" / "train" / "good")) == 2


# ---------------------------------------------------------------- MVTec reader


def test_load_category_counts(demo_root):
    data = load_category(demo_root, "grid", channels=1)
    assert data.name == "grid" and len(data.train) == 3 and data.skipped == []
    assert data.test_counts() == {"good": 2, "hole": 2, "patch": 2, "scratch": 2, "stain": 2}
    for s in data.test:
        assert s.is_anomalous == (s.kind != "good")
        assert (s.mask_path is not None) == s.is_anomalous
    assert data.summary()["anomalous"] == 8


def test_normal_images_and_looks_like_mvtec(demo_root, tmp_path):
    assert looks_like_mvtec(demo_root / "grid") and not looks_like_mvtec(demo_root)
    assert normal_images(demo_root / "grid") == list_images(demo_root / "grid" / "train" / "good")
    plain = tmp_path / "plain"
    write_png(plain / "a.png", np.zeros((8, 8)))
    assert normal_images(plain) == [plain / "a.png"]
    with pytest.raises(DataError, match="pass one category"):
        normal_images(demo_root)


def test_load_category_missing_parts(tmp_path, cat_copy):
    with pytest.raises(DataError, match="does not exist"):
        load_category(tmp_path / "nope", "stone")
    with pytest.raises(DataError, match="categories found: stone"):
        load_category(cat_copy, "grid")
    for p in (cat_copy / "stone" / "train" / "good").iterdir():
        p.unlink()
    with pytest.raises(DataError, match="holds no images"):
        load_category(cat_copy, "stone")
    shutil.rmtree(cat_copy / "stone" / "train")
    with pytest.raises(DataError, match="train/good"):
        load_category(cat_copy, "stone")


def test_load_category_skips_broken_files(cat_copy):
    c = cat_copy / "stone"
    (c / "ground_truth" / "hole" / "000_mask.png").unlink()  # missing mask
    write_png(c / "ground_truth" / "scratch" / "000_mask.png", np.zeros((64, 64), bool))  # wrong size
    (c / "test" / "stain" / "000.png").write_bytes(b"not an image")  # unreadable
    data = (c / "test" / "patch" / "000.png").read_bytes()
    (c / "test" / "patch" / "000.png").write_bytes(data[: len(data) // 2])  # truncated
    write_png(c / "test" / "good" / "000.png", np.random.default_rng(0).random((128, 128, 3)))  # RGB
    res = load_category(cat_copy, "stone", channels=1)
    reasons = {str(s.path.relative_to(c)): s.reason for s in res.skipped}
    assert set(reasons) == {
        "test/hole/000.png",
        "test/scratch/000.png",
        "test/stain/000.png",
        "test/patch/000.png",
        "test/good/000.png",
    }
    assert "no mask" in reasons["test/hole/000.png"]
    assert "64x64" in reasons["test/scratch/000.png"] and "128x128" in reasons["test/scratch/000.png"]
    assert "cannot be decoded" in reasons["test/stain/000.png"]
    assert "truncated PNG" in reasons["test/patch/000.png"]
    assert "RGB but 1 channel" in reasons["test/good/000.png"]
    assert res.test_counts() == {"good": 1, "hole": 1, "patch": 1, "scratch": 1, "stain": 1}
    # Without channels, the RGB image is fine; without checks only the missing mask is found.
    assert len(load_category(cat_copy, "stone").skipped) == 4
    assert len(load_category(cat_copy, "stone", check_images=False).skipped) == 1


# ---------------------------------------------------------------- image I/O


def test_read_rgb_gray_alpha_and_16_bit(tmp_path):
    rgb = np.zeros((5, 7, 3), np.float32)
    rgb[..., 0] = 1.0  # pure red: checks the BGR -> RGB swap both ways
    img = read_image(write_png(tmp_path / "rgb.png", rgb))
    assert img.shape == (5, 7, 3) and img.dtype == np.float32 and np.allclose(img, rgb)

    gray = np.linspace(0, 1, 35, dtype=np.float32).reshape(5, 7)
    img = read_image(write_png(tmp_path / "g.png", gray), channels=1)
    assert img.shape == (5, 7, 1) and np.abs(img[..., 0] - gray).max() <= 0.5 / 255 + 1e-6

    rgba = np.dstack([rgb, np.full((5, 7), 0.5, np.float32)])
    assert read_image(write_png(tmp_path / "rgba.png", rgba)).shape == (5, 7, 3)

    g16 = (gray * 65535).astype(np.uint16)
    img = read_image(write_png(tmp_path / "g16.png", g16))
    assert np.allclose(img[..., 0], g16 / 65535.0, atol=1e-6)
    cv2.imwrite(str(tmp_path / "g16.tif"), g16)
    assert np.allclose(read_image(tmp_path / "g16.tif")[..., 0], g16 / 65535.0, atol=1e-6)

    cv2.imwrite(str(tmp_path / "g.jpg"), (gray * 255).astype(np.uint8))
    assert read_image(tmp_path / "g.jpg").shape == (5, 7, 1)
    cv2.imwrite(str(tmp_path / "g.bmp"), (gray * 255).astype(np.uint8))
    assert read_image(tmp_path / "g.bmp", channels=1).shape == (5, 7, 1)


def test_channel_rules(tmp_path):
    gray_as_rgb = np.repeat(np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5, 1), 3, axis=2)
    assert read_image(write_png(tmp_path / "ga.png", gray_as_rgb), channels=1).shape == (4, 5, 1)
    colour = np.random.default_rng(0).random((4, 5, 3))
    with pytest.raises(DataError, match="RGB but 1 channel"):
        read_image(write_png(tmp_path / "c.png", colour), channels=1)
    with pytest.raises(DataError, match="grayscale but 3 channels"):
        read_image(write_png(tmp_path / "g.png", np.zeros((4, 5))), channels=3)
    assert read_image(tmp_path / "c.png", channels=3).shape == (4, 5, 3)


def test_read_image_bad_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(DataError, match="cannot be decoded"):
        read_image(tmp_path / "junk.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        read_image(tmp_path / "empty.png")

    img = np.random.default_rng(1).random((64, 64))
    data = write_png(tmp_path / "ok.png", img).read_bytes()
    for cut in (len(data) - 12, len(data) // 2, 40):  # only IEND missing, mid-IDAT, mid-header
        (tmp_path / "t.png").write_bytes(data[:cut])
        with pytest.raises(DataError, match="truncated PNG"):
            read_image(tmp_path / "t.png")

    cv2.imwrite(str(tmp_path / "ok.jpg"), (img * 255).astype(np.uint8))
    jpg = (tmp_path / "ok.jpg").read_bytes()
    assert read_image(tmp_path / "ok.jpg").shape == (64, 64, 1)
    (tmp_path / "t.jpg").write_bytes(jpg[:-2])
    with pytest.raises(DataError, match="truncated JPEG"):
        read_image(tmp_path / "t.jpg")


def test_read_mask(tmp_path):
    m = np.zeros((6, 8), np.uint8)
    m[2:4, 3:5] = 255
    path = write_png(tmp_path / "m.png", m)
    out = read_mask(path, (6, 8, 1))
    assert out.dtype == bool and out.sum() == 4 and out[2, 3]
    with pytest.raises(DataError, match="8x6 but its image is 9x6"):
        read_mask(path, (6, 9))


def test_list_images(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        list_images(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"holds no images \(looked for \.png") as exc:
        list_images(tmp_path)
    assert str(tmp_path) in str(exc.value)
    write_png(tmp_path / "b.PNG", np.zeros((2, 2)))
    write_png(tmp_path / "a.png", np.zeros((2, 2)))
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.PNG"]


# ---------------------------------------------------------------- CLI


def _app():
    from edgeproj.cli.app import app

    return app


def test_cli_make_demo_json_and_check(tmp_path):
    runner = CliRunner()
    out = tmp_path / "d"
    args = ["data", "make-demo", str(out), "--seed", "3", "--size", "64", "--n-train", "2", "--json"]
    res = runner.invoke(_app(), args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["root"] == str(out) and summary["size"] == 64
    assert summary["categories"]["grid"]["train"] == 2
    assert set(summary["categories"]["stone"]["test"]) == {"good", *DEFECT_KINDS}

    (out / "grid" / "ground_truth" / "hole" / "000_mask.png").unlink()
    res = runner.invoke(_app(), ["data", "check", str(out), "--json"])
    assert res.exit_code == 0, res.output
    report = {c["category"]: c for c in json.loads(res.stdout)["categories"]}
    assert report["grid"]["train"] == 2 and len(report["grid"]["skipped"]) == 1
    assert report["stone"]["skipped"] == []

    res = runner.invoke(_app(), ["data", "check", str(out / "grid")])
    assert res.exit_code == 0 and "skipped 1" in res.output and "no mask" in res.output


def test_cli_check_missing_folder_is_one_line_error(tmp_path):
    res = CliRunner().invoke(_app(), ["data", "check", str(tmp_path / "missing")])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeproj: error:") and "does not exist" in lines[0]
    assert "Traceback" not in res.output


def test_cli_check_folder_without_categories(tmp_path):
    res = CliRunner().invoke(_app(), ["data", "check", str(tmp_path)])
    assert res.exit_code == 2 and "no MVTec category" in res.stderr


def test_data_layer_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, edgeproj.data, edgeproj.data.demo; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
