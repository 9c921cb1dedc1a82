"""Data layer: image/mask I/O, the MVTec AD layout and the procedural demo set (numpy + OpenCV only, no torch)."""

from edgeproj.data.images import IMAGE_EXTS, list_images, read_image, read_mask, write_png
from edgeproj.data.mvtec import (
    CategoryData,
    Skip,
    TestSample,
    list_categories,
    load_category,
    looks_like_mvtec,
    normal_images,
)

__all__ = [
    "IMAGE_EXTS",
    "CategoryData",
    "Skip",
    "TestSample",
    "list_categories",
    "list_images",
    "load_category",
    "looks_like_mvtec",
    "normal_images",
    "read_image",
    "read_mask",
    "write_png",
]
