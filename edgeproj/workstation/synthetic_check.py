"""The quality check without defect labels: synthetic defects on held-out normal images, and whether they
rank settings the way real labelled defects do.

`build_synthetic_set` writes an MVTec-layout test set (category `synthetic`) from normal images the model
has not trained on, so `evaluate` scores it like any labelled set. `ranking_check` scores a list of
settings (baseline, update rules, step sizes) on a real labelled set and on the synthetic one, and says
whether the two rank them alike (Spearman and Kendall rank correlation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeproj.errors import DataError

CATEGORY = "synthetic"
MIN_IMAGES = 2
# A synthetic check whose ranking correlates less than this with the real defects' disagrees with them.
AGREEMENT_RHO = 0.5
RANKING_SETTINGS = (
    ("baseline", None, None),
    ("standard, alpha 0.05", "standard", 0.05),
    ("standard, alpha 0.2", "standard", 0.2),
    ("tuned_step, alpha 0.05", "tuned_step", 0.05),
    ("tuned_step, alpha 0.2", "tuned_step", 0.2),
)


def heldout_normals(manifest, folder: Path) -> tuple[list[Path], str]:
    """Normal images of `folder` for the synthetic set, preferring the ones training held out.

    Returns the paths and where they come from: the training run's held-out images when the folder has
    them (the model never saw them), otherwise every image of the folder (said in the report: if these
    are training images the figures are optimistic).
    """
    from edgeproj.data.mvtec import normal_images

    paths = normal_images(Path(folder))
    held = set((manifest.training.get("data") or {}).get("held_out") or [])
    picked = [p for p in paths if p.name in held]
    if len(picked) >= MIN_IMAGES:
        return picked, f"the {len(picked)} normal images training held out (never trained on)"
    if len(paths) < MIN_IMAGES:
        raise DataError(f"the synthetic check needs at least {MIN_IMAGES} normal images in '{folder}', found {len(paths)}")
    note = (
        f"all {len(paths)} images of '{folder}': the bundle names no held-out image there; if the model "
        "trained on them the figures are optimistic"
    )
    return paths, note


def build_synthetic_set(manifest, normal: Path, out_root: Path, per_image: int = 5, seed: int = 0) -> dict:
    """Write the synthetic test set under out_root/synthetic; returns its description."""
    from edgeproj.data.images import read_image, unique_stems
    from edgeproj.data.synthetic import write_synthetic_set

    paths, source = heldout_normals(manifest, normal)
    images = [read_image(p, channels=manifest.channels) for p in paths]
    info = write_synthetic_set(images, unique_stems(paths), Path(out_root), CATEGORY, per_image=per_image, seed=seed)
    return info | {"root": str(out_root), "category": CATEGORY, "normal_images": source}


def _rank(values: list[float]) -> np.ndarray:
    """Ranks (1 = best = highest), ties sharing their mean rank."""
    v = np.asarray(values, np.float64)
    order = np.argsort(-v, kind="stable")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(1, len(v) + 1)
    for x in np.unique(v):
        ranks[v == x] = ranks[v == x].mean()
    return ranks


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman rank correlation (Pearson correlation of the ranks; NaN when a ranking is constant)."""
    ra, rb = _rank(a), _rank(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def kendall(a: list[float], b: list[float]) -> float:
    """Kendall's tau-a over all pairs of settings."""
    n = len(a)
    s = sum(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j]) for i in range(n) for j in range(i + 1, n))
    return float(s / (n * (n - 1) / 2)) if n > 1 else float("nan")


def _scores(proj, ts, settings_list, tick=None) -> list[dict]:
    from edgeproj.evaluation.studies import RULES, _pixel_metrics, projection_maps
    from edgeproj.runtime.scoring import dssim_maps

    rows = []
    for name, rule, alpha in settings_list:
        if rule is None:  # the baseline: DSSIM(x0, f(x0)) from the same run's first reconstruction
            res = proj.project_patches(ts.tiles, settings=proj.settings(max_iterations=1), progress=tick)
            maps = ts.stitch(dssim_maps(res.x0, res.recon0, proj.manifest.ssim_window))
            kind = proj.manifest.projection.image_score
        else:
            tuned, on_step = RULES[rule]
            settings = proj.settings(alpha=alpha, tuned=tuned, tuned_on_step=on_step)
            _, maps = projection_maps(proj, ts, settings, tick)
            kind = settings.image_score
        rows.append({"setting": name} | _pixel_metrics(ts, maps, 0.3, kind))
    return rows


def ranking_check(proj, real_ts, synthetic_ts, settings_list=RANKING_SETTINGS, metric: str = "pixel_auroc", tick=None) -> dict:
    """Score every setting on the real and on the synthetic defects; compare the two rankings."""
    real = _scores(proj, real_ts, settings_list, tick)
    synth = _scores(proj, synthetic_ts, settings_list, tick)
    a = [r[metric] for r in real]
    b = [r[metric] for r in synth]
    rho, tau = spearman(a, b), kendall(a, b)
    agree = bool(np.isfinite(rho) and rho >= AGREEMENT_RHO)
    best_real, best_synth = real[int(np.argmax(a))]["setting"], synth[int(np.argmax(b))]["setting"]
    if agree:
        verdict = f"the synthetic check agrees with the real defects (Spearman {rho:.2f}, Kendall {tau:.2f})"
    else:
        verdict = (
            f"the synthetic check DISAGREES with the real defects (Spearman {rho:.2f} < {AGREEMENT_RHO}, Kendall {tau:.2f}): "
            "do not choose settings on synthetic defects alone for this product"
        )
    return {
        "metric": metric,
        "settings": [s[0] for s in settings_list],
        "real": real,
        "synthetic": synth,
        "rank_real": _rank(a).tolist(),
        "rank_synthetic": _rank(b).tolist(),
        "spearman": rho,
        "kendall": tau,
        "agree": agree,
        "best_real": best_real,
        "best_synthetic": best_synth,
        "verdict": verdict,
    }


def ranking_markdown(doc: dict, title: str) -> str:
    """The two rankings side by side, as a table for table.md."""
    m = doc["metric"].replace("_", " ")
    lines = ["", f"### {title}: settings ranked by {m} on real and on synthetic defects", "",
             f"| setting | {m} real | rank | {m} synthetic | rank |", "|---|---|---|---|---|"]  # fmt: skip
    for i, name in enumerate(doc["settings"]):
        r, s = doc["real"][i][doc["metric"]], doc["synthetic"][i][doc["metric"]]
        lines.append(f"| {name} | {r:.3f} | {doc['rank_real'][i]:g} | {s:.3f} | {doc['rank_synthetic'][i]:g} |")
    lines.append(f"\n{doc['verdict']}.\n")
    return "\n".join(lines)
