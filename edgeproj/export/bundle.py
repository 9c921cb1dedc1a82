"""`edgeproj export`: a training run -> a bundle (gradient.onnx, step.onnx, forward.onnx, update.onnx,
manifest.json)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgeproj import __version__, contract
from edgeproj.errors import BundleError, ConfigError
from edgeproj.export.network import CONVTRANSPOSE_MODES
from edgeproj.files import sha256_file
from edgeproj.preprocess import Preprocess
from edgeproj.runtime.manifest import (
    MANIFEST,
    SCHEMA_VERSION,
    GraphInfo,
    InputSpec,
    Manifest,
    Projection,
    write_manifest,
)

# How the network's forward pass and input gradient become ONNX nodes:
#   hand:   edgeproj.export.network, written per layer kind for the SSIM-AE (the built-in variants only)
#   traced: edgeproj.export.traced_network, PyTorch's autograd traced and lowered (any model meeting the contract)
#   auto:   hand for the SSIM-AE, traced for a user's architecture. The hand-written graphs stay the built-ins'
#           default: they step as fast or faster (the traced VAEs also compute the unused log-variance half;
#           docs/byo-model.md, measured with `edgeproj bench TRACED --compare HAND`).
EMITTERS = ("auto", "hand", "traced")


@dataclass(frozen=True)
class ExportOptions:
    """The projection defaults written into the manifest, and how the graphs are emitted.

    parity: measure the graphs against PyTorch and refuse to write a bundle whose figures are past the
    bounds of edgeproj.export.parity; accept_parity_failure writes it anyway and records the failures
    in the manifest (`parity.accepted_failure`). emitter: one of EMITTERS.
    """

    projection: Projection = field(default_factory=Projection)
    convtranspose: str = "native"
    parity: bool = True
    parity_steps: int = 50
    accept_parity_failure: bool = False
    emitter: str = "auto"

    def __post_init__(self):
        if self.emitter not in EMITTERS:
            raise ConfigError(f"unknown emitter '{self.emitter}'; choose one of {', '.join(EMITTERS)}")
        if self.convtranspose not in CONVTRANSPOSE_MODES:
            raise ConfigError(
                f"unknown ConvTranspose form '{self.convtranspose}'; choose one of {', '.join(CONVTRANSPOSE_MODES)}"
            )
        if not 1 <= self.parity_steps <= 1000:
            raise ConfigError(f"parity steps must be in 1..1000, got {self.parity_steps}")
        if self.accept_parity_failure and not self.parity:
            raise ConfigError("accepting a parity failure needs parity to be measured; drop --no-parity or the override")


def method_notes(p: Projection) -> dict:
    """What the projection settings mean, for readers of the manifest (the paper's values named as such)."""
    if not p.tuned:
        update = "standard (paper eq. 5): Adam on the unweighted energy gradient"
    elif p.tuned_on_step:
        update = (
            "tuned on the step: Adam on the unweighted energy gradient, its step scaled pixel by pixel by "
            "(x - f(x))^2 divided by its per-sample maximum (the paper's eq. 8 weight, applied after Adam)"
        )
    else:
        update = "tuned on the gradient (paper eq. 8 read literally): the gradient multiplied by (x - f(x))^2 before Adam"
    return {
        "update": update,
        "alpha": (f"Adam step size {p.alpha:g} on images in [0, 1]; the paper states alpha = 0.5 with Adam (sections 3.4 "
                  "and 4.1). The default comes from `edgeproj evaluate --rule-study` on the demo data (docs/method.md)."),
        "lambda": f"{p.lam:g}; the paper's lambda is 0.05",
        "image_score": f"{p.image_score}: the image-level score compared with the image threshold",
    }  # fmt: skip


@dataclass
class ExportSource:
    """What a bundle is exported from: a model (eval mode) with its config and L_r statistics, read from a
    training run (`from_run`) or from a user's architecture and weights file (`from_weights`)."""

    model: object
    cfg: dict
    stats: dict | None
    run: Path | None = None
    weights: Path | None = None

    @classmethod
    def from_run(cls, run: Path) -> ExportSource:
        from edgeproj.training.run import load_run

        model, cfg, stats = load_run(run)
        return cls(model, cfg, stats, run=Path(run))

    @classmethod
    def from_weights(cls, config, weights: Path, mode: str) -> ExportSource:
        """A user's model (a ModelConfig with its architecture) outside a training run: no training statistics
        (calibrate sets the thresholds) and the preprocessing `mode` (object: the whole frame resized to the
        input; texture: tiles of the input's side)."""
        from edgeproj.models.user import from_weights

        model = from_weights(config, weights)
        size = config.size
        pre = Preprocess(mode=mode, resize=size if mode == "object" else max(512, 2 * size), patch=size, stride=size // 2,
                         channels=config.channels)  # fmt: skip
        cfg = {"model": model.config.to_dict(), "preprocess": pre.to_dict(), "data": {}}
        return cls(model, cfg, None, weights=Path(weights))


def network_emitter(model, spec: dict, opts: ExportOptions):
    """The network emitter `opts.emitter` asks for, and its name (hand or traced)."""
    from edgeproj.export.network import NetworkEmitter, plan_from_model
    from edgeproj.export.traced_network import TracedNetwork

    user = bool(model.config.architecture)
    name = opts.emitter if opts.emitter != "auto" else ("traced" if user else "hand")
    if name == "hand":
        if user:
            raise ConfigError(
                f"--emitter hand writes the built-in SSIM-AE only; {model.config.architecture} exports with --emitter traced"
            )
        return NetworkEmitter(plan_from_model(model), opts.convtranspose), name
    if opts.convtranspose != "native":
        raise ConfigError(
            f"--convtranspose {opts.convtranspose} shapes the hand-written graphs only; drop it with --emitter traced"
        )
    label = model.config.architecture or f"the built-in {model.variant.label}"
    return TracedNetwork(model, spec["channels"], spec["size"], label), name


def model_spec(model) -> dict:
    """What the energy emitter needs to know about a model besides its layers."""
    c = model.config
    return {
        "variant": c.variant,
        "channels": c.channels,
        "size": c.size,
        "ssim_window": c.ssim_window,
        "gamma": float(model.gamma.detach()) if model.gamma is not None else None,
    }


def _heldout_summary(run: Path) -> dict | None:
    """The run's held-out verdict and stop statistics (not the whole history), or None for older runs."""
    import json

    from edgeproj.training import run as runfiles

    path = run / runfiles.HELDOUT
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return {k: doc.get(k) for k in ("images", "convergence", "stop", "note", "samples_per_s") if k in doc}


def _training_patches(cfg: dict, limit: int = 64) -> tuple[np.ndarray | None, str]:
    """Training patches for the parity probes, or None and why they cannot be read (data moved)."""
    from edgeproj.data.images import read_image
    from edgeproj.data.mvtec import normal_images
    from edgeproj.preprocess import to_patches

    src = cfg.get("data", {}).get("source")
    if not src:
        return None, "the run does not record its training data"
    if not Path(src).exists():
        return None, f"the training data '{src}' is not there any more"
    pre = Preprocess.from_dict(cfg["preprocess"])
    try:
        paths = normal_images(Path(src))[:4]
        return np.concatenate([to_patches(read_image(p, pre.channels), pre)[0] for p in paths])[:limit], ""
    except Exception as exc:  # parity probes fall back to synthetic inputs; export itself must not fail here
        return None, f"the training data '{src}' cannot be read ({type(exc).__name__}: {exc})"


def measure_parity(sessions: dict, model, spec: dict, cfg: dict, p: Projection, steps: int, progress) -> dict:
    """The parity section of the manifest: figures, bounds, probe, and the failures (check_parity)."""
    from edgeproj.export.parity import (
        check_parity,
        gradient_parity,
        optimizer_parity,
        parity_bounds,
        probe_inputs,
        synthetic_patches,
        trajectory_parity,
        uninformative,
    )

    patches, why = _training_patches(cfg)
    probe = "training patches"
    if patches is None:
        probe = f"synthetic fallback: {why}"
        patches = synthetic_patches(16, spec["channels"], spec["size"], seed=0)
    task = progress.add_task("parity against PyTorch autograd", total=8, info="")
    grad_fig = {}
    for n in (1, 7):
        x0, x, _ = probe_inputs(patches, n, spec["channels"], seed=n, size=spec["size"])
        grad_fig[f"batch{n}"] = gradient_parity(sessions["gradient"], model, x0, x, p.lam)
        progress.update(task, advance=1, info=f"gradient batch {n}")
    rules = (("standard", False, False), ("tuned_gradient", True, False), ("tuned_step", True, True))
    x0, _, _ = probe_inputs(patches, 3, spec["channels"], seed=11, size=spec["size"])
    opt = {}
    for label, tuned, on_step in rules:
        opt[label] = optimizer_parity(sessions["step"], sessions["gradient"], x0, p.alpha, p.lam, tuned, on_step)
        progress.update(task, advance=1, info=f"optimizer {label}")
    _, _, (defect, mask) = probe_inputs(patches, 2, spec["channels"], seed=3, size=spec["size"])
    traj = {}
    for label, tuned, on_step in rules:
        traj[label] = trajectory_parity(sessions["step"], model, defect, mask, steps, p.alpha, p.lam, tuned, on_step)
        progress.update(task, advance=1, info=f"{steps}-step {label}")
    parity = {
        "measured": True,
        "probe": probe,
        "gradient": grad_fig,
        "optimizer": opt,
        "trajectory": traj,
        "steps": steps,
        "bounds": parity_bounds(),
        # The rule the bundle deploys is held to the trajectory limits; on the others a figure PyTorch
        # cannot judge itself (its float32 and float64 runs apart past the limit) is bounded by its spread.
        "deployed_rule": next(label for label, tuned, on_step in rules if (tuned, on_step) == (p.tuned, p.tuned_on_step)),
        "uninformative": {label: u for label, fig in traj.items() if (u := uninformative(fig))},
    }
    parity["failures"] = check_parity(parity)
    parity["passed"] = not parity["failures"]
    return parity


def _split_figure(sessions: dict, spec: dict, p: Projection) -> dict:
    """forward + update against the step graph on smooth synthetic patches (ONNX Runtime only, so measured
    even under --no-parity); `dropped` says why a pair that differs is left out of the bundle."""
    from edgeproj.export.parity import probe_inputs, split_failure, split_parity

    x0, _, _ = probe_inputs(None, 3, spec["channels"], seed=13, size=spec["size"])
    fig = split_parity(sessions["step"], sessions["forward"], sessions["update"], sessions["gradient"], x0, p.alpha, p.lam)
    if problem := split_failure(fig):
        fig["dropped"] = f"{problem}: forward.onnx and update.onnx left out, the CPU runs the step graph"
    return fig


def _graph_info(path: Path, proto) -> GraphInfo:
    return GraphInfo(
        file=path.name,
        sha256=sha256_file(path),
        bytes=path.stat().st_size,
        inputs=[i.name for i in proto.graph.input],
        outputs=[o.name for o in proto.graph.output],
        opset=proto.opset_import[0].version,
    )


def _install(staging: Path, out: Path, files: list[str]) -> None:
    """Move the staged graphs into `out`, an old manifest out of the way first (its checksums no longer hold)."""
    out.mkdir(parents=True, exist_ok=True)
    old = out / MANIFEST
    if old.exists():
        old.unlink()
    for name in files:
        os.replace(staging / name, out / name)


def export_bundle(run: Path | ExportSource, out: Path, opts: ExportOptions, progress=None) -> Manifest:
    """Write the bundle for training run `run` (or an ExportSource) into `out`; returns its manifest.

    The graphs are written to a staging folder beside `out` and measured there; only when parity passes
    (or its failure is accepted, or parity is off) do they move into `out`, the manifest last. A failed
    export raises BundleError naming each figure past its bound and leaves no new bundle behind (an
    existing bundle in `out` is left as it was). `progress` (edgeproj.progress.Progress) shows the
    graph emission and the parity measurements.
    """
    import onnx
    import onnxruntime as ort
    import torch

    from edgeproj.export.energy import build_forward_graph, build_gradient_graph, build_step_graph, build_update_graph
    from edgeproj.export.flops import count_flops
    from edgeproj.progress import NullProgress

    progress = progress or NullProgress()
    source = run if isinstance(run, ExportSource) else ExportSource.from_run(run)
    model, cfg, stats = source.model, source.cfg, source.stats
    spec = model_spec(model)
    # Traced and lowered (or checked against the contract) before anything is written: an unsupported
    # operation or a model breaking the contract is one error and no folder.
    net, emitter = network_emitter(model, spec, opts)
    task = progress.add_task("export graphs", total=len(contract.GRAPH_FILES), info="")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    except OSError as exc:
        raise BundleError(f"cannot write beside '{out}': {exc.strerror or exc}; check the folder is writable") from None
    try:
        graphs = {}
        builders = {
            "gradient": build_gradient_graph,
            "step": build_step_graph,
            "forward": build_forward_graph,
            "update": build_update_graph,
        }
        protos = {name: build(net, spec) for name, build in builders.items()}
        for name, proto in protos.items():
            path = staging / contract.GRAPH_FILES[name]
            onnx.save(proto, str(path))
            graphs[name] = _graph_info(path, proto)
            progress.update(task, advance=1, info=name)
        cost = {name: count_flops(proto, 1) for name, proto in protos.items()}
        p = opts.projection
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sessions = {
            k: ort.InferenceSession(str(staging / f), so, providers=["CPUExecutionProvider"])
            for k, f in contract.GRAPH_FILES.items()
        }
        split = _split_figure(sessions, spec, p)
        if opts.parity:
            parity = measure_parity(sessions, model, spec, cfg, p, opts.parity_steps, progress)
            del sessions
            if parity["failures"]:
                if not opts.accept_parity_failure:
                    raise BundleError(
                        f"{'; '.join(parity['failures'])} (probe: {parity['probe']}): the exported graphs do not "
                        "compute what PyTorch computes, so no bundle was written; pass --accept-parity-failure "
                        "to write it anyway (recorded in the manifest)"
                    )
                parity["accepted_failure"] = list(parity["failures"])
        else:
            del sessions
            parity = {"measured": False, "note": "parity with PyTorch was not measured (export --no-parity)"}
        parity["split"] = split
        if "dropped" in split:  # the pair is optional: without it the CPU runs the step graph, as checked
            for name in contract.OPTIONAL_GRAPHS:
                graphs.pop(name)

        # The L_r stop threshold starts at the paper's rule (minimum over the training set); calibrate resets it.
        threshold = stats["min"] if stats else None
        projection = replace(p, stop=replace(p.stop, rec_loss_threshold=threshold))
        manifest = Manifest(
            root=out,
            schema_version=SCHEMA_VERSION,
            edgeproj_version=__version__,
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            variant=spec["variant"],
            channels=spec["channels"],
            size=spec["size"],
            ssim_window=spec["ssim_window"],
            input=InputSpec(color="RGB" if spec["channels"] == 3 else "gray"),
            preprocess=Preprocess.from_dict(cfg["preprocess"]),
            graphs=graphs,
            projection=projection,
            notes=method_notes(opts.projection),
            training={
                **({"run": str(source.run.resolve())} if source.run else {}),
                **({"weights": str(source.weights.resolve())} if source.weights else {}),
                "rec_loss_stats": stats,
                "gamma": spec["gamma"],
                "model": cfg["model"],
                "data": cfg.get("data", {}),
                "steps": cfg.get("training", {}).get("steps"),
                "preprocess_choice": cfg.get("preprocess_choice"),
                "heldout": _heldout_summary(source.run) if source.run else None,
            },
            versions={
                "edgeproj": __version__,
                "torch": torch.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": ort.__version__,
                "python": platform.python_version(),
                "convtranspose": opts.convtranspose if emitter == "hand" else None,
                "emitter": emitter,
            },
            parity=parity,
            cost={
                "step_flops_per_sample": cost["step"]["total"],
                "gradient_flops_per_sample": cost["gradient"]["total"],
                "step_breakdown": cost["step"],
            },
        )
        try:
            _install(staging, out, [g.file for g in graphs.values()])
        except OSError as exc:
            raise BundleError(f"cannot write the bundle into '{out}': {exc.strerror or exc}") from None
        write_manifest(manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest
