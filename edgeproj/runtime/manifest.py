"""The bundle manifest: the only thing the runtime reads besides the graphs (torch-free, onnx-free).

A bundle directory holds `manifest.json`, `gradient.onnx` and `step.onnx`. Loading checks the schema
version and every graph's sha256, and names what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from edgeproj.errors import BundleError
from edgeproj.preprocess import Preprocess

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
# Node-name prefix of the step graph's optimizer tail (export writes it, TensorRT pins it to FP32).
ADAM_SCOPE = "adam/"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class GraphInfo:
    """One ONNX graph of the bundle."""

    file: str
    sha256: str
    bytes: int
    inputs: list[str]
    outputs: list[str]
    opset: int


@dataclass(frozen=True)
class StopRule:
    """When the projection of one sample ends (paper section 3).

    rec_loss_threshold: stop once L_r falls below it (paper: minimum L_r over the training set);
    None disables the rule. energy_rtol/window: stop when the energy's relative change over the last
    `window` iterations is below rtol. check_every: GPU backends read the stop signals back every k steps.
    """

    rec_loss_threshold: float | None = None
    energy_rtol: float = 1e-4
    window: int = 5
    check_every: int = 5


@dataclass(frozen=True)
class Projection:
    """Optimizer settings of the projection loop.

    alpha, lam, tuned and tuned_on_step are graph inputs, so changing them needs no re-export. beta1,
    beta2, eps and clip are constants inside the step graph, recorded here for readers and reports.
    """

    alpha: float = 0.05
    lam: float = 0.05
    max_iterations: int = 100
    tuned: bool = True
    tuned_on_step: bool = True
    map_kind: str = "dssim_projection"
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    clip: tuple[float, float] = (0.0, 1.0)
    stop: StopRule = field(default_factory=StopRule)

    @classmethod
    def from_dict(cls, d: dict) -> "Projection":
        d = dict(d)
        d["stop"] = StopRule(**d.get("stop", {}))
        d["clip"] = tuple(d.get("clip", (0.0, 1.0)))
        return cls(**d)


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
    training: dict
    versions: dict
    parity: dict
    calibration: dict
    created: str = ""
    cost: dict = field(default_factory=dict)  # FLOPs per sample-iteration, counted at export
    extra: dict = field(default_factory=dict)  # other top-level keys, kept verbatim on rewrite

    def graph_path(self, name: str) -> Path:
        if name not in self.graphs:
            raise BundleError(f"bundle '{self.root}' has no '{name}' graph (it has {sorted(self.graphs)})")
        return self.root / self.graphs[name].file

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("root")
        extra = d.pop("extra")
        d["preprocess"] = self.preprocess.to_dict()
        return extra | d

    def with_updates(self, **changes) -> "Manifest":
        return replace(self, **changes)


_FIELDS = {"schema_version", "edgeproj_version", "variant", "channels", "size", "ssim_window", "preprocess", "graphs",
           "projection", "training", "versions", "parity", "calibration", "created", "cost"}


def _parse(root: Path, d: dict) -> Manifest:
    try:
        return Manifest(
            root=root,
            schema_version=int(d["schema_version"]),
            edgeproj_version=str(d["edgeproj_version"]),
            variant=str(d["variant"]),
            channels=int(d["channels"]),
            size=int(d["size"]),
            ssim_window=int(d.get("ssim_window", 11)),
            preprocess=Preprocess.from_dict(d["preprocess"]),
            graphs={k: GraphInfo(**v) for k, v in d["graphs"].items()},
            projection=Projection.from_dict(d["projection"]),
            training=dict(d.get("training", {})),
            versions=dict(d.get("versions", {})),
            parity=dict(d.get("parity", {})),
            calibration=dict(d.get("calibration", {})),
            created=str(d.get("created", "")),
            cost=dict(d.get("cost", {})),
            extra={k: v for k, v in d.items() if k not in _FIELDS},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"manifest of '{root}' is malformed ({type(exc).__name__}: {exc}); re-export the bundle") from None


def load_manifest(bundle: Path, verify: bool = True) -> Manifest:
    """Read `bundle/manifest.json`; with verify, check schema version and each graph's size and sha256."""
    root = Path(bundle)
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(f"'{root}' is not a bundle: {MANIFEST} is missing (create one with `edgeproj export`)")
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"'{path}' is not valid JSON ({exc}); re-export the bundle") from None
    version = d.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"bundle '{root}' has manifest schema {version}, this edgeproj reads schema {SCHEMA_VERSION}; re-export it with this version"
        )
    manifest = _parse(root, d)
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


def write_manifest(manifest_or_dict, bundle: Path | None = None) -> Path:
    """Write manifest.json atomically (temporary file, fsync, rename): a kill leaves the old one intact."""
    if isinstance(manifest_or_dict, Manifest):
        root, data = manifest_or_dict.root, manifest_or_dict.to_dict()
    else:
        root, data = Path(bundle), dict(manifest_or_dict)
    path = root / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(data, indent=2, default=_json_default) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable (power loss); a process kill is covered by the rename alone
        fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return path


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
