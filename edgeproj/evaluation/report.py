"""The evaluation report folder: results.json, table.md (paper Table 1 layout) and PNG figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeproj import overlays
from edgeproj.evaluation.testset import TestSet
from edgeproj.jsonio import dumps_strict
from edgeproj.models.variants import get_variant, list_variants

METRICS = ("pixel_auroc", "au_pro", "image_auroc")


def table_markdown(results: list[dict]) -> str:
    """One table per metric: rows categories, columns `variant` and `variant-grad` (paper Table 1)."""
    cats = list(dict.fromkeys(r["category"] for r in results))
    label = {r["variant"]: get_variant(r["variant"]).label for r in results}  # an unknown variant is an error, not a lost column
    variants = [v.name for v in list_variants() if v.name in label]  # the registry's order
    by = {(r["category"], r["variant"]): r for r in results}
    lines = []
    for metric in METRICS:
        head = ["category"] + [c for v in variants for c in (label[v], f"{label[v]}-grad")]
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
        "| category | variant | (x - f(x))^2 | abs grad | abs grad x (x - f(x))^2 | abs KL-grad (VAEs) | projection |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        sg = r["single_gradient"]
        cell = lambda k: f"{sg[k]['pixel_auroc']:.3f}" if k in sg else "-"  # noqa: E731
        lines.append(
            f"| {r['category']} | {get_variant(r['variant']).label} | {cell('recon_squared_error')} | {cell('grad_norm')} | "
            f"{cell('grad_x_recon_error')} | {cell('kl_gradient')} | {r['grad']['pixel_auroc']:.3f} |"
        )
    lines.append("")
    lines += study_markdown(results)
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
                    f"| {r['category']} | {get_variant(r['variant']).label} | "
                    + " | ".join(cells)
                    + f" | {r['placement']['better']} |"
                )
        lines.append("")
    return "\n".join(lines)


def study_markdown(results: list[dict]) -> list[str]:
    """The studies' tables: step size x update rule, appendix B, image scores, improvement rates."""
    from edgeproj.evaluation.studies import choose_image_score, choose_update_rule

    lines: list[str] = []
    studied = [r for r in results if "rule_study" in r]
    if studied:
        lines += ["### deployed projection (stop rules on): step size x update rule", "",
                  "| category | variant | rule | alpha | pixel AUROC | AU-PRO | image AUROC | mean iterations |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in studied:
            for s in r["rule_study"]:
                lines.append(
                    f"| {r['category']} | {get_variant(r['variant']).label} | {s['rule']} | {s['alpha']:g} | {s['pixel_auroc']:.3f} | "
                    f"{s['au_pro']:.3f} | {s['image_auroc']:.3f} | {s['iterations_mean']:.1f} |"
                )
        choice = choose_update_rule([r["rule_study"] for r in studied])
        lines += ["", f"Rule (fixed before the study): {choice['rule_text']}", "",
                  "| rule | alpha | mean rank | pixel AUROC | AU-PRO | image AUROC | iterations |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for t in choice["candidates"]:
            lines.append(
                f"| {t['rule']} | {t['alpha']:g} | {t['mean_rank']:.2f} | {t['mean_pixel_auroc']:.3f} | {t['mean_au_pro']:.3f} | "
                f"{t['mean_image_auroc']:.3f} | {t['mean_iterations_mean']:.1f} |"
            )
        c = choice["choice"]
        lines += ["", f"Choice over {choice['pairs']} (category, variant) pairs: **{c['rule']}, alpha {c['alpha']:g}**.", ""]
    with_b = [r for r in results if "appendix_b" in r]
    if with_b:
        lines += ["### iterations to reach 95% of the final pixel-AUROC gain (paper appendix B)", "",
                  "| category | variant | standard, stop on | tuned step, stop on | standard, stop off | tuned step, stop off |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for r in with_b:
            b = r["appendix_b"]
            cells = [b[k][rule]["to_95"] for k in ("stop_rules_on", "stop_rules_off") for rule in ("standard", "tuned_step")]
            cells = [cells[0], cells[1], cells[2], cells[3]]
            lines.append(
                f"| {r['category']} | {get_variant(r['variant']).label} | "
                + " | ".join("-" if v is None else str(v) for v in cells)
                + " |"
            )
        lines.append("")
    scored = [r for r in results if "image_scores" in r]
    if scored:
        names = list(dict.fromkeys(n for r in scored for n in r["image_scores"]))
        lines += ["### image scores: image AUROC of candidates (the line verdict is an image verdict)", "",
                  "| category | variant | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]  # fmt: skip
        for r in scored:
            lines.append(
                f"| {r['category']} | {get_variant(r['variant']).label} | "
                + " | ".join(f"{r['image_scores'][n]:.3f}" if n in r["image_scores"] else "-" for n in names)
                + " |"
            )
        ch = choose_image_score([r["image_scores"] for r in scored])
        lines += ["", f"Mean over {ch['pairs']} pairs: best projection score {ch['best']} ({ch['mean_image_auroc'][ch['best']]:.3f}); "
                  f"map_max {ch['mean_image_auroc']['map_max']:.3f}; baseline map max {ch['mean_image_auroc']['baseline_map_max']:.3f}. "
                  f"Choice by the rule in `choose_image_score`: **{ch['choice']}**.", ""]  # fmt: skip
    rates = [v for r in results for v in r.get("image_improvement_rates", [])]
    if rates:
        lines += [f"Per-image pixel-AUROC improvement rate of the projection over the baseline (appendix F): median "
                  f"{100 * float(np.median(rates)):+.1f}% over {len(rates)} defective images "
                  f"({sum(v > 0 for v in rates)} improved); histogram in improvement_rates.png.", ""]  # fmt: skip
    return lines


def plot_improvement_rates(results: list[dict], path: Path) -> Path | None:
    """Histogram of the per-image improvement rates with the median marked (paper appendix F)."""
    plt = _plt()
    rates = [100 * v for r in results for v in r.get("image_improvement_rates", [])]
    if plt is None or not rates:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.hist(rates, bins=min(30, max(5, len(rates) // 2)), color="#4c78a8")
    med = float(np.median(rates))
    ax.axvline(med, color="crimson", ls="--", label=f"median {med:+.1f}%")
    ax.axvline(0, color="gray", lw=0.8)
    ax.set_xlabel("pixel-AUROC improvement rate of the projection over the baseline (%)")
    ax.set_ylabel("defective images")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_appendix_b(results: list[dict], path: Path) -> Path | None:
    """Pixel AUROC against the iteration budget, standard vs tuned, stop rules on and off (appendix B)."""
    plt = _plt()
    rows = [r for r in results if "appendix_b" in r]
    if plt is None or not rows:
        return None
    fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 3.4), squeeze=False)
    for ax, r in zip(axes[0], rows):
        for mode, style in (("stop_rules_on", "-"), ("stop_rules_off", ":")):
            for rule, c in r["appendix_b"][mode].items():
                ax.plot(c["iterations"], c["pixel_auroc"], style, marker="o", ms=2, label=f"{rule}, {mode.replace('_', ' ')}")
        ax.set_title(f"{r['category']} / {get_variant(r['variant']).label}")
        ax.set_xlabel("iteration budget")
        ax.set_ylabel("pixel AUROC")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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
        ax.set_title(f"{r['category']} / {get_variant(r['variant']).label}")
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
    ax.set_title(f"pixel ROC {result['category']} / {get_variant(result['variant']).label}", fontsize=9)
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
    extra = {"convergence": conv, "improvement_rates": plot_improvement_rates(results, out / "improvement_rates.png"),
             "appendix_b": plot_appendix_b(results, out / "appendix_b.png")}  # fmt: skip
    doc = {
        "results": results,
        "placement": placement_verdict(results),
        "figures": {k: [str(p) for p in v] for k, v in (figures or {}).items()} | {k: [str(p)] for k, p in extra.items() if p},
    }
    studied = [r["rule_study"] for r in results if "rule_study" in r]
    if studied:
        from edgeproj.evaluation.studies import choose_update_rule

        doc["update_rule_choice"] = choose_update_rule(studied)
    if results and all("image_scores" in r for r in results):
        from edgeproj.evaluation.studies import choose_image_score

        doc["image_score_choice"] = choose_image_score([r["image_scores"] for r in results])
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
