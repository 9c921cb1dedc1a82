"""The bundle manifest: the only thing the runtime reads besides the graphs (torch-free, onnx-free).

A bundle directory holds `manifest.json`, `gradient.onnx`, `step.onnx`, and (bundles exported since the
split step) `forward.onnx` and `update.onnx`. One typed schema serves both sides: export builds a
`Manifest` and writes it, the runtime loads the same dataclasses. Loading checks
the schema version, that graph files are plain names inside the bundle, every graph's sha256, the graph
names recorded against the contract, and every projection setting and threshold against its bounds.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from edgeproj import contract
from edgeproj.errors import BundleError, ConfigError
from edgeproj.files import sha256_file, unwritable_reason, write_durably
from edgeproj.jsonio import dumps_strict
from edgeproj.preprocess import Preprocess

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
MAP_KINDS = ("dssim_projection", "dssim_recon", "squared_error")
# Image scores (edgeproj.runtime.scoring.Scorer), name -> (Gaussian sigma of the smoothing in pixels, 0 for
# none; the normalization of the map by the normal images' own map statistics first, which calibration
# measures (Calibration.map_norm): None, "border" (by distance to the image border) or "border_contrast"
# (and by local contrast); whether the texture check (edgeproj.runtime.texture) is fused with it: the
# *_tex kinds). A manifest without the field predates the choice: map_max. `calibrate` chooses among them
# on synthetic defects (edgeproj.calibration.score_choice), in this order of preference.
IMAGE_SCORE_SIGMA = 4.0
_PROJECTION_SCORES = {
    "map_max": (0.0, None),
    "map_max_smoothed": (IMAGE_SCORE_SIGMA, None),
    "map_max_smoothed8": (8.0, None),
    "edge_max": (0.0, "border"),
    "edge_max_smoothed": (IMAGE_SCORE_SIGMA, "border"),
    "edge_max_smoothed8": (8.0, "border"),
    "norm_max": (0.0, "border_contrast"),
    "norm_max_smoothed": (IMAGE_SCORE_SIGMA, "border_contrast"),
    "norm_max_smoothed8": (8.0, "border_contrast"),
}
TEXTURE_SUFFIX = "_tex"
IMAGE_SCORE_SPECS = {k: (*v, False) for k, v in _PROJECTION_SCORES.items()} | {
    k + TEXTURE_SUFFIX: (*v, True) for k, v in _PROJECTION_SCORES.items()
}
IMAGE_SCORES = tuple(IMAGE_SCORE_SPECS)


def projection_score(kind: str) -> str:
    """The projection-only part of an image score: the kind without the texture check (map_max_tex -> map_max)."""
    return kind[: -len(TEXTURE_SUFFIX)] if kind.endswith(TEXTURE_SUFFIX) else kind


# Valid ranges of the projection settings, for export and for every run-time override alike. A value
# outside them can silently turn a defect into a good part (no step, or a step that jumps off the data).
ALPHA_RANGE = (1e-6, 1.0)  # Adam's step on [0, 1] images: beyond 1 a single step crosses the whole range
LAM_RANGE = (0.0, 10.0)
MAX_ITERATIONS_RANGE = (1, 10_000)
ENERGY_RTOL_RANGE = (0.0, 0.5)
WINDOW_RANGE = (1, 1000)
CHECK_EVERY_RANGE = (1, 1000)


def check_range(name: str, value, bounds: tuple, integer: bool = False) -> None:
    """Raise ConfigError unless `value` is a finite number (an integer where asked) within `bounds`."""
    lo, hi = bounds
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and lo <= value <= hi
    if ok and integer:
        ok = float(value).is_integer()
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name} must be {kind} in [{lo:g}, {hi:g}], got {value!r}")


def finite_or_none(name: str, value) -> float | None:
    """A threshold: None, or a finite float (ConfigError otherwise)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class GraphInfo:
    """One ONNX graph of the bundle: a plain file name inside the bundle, its checksum and I/O names."""

    file: str
    sha256: str
    bytes: int
    inputs: list[str]
    outputs: list[str]
    opset: int

    def __post_init__(self):
        name = str(self.file)
        if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
            raise ConfigError(f"graph file '{name}' must be a plain file name inside the bundle")


