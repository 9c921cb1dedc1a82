"""The MVTec AD folder layout, read as it is on disk.

    ROOT/CATEGORY/train/good/*.png
    ROOT/CATEGORY/test/<kind>/*.png              (kind "good" or a defect kind)
    ROOT/CATEGORY/ground_truth/<kind>/<stem>_mask.png

Broken individual files become named skips rather than errors, so that one bad image does not stop a run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeproj.data.images import list_images, read_image, read_mask
from edgeproj.errors import DataError

GOOD = "good"


@dataclass(frozen=True)
class TestSample:
    """One test image with its defect kind and, for a defect, its ground-truth mask."""

    __test__ = False  # not a pytest test class

    path: Path
    kind: str
    mask_path: Path | None = None

    @property
    def is_anomalous(self) -> bool:
        """True for every kind except "good"."""
        return self.kind != GOOD


@dataclass(frozen=True)
class Skip:
    """A file left out, with the reason."""

    path: Path
    reason: str


@dataclass
class CategoryData:
    """The usable files of one category and the files skipped."""

    root: Path
    name: str
    train: list[Path]
    test: list[TestSample] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)

    def test_counts(self) -> dict[str, int]:
        """Number of usable test images per kind, sorted by kind."""
        counts: dict[str, int] = {}
        for s in self.test:
            counts[s.kind] = counts.get(s.kind, 0) + 1
        return dict(sorted(counts.items()))

    def summary(self) -> dict:
        """A JSON-ready summary: counts and the named skips."""
        return {
            "root": str(self.root),
            "category": self.name,
            "train": len(self.train),
            "test": self.test_counts(),
            "anomalous": sum(s.is_anomalous for s in self.test),
            "skipped": [{"path": str(s.path), "reason": s.reason} for s in self.skipped],
        }


def looks_like_mvtec(path: str | Path) -> bool:
    """True when ``path`` is an MVTec-style category folder (it has train/good)."""
    return (Path(path) / "train" / GOOD).is_dir()


def list_categories(root: str | Path) -> list[str]:
    """Names of the category folders under ``root`` (those with train/good), sorted.

    Raises:
        DataError: ``root`` is missing or not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; check the path")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and looks_like_mvtec(p))


def normal_images(path: str | Path) -> list[Path]:
    """Defect-free training images: a plain folder of images, or an MVTec category's train/good.

    Raises:
        DataError: missing or empty folder, or an MVTec root given where one category is needed.
    """
    path = Path(path)
    if looks_like_mvtec(path):
        return list_images(path / "train" / GOOD)
    try:
        return list_images(path)
    except DataError:
        cats = list_categories(path) if path.is_dir() else []
        if cats:
            raise DataError(f"{path} is an MVTec root with categories {', '.join(cats)}; pass one category folder") from None
        raise


def _check(path: Path, channels: int | None, mask_path: Path | None) -> str | None:
    """The reason to skip a sample, or None when its image (and mask) are usable."""
    try:
        img = read_image(path, channels)
        if mask_path is not None:
            read_mask(mask_path, img.shape)
    except DataError as exc:
        return str(exc)
    return None


def load_category(root: str | Path, category: str, check_images: bool = True, channels: int | None = None) -> CategoryData:
    """Load the file lists of one MVTec category.

    Args:
        root: Data set root (the folder holding category folders).
        category: Category folder name.
        check_images: Decode every image and mask to find broken ones (else only mask presence is checked).
        channels: Expected channel count (1 or 3) for the check; None accepts both.

    Returns:
        CategoryData; defect images without a mask, masks of the wrong size, unreadable or truncated
        images and images with the wrong channel count are listed in ``skipped`` with the reason.

    Raises:
        DataError: missing root, category or train/good folder, or no usable training image.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; check the path")
    cat_dir = root / category
    if not cat_dir.is_dir():
        found = list_categories(root)
        hint = f"categories found: {', '.join(found)}" if found else "no categories found there"
        raise DataError(f"category '{category}' not found under {root} ({hint})")
    train_dir = cat_dir / "train" / GOOD
    if not train_dir.is_dir():
        raise DataError(f"{cat_dir} has no train/good folder; an MVTec category needs train/good/*.png")
    train_files = list_images(train_dir)

    train: list[Path] = []
    skipped: list[Skip] = []
    for p in train_files:
        reason = _check(p, channels, None) if check_images else None
        if reason:
            skipped.append(Skip(p, reason))
        else:
            train.append(p)
    if not train:
        raise DataError(f"no usable training image in {train_dir} (all {len(train_files)} skipped); fix the images")

    test: list[TestSample] = []
    test_dir = cat_dir / "test"
    kinds = sorted(p.name for p in test_dir.iterdir() if p.is_dir()) if test_dir.is_dir() else []
    for kind in kinds:
        try:
            files = list_images(test_dir / kind)
        except DataError:
            continue  # an empty kind folder holds nothing to test
        for p in files:
            mask_path = None
            if kind != GOOD:
                mask_path = cat_dir / "ground_truth" / kind / f"{p.stem}_mask.png"
                if not mask_path.is_file():
                    skipped.append(Skip(p, f"no mask: expected {mask_path}"))
                    continue
            reason = _check(p, channels, mask_path) if check_images else None
            if reason:
                skipped.append(Skip(p, reason))
            else:
                test.append(TestSample(p, kind, mask_path))
    return CategoryData(root=root, name=category, train=train, test=test, skipped=skipped)
