"""An MVTec-layout test set in memory: images, ground-truth masks, and their model tiles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeproj.data.images import read_image, read_mask
from edgeproj.data.mvtec import CategoryData, load_category
from edgeproj.preprocess import Preprocess, stitch, to_patches


@dataclass
class TestSet:
    """Test images with masks; `tiles` concatenates every image's model inputs in order."""

    category: CategoryData
    images: list[np.ndarray]
    masks: list[np.ndarray]
    kinds: list[str]
    paths: list[Path]
    tiles: np.ndarray
    origins: list[list[tuple[int, int]]]
    counts: list[int]
    pre: Preprocess

    @property
    def labels(self) -> np.ndarray:
        """Image labels: 1 for a defect image."""
        return np.array([k != "good" for k in self.kinds], dtype=bool)

    def stitch(self, tile_maps: np.ndarray) -> list[np.ndarray]:
        """Per-tile maps (P x h x w) -> one map per image at its original resolution."""
        out, start = [], 0
        for img, orig, n in zip(self.images, self.origins, self.counts):
            out.append(stitch(tile_maps[start : start + n], orig, self.pre, img.shape[:2]))
            start += n
        return out


def load_testset(root: Path, category: str, pre: Preprocess, limit: int | None = None) -> TestSet:
    """Read the test split of `category` (skipped files are counted in `category.skipped`)."""
    cat = load_category(Path(root), category, channels=pre.channels)
    if not cat.test:
        from edgeproj.errors import DataError

        raise DataError(f"category '{category}' under '{root}' has no usable test images (test/<kind>/*.png)")
    samples = cat.test if limit is None else cat.test[:limit]
    images, masks, kinds, paths, tiles, origins, counts = [], [], [], [], [], [], []
    for s in samples:
        img = read_image(s.path, channels=pre.channels)
        mask = read_mask(s.mask_path, img.shape[:2]) if s.mask_path else np.zeros(img.shape[:2], bool)
        p, o = to_patches(img, pre)
        images.append(img)
        masks.append(mask)
        kinds.append(s.kind)
        paths.append(s.path)
        tiles.append(p)
        origins.append(o)
        counts.append(len(p))
    kinds_set = set(kinds)
    if "good" not in kinds_set or kinds_set == {"good"}:
        from edgeproj.errors import DataError

        raise DataError(
            f"evaluating '{category}' needs good and defect test images (found kinds {sorted(kinds_set)}); "
            "AUROC is undefined otherwise: raise --limit or check the test folders"
        )
    return TestSet(cat, images, masks, kinds, paths, np.concatenate(tiles), origins, counts, pre)
