"""`project` on image files: each image gated, projected, mapped and judged, one typed verdict per image.

The same judgement as the line (`edgeproj.runtime.verdict.judge`: only a part that passed the frame gate,
with a finite score at or under a finite threshold, is OK), for files instead of a stream: an image
that cannot be read is FAULT and does not stop the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgeproj.errors import DataError, EdgeprojError
from edgeproj.runtime.verdict import FAULT, VERDICTS


@dataclass(frozen=True)
class Framing:
    """How an image becomes the frame calibration saw: region of interest, resize, size bound."""

    roi: tuple[int, int, int, int] | None = None
    resize: tuple[int, int] | None = None
    max_pixels: int = 64_000_000


@dataclass(frozen=True)
class ImageVerdict:
    """One image's verdict; `projection` holds the projection's figures when it ran (`ProjectionResult.summary`)."""

    source: str
    verdict: str
    fault: str | None = None
    gate: str | None = None
    error: str | None = None
    projection: dict | None = None
    map_png: str | None = None
    overlay_png: str | None = None

    @property
    def projected(self) -> bool:
        return self.projection is not None

    @property
    def score(self) -> float | None:
        return self.projection["score"] if self.projection else None

    @property
    def baseline_score(self) -> float | None:
        return self.projection["baseline_score"] if self.projection else None

    @property
    def iterations_mean(self) -> float | None:
        return self.projection["iterations_mean"] if self.projection else None

    @property
    def stop_reasons(self) -> dict[str, int]:
        return self.projection["stop_reasons"] if self.projection else {}

    def as_json(self) -> dict:
        if self.projection is None:
            d = {"source": self.source, "verdict": self.verdict, "fault": self.fault}
            if self.error is not None:
                d["error"] = self.error
        else:
            d = self.projection | {"map_png": self.map_png, "overlay_png": self.overlay_png, "verdict": self.verdict}
            if self.fault:
                d["fault"] = self.fault
        if self.gate:
            d["gate"] = self.gate
        return d


@dataclass
class ProjectReport:
    """Every image's verdict, the counts, and what ran them; `as_json` is summary.json."""

    bundle: str
    backend: str
    providers: list[str]
    image_threshold: float | None
    gate_calibrated: bool
    images: list[ImageVerdict] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        """ "path: reason" of every image that could not be read or judged."""
        return [f"{v.source}: {v.error}" for v in self.images if v.error is not None]

    def as_json(self) -> dict:
        gates = sorted({v.gate for v in self.images if v.gate})
        return {
            "bundle": self.bundle,
            "backend": self.backend,
            "providers": self.providers,
            "image_threshold": self.image_threshold,
            "counts": {k: sum(v.verdict == k for v in self.images) for k in VERDICTS},
            "gate": {"calibrated": self.gate_calibrated, "by_check": {g: sum(v.gate == g for v in self.images) for g in gates}},
            "images": [v.as_json() for v in self.images],
            "failed": self.failed,
        }


def judge_image(proj, gate, manifest, path: Path, stem: str, out: Path, settings, framing: Framing) -> ImageVerdict:
    """Read, gate, project and judge one image; its map and overlay PNGs are written under `out`."""
    from edgeproj import overlays
    from edgeproj.data.images import read_image
    from edgeproj.runtime.framing import frame_as_stated
    from edgeproj.runtime.verdict import judge

    cal = manifest.calibration
    thr = cal.pixel_threshold
    vmax = overlays.colour_top(thr)
    try:
        image = frame_as_stated(read_image(path, manifest.channels, max_pixels=framing.max_pixels), framing.roi, framing.resize)
        checked = gate.check_frame(image)
        if not checked.passed:  # judged FAULT without a projection: the frame shows no judgeable part
            v = judge(None, cal.image_threshold, gate=checked)
            return ImageVerdict(str(path), v.verdict, fault=v.reason, gate=v.gate)
        (res,) = proj.project([image], settings=settings)
        checked = checked.merged(gate.check_model(res.rec_loss0))
        res.source = str(path)
        map_png, overlay_png = out / f"{stem}_map.png", out / f"{stem}_overlay.png"
        overlays.write(map_png, overlays.heatmap(res.map, vmax=vmax))
        overlays.write(overlay_png, overlays.overlay(image, res.map, thr, vmax=vmax))
    except (DataError, EdgeprojError) as exc:
        return ImageVerdict(
            str(path), FAULT, fault=str(exc), error=str(exc), gate="unreadable" if isinstance(exc, DataError) else None
        )
    v = judge(res.score, cal.image_threshold, res.diverged, gate=checked)
    return ImageVerdict(
        str(path), v.verdict, fault=v.reason or None, gate=v.gate or None, projection=res.summary(),
        map_png=str(map_png), overlay_png=str(overlay_png),
    )  # fmt: skip


def project_files(
    proj, gate, manifest, paths: list[Path], stems: list[str], out: Path, settings, framing: Framing,
    report: ProjectReport, tick: Callable[[str], None] = lambda info: None,
) -> ProjectReport:  # fmt: skip
    """Judge every image in order into `report` (`tick` gets "stem: VERDICT" after each)."""
    for path, stem in zip(paths, stems, strict=True):
        v = judge_image(proj, gate, manifest, path, stem, out, settings, framing)
        report.images.append(v)
        tick(f"{stem}: {v.verdict}" + (f" ({v.gate})" if v.gate and not v.projected and v.error is None else ""))
    return report
