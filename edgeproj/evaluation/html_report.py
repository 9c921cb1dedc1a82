"""The evaluation report as one self-contained HTML page: tables, figures inlined as data URIs, no links out.

Built from a report folder that `write_report` has written (results.json, table.md, the PNG figures), so it
can also be made again later from the folder alone.
"""

from __future__ import annotations

import base64
import html
import json
import time
from pathlib import Path

from edgeproj import __version__

REPORT_HTML = "report.html"


def write_html_report(out: Path, title: str = "edgeproj evaluation report") -> Path:
    """Write `out/report.html` from `out/results.json`, `out/table.md` and the figures; returns its path.

    A figure is looked up where results.json says it is, then by its file name inside `out` (a report
    folder that was moved); PNGs in `out` that results.json does not name are added at the end.
    """
    out = Path(out)
    doc = json.loads((out / "results.json").read_text())
    table_md = (out / "table.md").read_text() if (out / "table.md").exists() else ""
    figures = doc.get("figures") or {}
    used: set[Path] = set()

    def find(p: str) -> Path | None:
        path = Path(p)
        for cand in (path, out / path.name):
            if cand.is_file():
                used.add(cand.resolve())
                return cand
        return None

    parts = [f"<h1>{_e(title)}</h1>", _meta(doc)]
    parts += ["<h2>Tables</h2>", f'<div class="tables">{_markdown(table_md)}</div>']

    conv = [p for p in (find(x) for x in figures.get("convergence", [])) if p]
    placement = doc.get("placement") or {}
    if conv or placement:
        parts.append("<h2>Update rules: convergence study</h2>")
        if placement:
            parts.append(_placement(placement))
        parts += [_figure(p, "pixel AUROC after each iteration, per update rule (paper figure 5)") for p in conv]

    for tag, paths in figures.items():
        if tag == "convergence":
            continue
        found = [p for p in (find(x) for x in paths) if p]
        if not found:
            continue
        parts.append(f"<h2>{_e(tag)}</h2>")
        rocs = [p for p in found if p.name.startswith("roc_")]
        grids = [p for p in found if p not in rocs]
        parts += [_figure(p, "pixel ROC: baseline, projection and single-gradient scores") for p in rocs]
        if grids:
            parts.append("<h3>Figure 3: input, ground truth, baseline mask, projection mask (same false-positive rate)</h3>")
            parts += [_figure(p, p.stem.removeprefix(f"fig3_{tag}_")) for p in grids]

    rest = sorted(p for p in out.glob("*.png") if p.resolve() not in used)
    if rest:
        parts.append("<h2>Other figures</h2>")
        parts += [_figure(p, p.name) for p in rest]

    raw = json.dumps(doc.get("results", []), indent=1)
    parts.append(f"<details><summary>results.json</summary><pre>{_e(raw)}</pre></details>")
    page = PAGE.replace("__TITLE__", _e(title)).replace("__BODY__", "\n".join(parts))
    path = out / REPORT_HTML
    tmp = path.with_name(f".{REPORT_HTML}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _meta(doc: dict) -> str:
    results = doc.get("results") or []
    pairs = ", ".join(f"{r.get('category')}/{r.get('variant')}" for r in results)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return f'<p class="meta">edgeproj {_e(__version__)} &middot; written {_e(stamp)} &middot; {len(results)} evaluated: {_e(pairs)}</p>'


def _placement(p: dict) -> str:
    c, f = p.get("mean_curve_pixel_auroc", {}), p.get("mean_final_pixel_auroc", {})
    cells = "".join(
        f"<tr><td>{_e(k)}</td><td>{c.get(k, float('nan')):.3f}</td><td>{f.get(k, float('nan')):.3f}</td><td>{p.get('wins', {}).get(k, '')}</td></tr>"
        for k in ("tuned_gradient", "tuned_step")
    )
    return (
        f"<p>Tuned weight placement with the higher pixel AUROC along the curve: <b>{_e(p.get('default', ''))}</b>.</p>"
        "<table><thead><tr><th>placement</th><th>mean over the curve</th><th>last iteration</th><th>wins</th></tr></thead>"
        f"<tbody>{cells}</tbody></table>"
    )


def _figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{_e(path.name)}"><figcaption>{_e(caption)}</figcaption></figure>'
    )


def _markdown(text: str) -> str:
    """table.md -> HTML (markdown-it-py, which rich already installs; raw HTML in the text is escaped)."""
    try:
        from markdown_it import MarkdownIt
    except ImportError:  # pragma: no cover - rich depends on it
        return f"<pre>{_e(text)}</pre>"
    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body { margin: 0 auto; max-width: 1200px; padding: 16px 24px 48px; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2329; }
h1 { font-size: 26px; margin: 8px 0 2px; } h2 { font-size: 20px; margin: 28px 0 8px; border-bottom: 1px solid #dde2e8; padding-bottom: 4px; }
h3 { font-size: 16px; margin: 18px 0 6px; } .meta { color: #66707a; margin-top: 0; }
table { border-collapse: collapse; margin: 6px 0 14px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d3d9e0; padding: 3px 9px; text-align: right; } th { background: #f1f4f7; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 10px 0 16px; } figure img { max-width: 100%; border: 1px solid #e3e7ec; }
figcaption { color: #66707a; font-size: 13px; }
pre { background: #f6f8fa; padding: 10px; overflow: auto; max-height: 480px; font-size: 12px; }
</style></head>
<body>
__BODY__
</body></html>
"""
