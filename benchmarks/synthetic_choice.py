#!/usr/bin/env python
"""Does calibration's synthetic check rank the image-score candidates as real defects do, and how many
synthetic defects per held-out image does it need?

Projects a category's labelled test images, 60 training images (the map statistics, as calibration's
calibration images) and 50 more with K synthetic defects each (score_choice.synthetic_defects, the kinds
in turn) through a bundle with its deployed settings. Reports
- every IMAGE_SCORES candidate's image AUROC on the real defects, and how far the real ranking itself is
  reproducible: the median Spearman correlation r between the candidates' AUROCs on two random halves of
  the test set, and from it the ceiling any check can reach against the whole test set's ranking,
  sqrt(2r / (1 + r)) (the Spearman-Brown reliability of the whole set; a check that knew the true order
  correlates with a ranking measured with that reliability at about its square root);
- for k in 1, 2, 3, 4, 6 and K defects per image (20 random draws of k of each image's K; one at K): the median and 10-90% range of the
  Spearman correlation between synthetic and real AUROCs, and the real AUROC of the candidate the
  synthetic check would pick (calibration's rule among the eligible candidates, score_choice.choose);
- the pairs of candidates that the real defects can tell apart: a pair is decided when the 95% interval of
  its real AUROC difference over 1000 bootstrap draws of the test set (stratified) excludes 0; the
  synthetic check's concordance is the fraction of decided pairs it orders the same way (with all K
  defects per image; a synthetic tie counts as not alike), over all pairs and over the pairs of the
  candidates calibration may pick on the bundle's line (score_choice.eligible: the *_tex family on a
  texture line, where all pairs are mostly the two families apart). Spearman over all the candidates also
  weighs the pairs that the test set cannot order, whose real order is noise;
- with photo_textures.py's dataset.json: the same figures on the test images whose crop lies inside the
  photograph's trained columns (good and contaminated alike). Crops reaching past them show parts of the
  photograph training never saw (another lighting, another structure), which can order the candidates
  by how they respond to that shift rather than to the defects.

    python benchmarks/synthetic_choice.py BUNDLE PHOTOSET CATEGORY [--per-image 10] [--out report.json]
"""

from __future__ import annotations

import argparse

import numpy as np
from photoset import add_photoset_args, crop_positions, inside_trained_columns, load_photoset, write_report


