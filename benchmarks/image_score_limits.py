#!/usr/bin/env python
"""What limits image AUROC on a real texture: where good images' map maxima lie, which defects are missed.

Projects a category's test images (and 40 + 40 training images: normal statistics, and synthetic defects
drawn on the others) through a bundle with its deployed settings, then reports
- image AUROC (map maximum) by defect size and by contrast of the defect (the photo_textures.py records);
- where good images' map maxima lie: within 8 px of the image border, near interior tile seams, against
  the share of the area those bands cover (before and after the border normalization);
- whether good crops reaching columns of the photograph no training crop covered score higher
  (photo_textures.py's crop positions): image AUROC against the good crops inside and past them;
- every IMAGE_SCORES candidate on the real defects and on the synthetic ones, with their Spearman
  rank correlation (does the synthetic check rank scores like real defects?).

    python benchmarks/image_score_limits.py BUNDLE PHOTOSET CATEGORY [--out report.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from photoset import add_photoset_args, crop_positions, inside_trained_columns, load_photoset, write_report


def main(argv=None) -> int:
    args = add_photoset_args(argparse.ArgumentParser(description=__doc__.split("\n")[0])).parse_args(argv)

    from scipy.stats import spearmanr

    from edgeproj.calibration.score_choice import CHOICE_PER_IMAGE, synthetic_defects
    from edgeproj.metrics import roc_auc
    from edgeproj.runtime.manifest import IMAGE_SCORES
    from edgeproj.runtime.projector import Projector
    from edgeproj.runtime.scoring import MapNorm, border_bins, image_scores

    m, ts, read = load_photoset(args)
    normals, bases = read(0, 40), read(40, 80)
    syn = [d for _, d in synthetic_defects(bases, seed=0, per_image=CHOICE_PER_IMAGE)]
    with Projector(m, batch=16) as proj:

        def maps(imgs):
            return [r.projection_map for r in proj.project(imgs, lean=True)]

        test_maps, normal_maps, syn_maps, base_maps = maps(ts.images), maps(normals), maps([d.image for d in syn]), maps(bases)
    norm = MapNorm.fit(normal_maps, normals)
    lab = ts.labels
    good = [mp for mp, lb in zip(test_maps, lab) if not lb]
    good_imgs = [im for im, lb in zip(ts.images, lab) if not lb]
    bad = [mp for mp, lb in zip(test_maps, lab) if lb]
    sg = np.array([mp.max() for mp in good])
    sb = np.array([mp.max() for mp in bad])

    def auc(sel: np.ndarray) -> float:
        return float(roc_auc(np.r_[np.zeros(len(sg)), np.ones(int(sel.sum()))].astype(bool), np.r_[sg, sb[sel]]))

    report: dict = {"bundle": str(args.bundle), "category": args.category, "image_score": m.projection.image_score}
    meta_path = args.root / args.category / "dataset.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        recs = meta["test_defect"]
        across = np.array([r["across_px"] for r in recs])
        change = np.array([r["mean_abs_change_in_mask"] for r in recs])
        pos = crop_positions(args.root, args.category, ts.paths)
        if pos is not None:
            # Good crops reaching columns of the photograph that no training crop covered: does the map
            # flag new normal texture (the photograph's large-scale variation) as anomalous?
            x, train_x, seen = np.array(pos[0])[~lab], list(pos[1]), inside_trained_columns(pos)[~lab]
            labels = lambda n: np.r_[np.zeros(n), np.ones(len(sb))].astype(bool)  # noqa: E731
            tg = np.array([norm.texture.score(im) for im in good_imgs])
            tb = np.array([norm.texture.score(im) for im, lb in zip(ts.images, lab) if lb])
            report["good_crop_position"] = {
                "train_x_range": train_x,
                "corr_map_max_vs_x": float(np.corrcoef(sg, x)[0, 1]),
                "map_max_auroc_vs_goods_in_trained_columns": float(roc_auc(labels(int(seen.sum())), np.r_[sg[seen], sb])),
                "map_max_auroc_vs_goods_past_them": float(roc_auc(labels(int((~seen).sum())), np.r_[sg[~seen], sb])),
                "texture_score_auroc_vs_goods_in_trained_columns": float(roc_auc(labels(int(seen.sum())), np.r_[tg[seen], tb])),
                "texture_score_auroc_vs_goods_past_them": float(roc_auc(labels(int((~seen).sum())), np.r_[tg[~seen], tb])),
                "goods_in_trained_columns": int(seen.sum()),
            }
        if len(recs) == len(sb):
            report["map_max_auroc_by_defect_size_px"] = {
                f"{lo}-{hi}": auc((across >= lo) & (across < hi)) for lo, hi in ((0, 30), (30, 45), (45, 1000))
            }
            report["map_max_auroc_by_mean_change"] = {
                f"{lo}-{hi}": auc((change >= lo) & (change < hi)) for lo, hi in ((0, 0.15), (0.15, 0.25), (0.25, 1))
            }

    def where(amaps) -> dict:
        h, w = amaps[0].shape
        pos = np.array([np.unravel_index(np.argmax(a), a.shape) for a in amaps])
        edge = np.minimum.reduce([pos[:, 0], pos[:, 1], h - 1 - pos[:, 0], w - 1 - pos[:, 1]])
        seams = np.arange(m.preprocess.stride, max(h, w), m.preprocess.stride) if m.preprocess.mode == "texture" else np.array([])
        near = np.zeros(len(pos), bool)
        if seams.size:
            near = (np.abs(pos[:, :1] - seams).min(1) < 4) | (np.abs(pos[:, 1:] - seams).min(1) < 4)
        inner = edge >= 8
        return {
            "max_within_8px_of_border": float(np.mean(~inner)),
            "border_band_area_share": float(1 - (h - 16) * (w - 16) / (h * w)),
            "interior_max_within_4px_of_a_seam": float(np.mean(near[inner])) if inner.any() else None,
        }

    report["good_map_maxima"] = where(good)
    report["good_map_maxima_after_border_normalization"] = where(
        [norm.apply(a, im, contrast=False) for a, im in zip(good, good_imgs)]
    )
    report["mean_normal_map_by_border_band"] = [
        float(np.mean([a[border_bins(a.shape) == i].mean() for a in normal_maps])) for i in range(len(norm.border_edges) + 1)
    ]
    real, synth = {}, {}
    syn_lab = np.r_[np.zeros(len(base_maps)), np.ones(len(syn_maps))].astype(bool)
    test_scores = [image_scores(a, IMAGE_SCORES, im, norm) for a, im in zip(test_maps, ts.images)]
    syn_scores = [image_scores(a, IMAGE_SCORES, im, norm) for a, im in zip(base_maps + syn_maps, bases + [d.image for d in syn])]
    for kind in IMAGE_SCORES:
        real[kind] = float(roc_auc(lab, np.array([s[kind] for s in test_scores])))
        synth[kind] = float(roc_auc(syn_lab, np.array([s[kind] for s in syn_scores])))
    report["candidates_real_auroc"] = real
    report["candidates_synthetic_auroc"] = synth
    report["spearman_real_vs_synthetic"] = float(spearmanr(list(real.values()), list(synth.values())).statistic)
    return write_report(report, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
