"""The evaluation report folder: results.json, table.md (paper Table 1 layout) and PNG figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeproj import overlays
from edgeproj.evaluation.testset import TestSet
from edgeproj.runtime.manifest import dumps_strict

VARIANT_LABEL = {"l2ae": "L2AE", "dsae": "DSAE", "vae": "VAE", "gvae": "gamma-VAE"}
METRICS = ("pixel_auroc", "au_pro", "image_auroc")


def table_markdown(results: list[dict]) -> str:
    """One table per metric: rows categories, columns `variant` and `variant-grad` (paper Table 1)."""
    cats = list(dict.fromkeys(r["category"] for r in results))
    variants = [v for v in VARIANT_LABEL if any(r["variant"] == v for r in results)]
    by = {(r["category"], r["variant"]): r for r in results}
    lines = []
    for metric in METRICS:
        head = ["category"] + [c for v in variants for c in (VARIANT_LABEL[v], f"{VARIANT_LABEL[v]}-grad")]
        lines += [f"### {metric}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for cat in cats:
            row = [cat]
            for v in variants:
                r = by.get((cat, v))
                if r is None:
                    row += ["", ""]
                    continue
                b, g = r["baseline"][metric], r["grad"][metric]
                row += [f"{b:.3f}", f"**{g:.3f}**" if g > b else f"{g:.3f}"]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    lines += [
        "### single-gradient scores (paper Table 2), pixel AUROC",
        "",
        "| category | variant | abs grad | abs grad x (x - f(x))^2 |",
        "|---|---|---|---|",
    ]
    for r in results:
        sg = r["single_gradient"]
        lines.append(
            f"| {r['category']} | {VARIANT_LABEL[r['variant']]} | {sg['grad_norm']['pixel_auroc']:.3f} | "
            f"{sg['grad_x_recon_error']['pixel_auroc']:.3f} |"
        )
    lines.append("")
    if any("placement" in r for r in results):
        lines += [
            "### update rules: pixel AUROC of the convergence study, mean over the curve (final point)",
            "",
            "| category | variant | standard (eq. 5) | tuned on gradient (before Adam) | tuned on step (after Adam) | better |",
            "|---|---|---|---|---|---|",
        ]
        for r in results:
            if "placement" in r:
                mn, f = r["placement"]["mean_pixel_auroc"], r["placement"]["final_pixel_auroc"]
                cells = [f"{mn[k]:.3f} ({f[k]:.3f})" for k in ("standard", "tuned_gradient", "tuned_step")]
                lines.append(
                    f"| {r['category']} | {VARIANT_LABEL[r['variant']]} | "
                    + " | ".join(cells)
                    + f" | {r['placement']['better']} |"
                )
        lines.append("")
    return "\n".join(lines)


def placement_verdict(results: list[dict]) -> dict:
    """Which placement of the tuned weight wins over all evaluated (category, variant) pairs."""
    rows = [r["placement"] for r in results if "placement" in r]
    if not rows:
        return {}
    wins = {"tuned_gradient": 0, "tuned_step": 0}
    for p in rows:
        wins[p["better"]] += 1
    mean = {k: float(np.mean([p["mean_pixel_auroc"][k] for p in rows])) for k in wins}
    final = {k: float(np.mean([p["final_pixel_auroc"][k] for p in rows])) for k in wins}
    return {"wins": wins, "mean_curve_pixel_auroc": mean, "mean_final_pixel_auroc": final, "default": max(mean, key=mean.get)}


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return plt
    except ImportError:
        return None


def plot_convergence(results: list[dict], path: Path) -> Path | None:
    """Pixel AUROC after each iteration for each update rule (paper figure 5)."""
    plt = _plt()
    rows = [r for r in results if "convergence" in r]
    if plt is None or not rows:
        return None
    fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 3.4), squeeze=False)
    for ax, r in zip(axes[0], rows):
        for rule, c in r["convergence"].items():
            ax.plot(c["iterations"], c["pixel_auroc"], marker="o", ms=3, label=rule)
        ax.axhline(r["baseline"]["pixel_auroc"], color="gray", ls="--", lw=1, label="baseline f(x0)")
        ax.set_title(f"{r['category']} / {VARIANT_LABEL[r['variant']]}")
        ax.set_xlabel("iteration")
        ax.set_ylabel("pixel AUROC")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_roc(ts: TestSet, maps: dict, result: dict, path: Path) -> Path | None:
    """Pixel ROC curves of the baseline, the projection and the single-gradient scores."""
    from edgeproj.metrics import roc_curve

    plt = _plt()
    if plt is None:
        return None
    labels = np.concatenate([m.ravel() for m in ts.masks])
    fig, ax = plt.subplots(figsize=(4.2, 4))
    for name, ms in maps.items():
        scores = np.concatenate([m.ravel() for m in ms])
        # Subsample the curve's points, not the pixels: the AUROC in the legend is exact.
        fpr, tpr, _ = roc_curve(labels, scores)
        idx = np.linspace(0, len(fpr) - 1, min(len(fpr), 2000)).astype(int)
        auc = result[name]["pixel_auroc"] if name in result else result["single_gradient"][name]["pixel_auroc"]
        ax.plot(fpr[idx], tpr[idx], label=f"{name} ({auc:.3f})")
    ax.plot([0, 1], [0, 1], color="gray", lw=0.5)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.set_title(f"pixel ROC {result['category']} / {VARIANT_LABEL[result['variant']]}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def figure3(ts: TestSet, maps: dict, out_dir: Path, tag: str, limit: int = 6, fpr: float = 0.01) -> list[Path]:
    """Paper figure 3 panels per defect image: input, ground-truth contour, baseline mask, projection mask.

    Both masks threshold their map at the same false-positive rate over the test set's normal pixels,
    so the comparison does not depend on each map's scale.
    """
    import cv2

    normal = np.concatenate([mk.ravel() == 0 for mk in ts.masks])
    thr = {}
    for name in ("baseline", "grad"):
        flat = np.concatenate([m.ravel() for m in maps[name]])
        thr[name] = float(np.quantile(flat[normal], 1 - fpr))
    paths = []
    defect_idx = [i for i, k in enumerate(ts.kinds) if k != "good"][:limit]
    for i in defect_idx:
        img = overlays.to_u8(ts.images[i])
        gt = img.copy()
        cs, _ = cv2.findContours(ts.masks[i].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(gt, cs, -1, (0, 255, 0), 1)
        panels = [img, gt]
        for name in ("baseline", "grad"):
            mask = (maps[name][i] > thr[name]).astype(np.uint8) * 255
            panels.append(cv2.cvtColor(mask, cv2.COLOR_GRAY2BGR))
        strip = np.hstack([np.pad(p, ((18, 2), (2, 2), (0, 0)), constant_values=255) for p in panels])
        for j, title in enumerate(("input", "ground truth", "baseline mask", "projection mask")):
            cv2.putText(strip, title, (j * (img.shape[1] + 4) + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        p = out_dir / f"fig3_{tag}_{ts.kinds[i]}_{ts.paths[i].stem}.png"
        overlays.write(p, strip)
        paths.append(p)
    return paths


def write_report(out: Path, results: list[dict], figures: dict | None = None) -> dict:
    """results.json and table.md under `out`; returns the document written."""
    out.mkdir(parents=True, exist_ok=True)
    conv = plot_convergence(results, out / "convergence.png")
    doc = {
        "results": results,
        "placement": placement_verdict(results),
        "figures": {k: [str(p) for p in v] for k, v in (figures or {}).items()} | ({"convergence": [str(conv)]} if conv else {}),
    }
    (out / "results.json").write_text(dumps_strict(doc) + "\n")
    table = table_markdown(results)
    verdict = doc["placement"]
    if verdict:
        c, f = verdict["mean_curve_pixel_auroc"], verdict["mean_final_pixel_auroc"]
        table += (
            f"\nTuned weight placement: **{verdict['default']}** gives the higher pixel AUROC along the convergence "
            f"curve ({c['tuned_step']:.3f} on the step vs {c['tuned_gradient']:.3f} on the gradient, mean over curves "
            f"and models; wins {verdict['wins']}). At the last iteration: {f['tuned_step']:.3f} vs {f['tuned_gradient']:.3f}.\n"
        )
    (out / "table.md").write_text(table)
    from edgeproj.evaluation.html_report import write_html_report

    write_html_report(out)  # one self-contained page: tables, figures, the placement verdict
    return doc