@dataclass(frozen=True)
class StopRule:
    """When the projection of one sample ends (paper section 3).

    rec_loss_threshold: stop once L_r falls below it (paper: minimum L_r over the training set);
    None disables the rule. energy_rtol/window: stop when the energy's relative change over the last
    `window` iterations is at most rtol (0 disables). check_every: GPU backends read the stop signals
    back every k steps.
    """

    rec_loss_threshold: float | None = None
    energy_rtol: float = 1e-4
    window: int = 5
    check_every: int = 5

    def __post_init__(self):
        object.__setattr__(self, "rec_loss_threshold", finite_or_none("the L_r stop threshold", self.rec_loss_threshold))
        check_range("energy rtol", self.energy_rtol, ENERGY_RTOL_RANGE)
        check_range("the energy window", self.window, WINDOW_RANGE, integer=True)
        check_range("check every", self.check_every, CHECK_EVERY_RANGE, integer=True)

    def off(self) -> StopRule:
        """No stop rule: the projection runs its full iteration count."""
        return replace(self, rec_loss_threshold=None, energy_rtol=0.0)

    @property
    def is_off(self) -> bool:
        """True when no rule can end a projection early (every sample runs max_iterations)."""
        return self.rec_loss_threshold is None and self.energy_rtol <= 0


