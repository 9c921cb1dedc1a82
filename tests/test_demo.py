"""The demo's last words: a short summary table, benchmark figures with their spread or marked noisy."""

from __future__ import annotations

from rich.console import Console

from edgeproj.bench.rounds import spread_of


def _entry(values: list[float], ratios: list[float]) -> dict:
    it, ra = spread_of(values), spread_of(ratios)
    noisy = {k: f"rounds disagree by {s.max_over_min:.2f}x; another process used the CPU?" for k, s in
             (("iterations_per_ms", it), ("ratio_vs_torch", ra)) if s.noisy}  # fmt: skip
    return {
        "iterations_per_ms": None if "iterations_per_ms" in noisy else it.median,
        "ratio_vs_torch": None if "ratio_vs_torch" in noisy else ra.median,
        "spread": {"iterations_per_ms": it.as_json(), "ratio_vs_torch": ra.as_json()},
        "noisy": noisy,
    }


def _doc() -> dict:
    metrics = {"pixel_auroc": 0.8, "au_pro": 0.6, "image_auroc": 0.7}
    return {
        "results": [
            {
                "category": "grid",
                "variant": "l2ae",
                "baseline": metrics,
                "grad": {"pixel_auroc": 0.9, "au_pro": 0.7, "image_auroc": 0.75},
                "improvement_rate": {"pixel_auroc": 0.125},
            }
        ],
        "bench": {
            "ort-cpu_b1": _entry([0.5, 0.52, 0.51], [3.0, 3.1, 3.05]),
            "ort-cpu_b8": _entry([1.0, 3.0, 1.1], [70.49, 20.0, 21.0]),
            "line": {
                "256x256x1": {
                    "fps": 12.0,
                    "fps_ratio_vs_torch": 2.0,
                    "iterations_per_tile": 5.0,
                    "spread": {"fps": spread_of([11.5, 12.0, 12.5]).as_json(), "fps_ratio_vs_torch": spread_of([2.0]).as_json()},
                    "noisy": {},
                }
            },
        },
        "bench_report": {"iterations_per_projection": 20, "repeats": 3},
    }


def test_demo_ends_with_a_summary_table_and_no_noisy_headline():
    from edgeproj.cli.demo import print_summary

    c = Console(record=True, width=80)
    print_summary(_doc(), c)
    text = c.export_text()
    assert "{" not in text and "ratio_vs_torch" not in text  # no raw dict of figures
    pixel = next(line for line in text.splitlines() if "pixel AUROC" in line and "grid" in line)
    assert "L2AE" in pixel and "0.800" in pixel and "0.900" in pixel and "+12.5%" in pixel
    image = next(line for line in text.splitlines() if "image AUROC" in line and "grid" not in line)
    assert "0.700" in image and "0.750" in image
    b1 = next(line for line in text.splitlines() if "ort-cpu" in line and " 1 " in line)
    assert "0.510 ±2%" in b1 and "3.05 ±2%" in b1
    b8 = next(line for line in text.splitlines() if "ort-cpu" in line and " 8 " in line)
    assert "noisy" in b8 and "70.49" not in b8 and "21.00" not in b8
    assert "noisy: ort-cpu b8 (iter/ms, x torch): rounds disagree by 3.52x; another process used the CPU?" in text
    assert "12.00 ±4% frames/s" in text and "median of 3 interleaved rounds" in text
    assert max(len(line) for line in text.splitlines() if not line.startswith("noisy:")) <= 80
