"""The evaluation report as one self-contained HTML page, checked in headless Chromium."""

from __future__ import annotations

import re
import shutil

import cv2
import numpy as np
import pytest

from edgeproj.evaluation.html_report import write_html_report
from edgeproj.evaluation.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _result(category: str, variant: str, shift: float) -> dict:
    metric = lambda b: {"pixel_auroc": b, "au_pro": b - 0.1, "image_auroc": b - 0.05}
    curve = lambda end: {"iterations": [0, 5, 10], "pixel_auroc": [0.5, (0.5 + end) / 2, end]}
    return {
        "category": category,
        "variant": variant,
        "baseline": metric(0.80 + shift),
        "grad": metric(0.90 + shift),
        "single_gradient": {"grad_norm": {"pixel_auroc": 0.7}, "grad_x_recon_error": {"pixel_auroc": 0.75}},
        "convergence": {"standard": curve(0.85), "tuned_gradient": curve(0.88), "tuned_step": curve(0.9 + shift)},
        "placement": {
            "mean_pixel_auroc": {"standard": 0.7, "tuned_gradient": 0.72, "tuned_step": 0.74},
            "final_pixel_auroc": {"standard": 0.85, "tuned_gradient": 0.88, "tuned_step": 0.9},
            "better": "tuned_step",
        },
    }


@pytest.fixture
def report_dir(tmp_path):
    pytest.importorskip("matplotlib", reason="the convergence figure needs matplotlib (the train or report extra)")
    out = tmp_path / "report"
    out.mkdir()
    rng = np.random.default_rng(0)
    figures = {}
    for cat, var in (("grid", "l2ae"), ("carpet", "dsae")):
        tag = f"{cat}_{var}"
        paths = []
        for i in range(2):
            p = out / f"fig3_{tag}_scratch_{i:03d}.png"
            cv2.imwrite(str(p), (rng.random((148, 528, 3)) * 255).astype(np.uint8))
            paths.append(p)
        roc = out / f"roc_{tag}.png"
        cv2.imwrite(str(roc), np.full((300, 320, 3), 240, np.uint8))
        figures[tag] = paths + [roc]
    cv2.imwrite(str(out / "extra.png"), np.zeros((20, 20, 3), np.uint8))
    write_report(out, [_result("grid", "l2ae", 0.0), _result("carpet", "dsae", 0.02)], figures)
    return out


def test_report_html_is_self_contained(report_dir):
    page = write_html_report(report_dir)
    assert page == report_dir / "report.html"
    text = page.read_text()
    srcs = re.findall(r'src="([^"]+)"', text)
    # 2 x (2 grids + 1 ROC) + convergence + the unreferenced extra.png, all inlined.
    assert len(srcs) == 8 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"""(href|src)=["']?(https?:|//|file:)""", text)
    assert "<table>" in text and "<th>L2AE-grad</th>" in text and "<strong>0.900</strong>" in text
    assert "update rules" in text.lower() and "tuned_step" in text
    assert text.count("<h2>grid_l2ae</h2>") == 1 and "<h2>Other figures</h2>" in text
    # The report folder moved: figures are found by name next to results.json.
    moved = report_dir.parent / "moved"
    shutil.move(report_dir, moved)
    assert len(re.findall(r'src="data:image/png', write_html_report(moved).read_text())) == 8


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium; .ci/run does)")
def test_report_html_renders_in_headless_chromium(report_dir, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    page = write_html_report(report_dir)
    shot = tmp_path / "report.png"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            requests = []
            tab.on("request", lambda r: requests.append(r.url))
            tab.goto(page.as_uri(), wait_until="load", timeout=15000)
            decoded = tab.evaluate("Array.from(document.images).map((i) => i.complete && i.naturalWidth > 0)")
            assert decoded and all(decoded), decoded
            assert tab.locator("table").count() >= 4
            assert "pixel_auroc" in tab.text_content("body")
            tab.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert all(u.startswith(("file:", "data:")) for u in requests), requests  # nothing fetched from anywhere
    assert shot.stat().st_size > 10_000