def main(argv=None) -> int:
    ap = add_photoset_args(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    ap.add_argument("--per-image", type=int, default=10)
    args = ap.parse_args(argv)

    from scipy.stats import spearmanr

    from edgeproj.calibration.score_choice import choose, eligible, synthetic_defects
    from edgeproj.metrics import roc_auc
    from edgeproj.runtime.manifest import IMAGE_SCORES
    from edgeproj.runtime.projector import Projector
    from edgeproj.runtime.scoring import MapNorm, image_scores

    m, ts, read = load_photoset(args)
    normals, bases = read(0, 60), read(60, 110)
    K = args.per_image
    drawn = synthetic_defects(bases, seed=0, per_image=K)
    with Projector(m, batch=16) as proj:

        def maps(imgs):
            return [r.projection_map for r in proj.project(imgs, lean=True)]

        test_maps, normal_maps, base_maps = maps(ts.images), maps(normals), maps(bases)
        syn_maps = maps([d.image for _, d in drawn])
    norm = MapNorm.fit(normal_maps, normals)

    def scores(amaps, imgs):
        per_map = [image_scores(a, IMAGE_SCORES, im, norm) for a, im in zip(amaps, imgs)]
        return {k: np.array([s[k] for s in per_map]) for k in IMAGE_SCORES}

    t, b, s = scores(test_maps, ts.images), scores(base_maps, bases), scores(syn_maps, [d.image for _, d in drawn])
    lab = ts.labels
    real = {k: float(roc_auc(lab, t[k])) for k in IMAGE_SCORES}
    rng = np.random.default_rng(1)

    def rho(a: dict, c: dict) -> float:
        return float(spearmanr(list(a.values()), list(c.values())).statistic)

    halves = []
    for _ in range(20):
        half = np.zeros(len(lab), bool)
        for cls in (True, False):
            idx = np.flatnonzero(lab == cls)
            half[rng.choice(idx, len(idx) // 2, replace=False)] = True
        a = {k: roc_auc(lab[half], t[k][half]) for k in IMAGE_SCORES}
        c = {k: roc_auc(lab[~half], t[k][~half]) for k in IMAGE_SCORES}
        halves.append(rho(a, c))
    img = np.array([i for i, _ in drawn])
    slot, count = [], {}  # slot: a defect's place among its image's defects (0..K-1)
    for i in img:
        slot.append(count.get(i, 0))
        count[i] = slot[-1] + 1
    slot = np.array(slot)

    def draw(k: int) -> np.ndarray:
        """k of each image's defects, chosen per image: slot n has kind n mod 5 on every image when K is a
        multiple of 5, so one set of slots for all images would also fix the kinds."""
        keep = {i: set(rng.permutation(n)[:k].tolist()) for i, n in count.items()}
        return np.array([s_ in keep[i] for i, s_ in zip(img, slot)])

    by_k = {}
    for k in sorted({1, 2, 3, 4, 6, K} & set(range(1, K + 1))):
        rs, picks = [], []
        for _ in range(20 if k < K else 1):
            sel = draw(k)
            labels = np.r_[np.zeros(len(bases)), np.ones(int(sel.sum()))].astype(bool)
            syn = {c: float(roc_auc(labels, np.r_[b[c], s[c][sel]])) for c in IMAGE_SCORES}
            rs.append(rho(real, syn))
            picks.append(real[choose(syn, eligible(m.preprocess.mode))])
        by_k[k] = {
            "spearman_median": float(np.median(rs)),
            "spearman_p10_p90": [float(np.percentile(rs, 10)), float(np.percentile(rs, 90))],
            "real_auroc_of_pick_median": float(np.median(picks)),
            "real_auroc_of_pick_min": float(np.min(picks)),
        }
    labels = np.r_[np.zeros(len(bases)), np.ones(len(drawn))].astype(bool)
    syn_all = {c: float(roc_auc(labels, np.r_[b[c], s[c]])) for c in IMAGE_SCORES}
    pos = crop_positions(args.root, args.category, ts.paths)
    inside = None if pos is None else inside_trained_columns(pos)
    in_columns = None
    if inside is not None and 0 < int(lab[inside].sum()) < int(inside.sum()):
        li, ti = lab[inside], {k: v[inside] for k, v in t.items()}
        real_in = {k: float(roc_auc(li, ti[k])) for k in IMAGE_SCORES}
        in_columns = {
            "good": int((~li).sum()),
            "defect": int(li.sum()),
            "real_auroc": real_in,
            "deployed": m.projection.image_score,
            "deployed_real_auroc": real_in.get(m.projection.image_score),
            "spearman_synthetic_vs_real": rho(real_in, syn_all),
            "decided_pairs": decided_pairs(li, ti, real_in, syn_all, rng, within=eligible(m.preprocess.mode)),
        }
    split_half = float(np.median(halves))
    report = {
        "bundle": str(args.bundle),
        "category": args.category,
        "real_auroc": real,
        "real_best": max(real.values()),
        "real_worst": min(real.values()),
        "real_split_half_spearman_median": split_half,
        "spearman_ceiling": reliability_ceiling(split_half),
        "synthetic_by_defects_per_image": by_k,
        "spearman_synthetic_vs_real": rho(real, syn_all),
        "synthetic_auroc": syn_all,
        "decided_pairs": decided_pairs(lab, t, real, syn_all, rng, within=eligible(m.preprocess.mode)),
        "in_trained_columns": in_columns,
        "synthetic_defects": len(drawn),
        "held_out_normals": len(bases),
    }
    return write_report(report, args.out)


def reliability_ceiling(split_half: float) -> float:
    """About the highest Spearman any check can reach against the whole test set's real ranking, from the
    median split-half Spearman r: the square root of the Spearman-Brown reliability 2r / (1 + r). NaN when
    the halves do not correlate positively (no ceiling can be read from them)."""
    if not np.isfinite(split_half) or split_half <= 0:
        return float("nan")
    return float(np.sqrt(2 * split_half / (1 + split_half)))


def decided_pairs(
    lab, t: dict, real: dict, syn: dict, rng: np.random.Generator, draws: int = 1000, within: tuple[str, ...] = ()
) -> dict:
    """How often the synthetic AUROCs order a pair of candidates as the real ones do, over the pairs whose
    real order survives a stratified bootstrap of the test set (95% interval of the difference excludes 0).
    A synthetic tie on such a pair counts as not alike. `within`: the same figures over the pairs of these
    candidates only (the ones calibration may pick), beside the figures over all pairs."""
    from edgeproj.metrics import roc_auc

    pos, neg = np.flatnonzero(lab), np.flatnonzero(~lab)
    names = list(real)
    boot = np.empty((draws, len(names)))
    for d in range(draws):
        idx = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        boot[d] = [roc_auc(lab[idx], t[k][idx]) for k in names]

    def count(keep) -> dict:
        pairs = decided = agree = agree_all = ties = 0
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                a, c = names[i], names[j]
                if real[a] == real[c] or not keep(a, c):
                    continue
                pairs += 1
                same = syn[a] != syn[c] and (real[a] > real[c]) == (syn[a] > syn[c])
                agree_all += same
                lo, hi = np.percentile(boot[:, i] - boot[:, j], [2.5, 97.5])
                if lo > 0 or hi < 0:
                    decided += 1
                    agree += same
                    ties += syn[a] == syn[c]
        return {
            "pairs": pairs,
            "concordance_all_pairs": agree_all / pairs if pairs else float("nan"),
            "decided": decided,
            "concordance_decided": agree / decided if decided else float("nan"),
            "synthetic_ties_among_decided": ties,
        }

    out = count(lambda a, c: True)
    if within:
        out["within_eligible"] = count(lambda a, c: a in within and c in within)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
