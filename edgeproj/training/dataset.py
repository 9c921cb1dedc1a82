"""Training samples: normal images preprocessed once, then deterministic random patches per index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from edgeproj.data.images import read_image
from edgeproj.preprocess import Preprocess, prepare, random_patch, to_patches


def load_resized(paths: list[Path], pre: Preprocess) -> list[np.ndarray]:
    """Read and resize every training image once (HxWxC float32 at the preprocessing side)."""
    return [prepare(read_image(p, channels=pre.channels), pre) for p in paths]


class PatchDataset(Dataset):
    """Item i is a patch drawn with a generator seeded by (seed, i): the same under any worker count
    and after a resume, so training is deterministic under a seed."""

    def __init__(self, images: list[np.ndarray], pre: Preprocess, length: int, seed: int):
        self.images, self.pre, self.length, self.seed = images, pre, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> torch.Tensor:
        rng = np.random.default_rng((self.seed, i))
        img = self.images[int(rng.integers(len(self.images)))]
        return torch.from_numpy(random_patch(img, self.pre, rng))


def evaluation_patches(images: list[np.ndarray], pre: Preprocess) -> np.ndarray:
    """The patches inference sees for these images (tiles for textures, the image for objects)."""
    return np.concatenate([to_patches(img, pre)[0] for img in images])