@dataclass(frozen=True)
class Projection:
    """Settings of the projection loop, validated on construction (export and run-time overrides alike).

    alpha, lam, tuned and tuned_on_step are graph inputs, so changing them needs no re-export. beta1,
    beta2, eps and clip are constants inside the step graph (edgeproj.contract), recorded for readers.
    """

    alpha: float = 0.05
    lam: float = 0.05
    max_iterations: int = 100
    tuned: bool = True
    tuned_on_step: bool = True
    map_kind: str = "dssim_projection"
    image_score: str = "map_max_smoothed"  # chosen by the image-score study (docs/method.md)
    beta1: float = contract.ADAM_BETA1
    beta2: float = contract.ADAM_BETA2
    eps: float = contract.ADAM_EPS
    clip: tuple[float, float] = (0.0, 1.0)
    stop: StopRule = field(default_factory=StopRule)

    def __post_init__(self):
        check_range("alpha", self.alpha, ALPHA_RANGE)
        check_range("lambda", self.lam, LAM_RANGE)
        check_range("max iterations", self.max_iterations, MAX_ITERATIONS_RANGE, integer=True)
        if self.map_kind not in MAP_KINDS:
            raise ConfigError(f"unknown map kind '{self.map_kind}'; choose one of {', '.join(MAP_KINDS)}")
        if self.image_score not in IMAGE_SCORES:
            raise ConfigError(f"unknown image score '{self.image_score}'; choose one of {', '.join(IMAGE_SCORES)}")
        object.__setattr__(self, "max_iterations", int(self.max_iterations))
        object.__setattr__(self, "tuned", bool(self.tuned))
        object.__setattr__(self, "tuned_on_step", bool(self.tuned_on_step))
        object.__setattr__(self, "clip", tuple(self.clip))

    @classmethod
    def from_dict(cls, d: dict) -> Projection:
        d = dict(d)
        d["stop"] = StopRule(**d.get("stop", {}))
        # Thresholds calibrated before image scores were selectable were measured on the map maximum.
        d.setdefault("image_score", "map_max")
        return cls(**d)

    def with_overrides(self, **overrides) -> Projection:
        """A validated copy with the given settings changed; None keeps a value. Stop-rule fields
        (rec_loss_threshold, energy_rtol, window, check_every) go to `stop`; rec_loss_threshold=None
        cannot disable the rule here: use `without_rec_loss_stop()`."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        stop_keys = {f.name for f in fields(StopRule)}
        unknown = set(changes) - stop_keys - {f.name for f in fields(Projection)}
        if unknown:
            raise ConfigError(f"unknown projection setting(s) {sorted(unknown)}")
        stop_changes = {k: changes.pop(k) for k in list(changes) if k in stop_keys}
        proj = replace(self, **changes)
        return replace(proj, stop=replace(proj.stop, **stop_changes)) if stop_changes else proj

    def without_rec_loss_stop(self) -> Projection:
        """The same settings without the L_r threshold rule (inpainting runs to convergence)."""
        return replace(self, stop=replace(self.stop, rec_loss_threshold=None))

    def without_stop_rules(self) -> Projection:
        """The same settings with every stop rule off (fixed-iteration studies and benchmarks)."""
        return replace(self, stop=self.stop.off())


_CALIBRATION_SECTIONS = (
    "method", "targets", "images", "rec_loss_at_x0", "measured", "labelled", "precision", "gate", "map_norm", "image_score_choice",
)  # fmt: skip


@dataclass(frozen=True)
class Calibration:
    """Thresholds measured on normal images by `edgeproj calibrate`, and how they were obtained.

    The three thresholds are None until calibrated, and finite when present (a non-finite threshold
    would make every comparison false, so every defect OK). `precision` holds the FP16 verdict. `gate`
    holds the frame gate's accepted ranges (edgeproj.runtime.gate; empty for calibrations made before it).
    """

    rec_loss_threshold: float | None = None
    pixel_threshold: float | None = None
    image_threshold: float | None = None
    method: dict = field(default_factory=dict)
    targets: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)
    date: str = ""
    edgeproj_version: str = ""
    rec_loss_at_x0: dict = field(default_factory=dict)
    measured: dict = field(default_factory=dict)
    labelled: dict | None = None
    precision: dict = field(default_factory=dict)
    gate: dict = field(default_factory=dict)
    # The normal images' map statistics by local contrast (edgeproj.runtime.scoring.MapNorm), for the
    # norm_* image scores; and how the image score was chosen (candidates, figures, rule).
    map_norm: dict = field(default_factory=dict)
    image_score_choice: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("rec_loss_threshold", "pixel_threshold", "image_threshold"):
            object.__setattr__(self, name, finite_or_none(name.replace("_", " "), getattr(self, name)))
        # Every reader does .get() on these sections: a null or a list there is a malformed manifest.
        for name in _CALIBRATION_SECTIONS:
            v = getattr(self, name)
            if not isinstance(v, dict) and not (name == "labelled" and v is None):  # labelled: None without a set
                raise ConfigError(f"calibration.{name} must be an object, got {type(v).__name__}; recalibrate the bundle")

    @property
    def calibrated(self) -> bool:
        return self.image_threshold is not None

    @property
    def fp16(self) -> dict | None:
        """The measured FP16 verdict ({"allowed": bool, ...}) or None when not measured."""
        v = self.precision.get("fp16")
        return v if isinstance(v, dict) else None

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def to_dict(self) -> dict:
        """The manifest section; empty when never calibrated."""
        if self == Calibration():
            return {}
        d = asdict(self)
        if d["labelled"] is None:
            d.pop("labelled")
        if not d["gate"]:
            d.pop("gate")
        return d


@dataclass(frozen=True)
class InputSpec:
    """What the graphs take: layout, dtype, value range and colour order of x."""

    layout: str = "NCHW"
    dtype: str = "float32"
    range: tuple[float, float] = (0.0, 1.0)
    color: str = "gray"
    scale: str = "pixel / (2^bits - 1)"


@dataclass(frozen=True)
class Manifest:
    """Everything the runtime needs about a bundle."""

    root: Path
    schema_version: int
    edgeproj_version: str
    variant: str
    channels: int
    size: int
    ssim_window: int
    preprocess: Preprocess
    graphs: dict[str, GraphInfo]
    projection: Projection
    input: InputSpec = field(default_factory=InputSpec)
    training: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    parity: dict = field(default_factory=dict)
    calibration: Calibration = field(default_factory=Calibration)
    created: str = ""
    cost: dict = field(default_factory=dict)  # FLOPs per sample-iteration, counted at export
    notes: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # unknown top-level keys, kept verbatim on rewrite

    def graph_path(self, name: str) -> Path:
        if name not in self.graphs:
            raise BundleError(f"bundle '{self.root}' has no '{name}' graph (it has {sorted(self.graphs)})")
        return self.root / self.graphs[name].file

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("root", "extra")}
        d["preprocess"] = self.preprocess.to_dict()
        d["graphs"] = {k: asdict(g) for k, g in self.graphs.items()}
        d["projection"] = asdict(self.projection)
        d["input"] = asdict(self.input)
        d["calibration"] = self.calibration.to_dict()
        return self.extra | d

    @classmethod
    def from_dict(cls, root: Path, d: dict) -> Manifest:
        """Parse a manifest document; BundleError names what is malformed."""
        if not isinstance(d, dict):
            raise BundleError(f"manifest of '{root}' is not a JSON object; re-export the bundle")
        known = {f.name for f in fields(cls)} - {"root", "extra"}
        try:
            # Its own message: a malformed calibration is cured by recalibrating, not by re-exporting.
            calibration = Calibration.from_dict(dict(d.get("calibration", {})))
        except ConfigError as exc:
            raise BundleError(f"manifest of '{root}': {exc}") from None
        except (TypeError, ValueError) as exc:
            raise BundleError(
                f"manifest of '{root}': the calibration section is malformed ({exc}); recalibrate the bundle"
            ) from None
        try:
            manifest = cls(
                root=Path(root),
                schema_version=int(d["schema_version"]),
                edgeproj_version=str(d["edgeproj_version"]),
                variant=str(d["variant"]),
                channels=int(d["channels"]),
                size=int(d["size"]),
                ssim_window=int(d.get("ssim_window", 11)),
                preprocess=Preprocess.from_dict(d["preprocess"]),
                graphs={k: GraphInfo(**v) for k, v in d["graphs"].items()},
                projection=Projection.from_dict(d["projection"]),
                input=InputSpec(**d.get("input", {})),
                training=dict(d.get("training", {})),
                versions=dict(d.get("versions", {})),
                parity=dict(d.get("parity", {})),
                calibration=calibration,
                created=str(d.get("created", "")),
                cost=dict(d.get("cost", {})),
                notes=dict(d.get("notes", {})),
                extra={k: v for k, v in d.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError, AttributeError, ConfigError) as exc:
            raise BundleError(f"manifest of '{root}' is malformed ({type(exc).__name__}: {exc}); re-export the bundle") from None
        for name, g in manifest.graphs.items():
            contract.check_graph(name, g.inputs, g.outputs, f"manifest of '{root}'")
        split = [name for name in contract.OPTIONAL_GRAPHS if name in manifest.graphs]
        if split and (
            len(split) != len(contract.OPTIONAL_GRAPHS)
            or contract.saved_names(manifest.graphs["forward"].outputs) != contract.saved_names(manifest.graphs["update"].inputs)
        ):
            raise BundleError(
                f"manifest of '{root}': the forward and update graphs do not belong together (one is missing, or "
                "their saved values differ); re-export the bundle"
            )
        return manifest

    def stop_check_mismatch(self, here: str, backend: str) -> str | None:
        """Why this bundle's thresholds do not fit a projection that checks the stop rule `here`
        (`Projector.stop_check`), or None when they were calibrated under the same check.

        A device runner that reads the rule back every k steps lets a tile run up to k steps past the
        point where the CPU stops it; its maps, and so the thresholds that fit them, differ.
        """
        cal = self.calibration
        if not cal.calibrated:
            return None
        recorded = cal.method.get("stop_check", f"{contract.STOP_CHECK_AFTER} (chunk not recorded)")
        if recorded == here:
            return None
        return (
            f"bundle '{self.root}' was calibrated on a projection that checks the stop rule {recorded}; {backend} checks it "
            f"{here}, so tiles stop at other steps and the thresholds may not fit: run `edgeproj calibrate` with "
            f"--backend {backend} on this device, or pass --accept-stop-check to judge with these thresholds anyway"
        )

    @property
    def has_split_step(self) -> bool:
        """The bundle carries the step split into forward and update graphs (bundles exported before lack them)."""
        return all(name in self.graphs for name in contract.OPTIONAL_GRAPHS)

    def with_calibration(self, calibration: Calibration, image_score: str | None = None) -> Manifest:
        """This manifest with a new calibration section, its L_r stop threshold in the projection, and the
        image score calibration chose (None keeps the projection's)."""
        stop = replace(self.projection.stop, rec_loss_threshold=calibration.rec_loss_threshold)
        score = self.projection.image_score if image_score is None else image_score
        notes = dict(self.notes)
        if "image_score" in notes:
            notes["image_score"] = f"{score}: the image-level score compared with the image threshold (chosen by calibrate)"
        return replace(
            self, calibration=calibration, projection=replace(self.projection, stop=stop, image_score=score), notes=notes
        )


def load_manifest(bundle: Path, verify: bool = True) -> Manifest:
    """Read `bundle/manifest.json`; with verify, check each graph's presence and sha256."""
    root = Path(bundle)
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(f"'{root}' is not a bundle: {MANIFEST} is missing (create one with `edgeproj export`)")
    try:
        d = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise BundleError(f"'{path}' is not UTF-8 text; re-copy or re-export the bundle") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"'{path}' is not valid JSON ({exc}); re-export the bundle") from None
    except OSError as exc:
        raise BundleError(f"cannot read '{path}': {exc.strerror}") from None
    if not isinstance(d, dict):
        raise BundleError(f"'{path}' is not a manifest (a JSON {type(d).__name__}, not an object); re-export the bundle")
    version = d.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"bundle '{root}' has manifest schema {version}, this edgeproj reads schema {SCHEMA_VERSION}; re-export it with this version"
        )
    manifest = Manifest.from_dict(root, d)
    if verify:
        for name, g in manifest.graphs.items():
            gp = root / g.file
            if not gp.is_file():
                raise BundleError(f"graph '{name}' ({gp}) listed in the manifest is missing; copy the whole bundle folder")
            digest = sha256_file(gp)
            if digest != g.sha256:
                raise BundleError(
                    f"graph '{name}' ({gp}) fails its checksum (sha256 {digest[:12]}..., manifest says {g.sha256[:12]}...): "
                    "the file is corrupt or was modified; re-copy or re-export the bundle"
                )
    return manifest


def write_manifest(manifest: Manifest) -> Path:
    """Write manifest.json atomically (temporary file, fsync, rename): a kill leaves the old one intact.

    A bundle that cannot be written (read-only, full disk) raises BundleError before anything changes.
    """
    path = manifest.root / MANIFEST
    try:
        write_durably(path, dumps_strict(manifest.to_dict()) + "\n")
    except OSError as exc:
        raise BundleError(f"cannot write '{path}': {exc.strerror or exc}; check the bundle folder is writable") from None
    return path


def check_writable(folder: Path, what: str) -> None:
    """Raise BundleError now, before expensive work, when `folder` cannot take new files."""
    why = unwritable_reason(folder)
    if why:
        raise BundleError(f"{what} '{folder}' is not writable ({why}); fix its permissions or copy it")
