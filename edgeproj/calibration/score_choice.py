"""Choosing the image score for the user's line: each candidate (IMAGE_SCORES) is ranked by how well it
separates synthetic defects from held-out normal images of the user's own parts.

The image score decides OK/NG on the line, and which score works depends on the part: the smoothed map
maximum was chosen on the demo's procedural data and does not carry over to real textures. Calibration
therefore draws CHOICE_PER_IMAGE synthetic defects (edgeproj.data.synthetic, kinds in turn) on every
held-out normal image, projects them and the clean images, and takes the candidate with the highest AUROC
between the two sets. Held-out images rather than calibration images: the image threshold is set on the
calibration images, and a choice made on them would favour the score that fits them best. On a texture
line the candidates are the ones that include the texture check (eligible, TEXTURE_RULE).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgeproj.metrics import roc_auc
from edgeproj.runtime.manifest import IMAGE_SCORE_SPECS, IMAGE_SCORES, TEXTURE_SUFFIX

if TYPE_CHECKING:  # the CLI reads CHOICE_PER_IMAGE for its help: no OpenCV (runtime.scoring) at its import
    from edgeproj.runtime.scoring import MapNorm

# Synthetic defects per held-out image. Measured on three real photograph sets (docs/method.md, "On real
# photographs"; benchmarks/synthetic_choice.py, 20 draws of k defects on each of 50 held-out images): the
# real AUROC of the candidate picked, median over the sets, k=1 0.892, k=2 0.895, k=4 0.888, k=6 0.888;
# the rank correlation of synthetic and real AUROCs, mean, 0.56 / 0.65 / 0.61 / 0.69. Two: the best pick
# and nearly the best correlation; each defect per image costs one more projection of the held-out set.
CHOICE_PER_IMAGE = 2
# Fewer held-out images than this cannot rank the candidates (an AUROC over 4 x 4 pairs moves by 1/16).
MIN_PAIRS = 8
# Candidates within this AUROC of the best are ties (float rounding): the one listed first in IMAGE_SCORES
# (the simpler) wins. Not wider: on a slab photograph every candidate lay within 0.03 of the others on the
# synthetic defects, and a 0.005 tie handed the choice to map_max where the best synthetic candidate
# (edge_max_smoothed) was also the better one on the real defects (0.784 against 0.773).
TIE = 0.001
RULE = (
    f"the candidate with the highest AUROC between held-out normal images and the same images with synthetic "
    f"defects drawn on them (defects_per_image each, the kinds in turn); within {TIE} of the best, the first in {', '.join(IMAGE_SCORES)}"
)
# On a texture line only the scores that include the texture check (*_tex) are eligible. A projection map
# misses what the autoencoder reconstructs easily: with the projection alone, bundles of four real texture
# photographs judged a flat 30 x 30 px patch and a 60 x 60 px blur OK on every one of four good frames
# each (32 of 32 damaged frames OK). The check cost weave's contaminations 0.004 image AUROC and gained
# slab 0.16, granite 0.12 (docs/method.md, "On real photographs"). An object line's local contrast
# depends on the position in the frame, which the texture statistics do not model: every candidate is
# eligible there.
TEXTURE_RULE = "texture line: only the candidates with the texture check (*_tex) are eligible"
# Below this synthetic AUROC of the chosen score, calibrate warns (and inspect repeats it) that defects may
# pass as OK. Measured on four real photograph sets (docs/method.md): the chosen score's synthetic AUROC was
# 0.755 (slab), 0.741 (wood), 0.693 (weave), where the real contaminations' image AUROC was 0.937 / 0.972 /
# 0.973, and 0.565 on granite, where it was 0.588 and the calibrated threshold found 18% of them.
WEAK_SEPARATION = 0.6


def separation_warning(kind: str, auroc: float) -> str | None:
    """A warning when the chosen score hardly separates synthetic defects from held-out good parts (AUROC
    below WEAK_SEPARATION, or NaN), else None: a weak line reports defective parts as good."""
    if np.isfinite(auroc) and auroc >= WEAK_SEPARATION:
        return None
    return (
        f"the image score {kind} separates synthetic defects from the held-out good parts at AUROC {auroc:.3f} "
        f"(chance 0.5, warned below {WEAK_SEPARATION}): defective parts may pass as OK on this line; measure it on "
        "labelled defects (`edgeproj evaluate`) before trusting its verdicts, and train on images that cover the "
        "good parts' whole variation"
    )


def kept(current: str, mode: str) -> str:
    """The score a line keeps when no choice can be made (too few held-out images): the bundle's, with
    the texture check on a texture line."""
    if mode == "texture" and not IMAGE_SCORE_SPECS[current][2]:
        return current + TEXTURE_SUFFIX
    return current


def eligible(mode: str) -> tuple[str, ...]:
    """The candidates the choice may pick for a line in preprocessing `mode` (texture or object)."""
    if mode == "texture":
        return tuple(k for k in IMAGE_SCORES if IMAGE_SCORE_SPECS[k][2])
    return IMAGE_SCORES


def synthetic_defects(images: list[np.ndarray], seed: int, per_image: int = 1) -> list[tuple[int, object]]:
    """(image index, SyntheticDefect): `per_image` defects per image, the kinds in turn, foreign patches cut
    from the other images."""
    from edgeproj.data.synthetic import KINDS, inject
    from edgeproj.errors import DataError

    rng = np.random.default_rng(seed)
    out = []
    for i, img in enumerate(images):
        donors = [images[j] for j in range(len(images)) if j != i][:4]
        for n in range(per_image):
            # A flat or saturated image cannot show some kinds (a blur or a scratch changes nothing): the
            # next kind is tried, and an image that shows none is left out (the caller needs MIN_PAIRS).
            first = i * per_image + n
            for k in range(len(KINDS)):
                try:
                    out.append((i, inject(img, KINDS[(first + k) % len(KINDS)], rng, donors=donors)))
                    break
                except DataError:
                    continue
    return out


def candidate_figures(
    normal_maps: list[np.ndarray],
    normal_images: list[np.ndarray],
    defect_maps: list[np.ndarray],
    defect_images: list[np.ndarray],
    norm: MapNorm,
) -> dict[str, float]:
    """AUROC of every candidate image score, synthetic defects against normal images."""
    from edgeproj.runtime.scoring import image_scores

    labels = np.r_[np.zeros(len(normal_maps)), np.ones(len(defect_maps))].astype(bool)
    per_map = [
        image_scores(m, IMAGE_SCORES, img, norm) for m, img in zip(normal_maps + defect_maps, normal_images + defect_images)
    ]
    out = {}
    for kind in IMAGE_SCORES:
        scores = np.asarray([s[kind] for s in per_map], np.float64)
        # A diverged map (NaN) would rank as the most anomalous and flatter the candidate: it cannot win.
        out[kind] = float(roc_auc(labels, scores)) if np.isfinite(scores).all() else float("nan")
    return out


def pixel_figures(defect_maps: list[np.ndarray], defects: list, norm: MapNorm) -> dict[str, float]:
    """Pixel AUROC on the synthetic defects' masks of the projection map and of the map fused with the
    texture check (scoring.fused_pixel_map, where calibration measured its statistics): what the texture
    check adds to the localization on this line. Recorded, not chosen by: the pixel map follows the image
    score, so that what the texture check finds is outlined too. NaN where a map is not finite."""
    from edgeproj.runtime.scoring import fused_pixel_map

    labels = np.concatenate([d.mask.ravel() for d in defects])
    maps = {"projection": defect_maps}
    if norm.texture is not None and norm.texture.pixel_z is not None:
        maps["fused"] = [fused_pixel_map(m, d.image, norm) for m, d in zip(defect_maps, defects)]
    out = {}
    for name, ms in maps.items():
        v = np.concatenate([m.ravel() for m in ms])
        out[name] = float(roc_auc(labels, v)) if np.isfinite(v).all() else float("nan")
    return out


def choose(figures: dict[str, float], candidates: tuple[str, ...] = IMAGE_SCORES) -> str:
    """The chosen candidate under RULE among `candidates` (NaN figures never win)."""
    finite = {k: v for k, v in figures.items() if k in candidates and np.isfinite(v)}
    if not finite:
        raise ValueError("no candidate image score gave a finite AUROC")
    best = max(finite.values())
    return next(k for k in IMAGE_SCORES if k in finite and finite[k] >= best - TIE)
