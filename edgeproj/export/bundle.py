"""`edgeproj export`: a training run -> a bundle (gradient.onnx, step.onnx, manifest.json)."""

from __future__ import annotations

import datetime as _dt
import platform
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgeproj import __version__, contract
from edgeproj.errors import ConfigError
from edgeproj.export.network import CONVTRANSPOSE_MODES
from edgeproj.preprocess import Preprocess
from edgeproj.runtime.manifest import SCHEMA_VERSION, GraphInfo, InputSpec, Manifest, Projection, sha256_file, write_manifest


@dataclass(frozen=True)
class ExportOptions:
    """The projection defaults written into the manifest, and how the graphs are emitted."""

    projection: Projection = field(default_factory=Projection)
    convtranspose: str = "native"
    parity: bool = True
    parity_steps: int = 50

    def __post_init__(self):
        if self.convtranspose not in CONVTRANSPOSE_MODES:
            raise ConfigError(
                f"unknown ConvTranspose form '{self.convtranspose}'; choose one of {', '.join(CONVTRANSPOSE_MODES)}"
            )
        if not 1 <= self.parity_steps <= 1000:
            raise ConfigError(f"parity steps must be in 1..1000, got {self.parity_steps}")


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


def _training_patches(cfg: dict, limit: int = 64) -> np.ndarray | None:
    """A few training patches for parity probes, if the run's data is still where it was."""
    from edgeproj.data.images import read_image
    from edgeproj.data.mvtec import normal_images
    from edgeproj.preprocess import to_patches

    src = cfg.get("data", {}).get("source")
    if not src or not Path(src).exists():
        return None
    pre = Preprocess.from_dict(cfg["preprocess"])
    try:
        paths = normal_images(Path(src))[:4]
        return np.concatenate([to_patches(read_image(p, pre.channels), pre)[0] for p in paths])[:limit]
    except Exception:  # parity probes fall back to synthetic inputs; export itself must not fail here
        return None


def export_bundle(run: Path, out: Path, opts: ExportOptions, progress=None) -> Manifest:
    """Write the bundle for training run `run` into `out`; returns its manifest.

    `progress` (edgeproj.progress.Progress) shows the graph emission and the parity measurements.
    """
    import onnx
    import onnxruntime as ort
    import torch

    from edgeproj.export.energy import build_gradient_graph, build_step_graph
    from edgeproj.export.flops import count_flops
    from edgeproj.export.network import NetworkEmitter, plan_from_model
    from edgeproj.export.parity import gradient_parity, probe_inputs, trajectory_parity
    from edgeproj.progress import NullProgress
    from edgeproj.training.run import load_run

    progress = progress or NullProgress()
    model, cfg, stats = load_run(run)
    task = progress.add_task("export graphs", total=2, info="")
    spec = model_spec(model)
    net = NetworkEmitter(plan_from_model(model), opts.convtranspose)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    graphs = {}
    protos = {"gradient": build_gradient_graph(net, spec), "step": build_step_graph(net, spec)}
    for name, proto in protos.items():
        path = out / contract.GRAPH_FILES[name]
        onnx.save(proto, str(path))
        graphs[name] = GraphInfo(
            file=contract.GRAPH_FILES[name],
            sha256=sha256_file(path),
            bytes=path.stat().st_size,
            inputs=[i.name for i in proto.graph.input],
            outputs=[o.name for o in proto.graph.output],
            opset=proto.opset_import[0].version,
        )
        progress.update(task, advance=1, info=name)
    cost = {name: count_flops(proto, 1) for name, proto in protos.items()}
    p = opts.projection
    parity = {}
    if opts.parity:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = {
            k: ort.InferenceSession(str(out / f), so, providers=["CPUExecutionProvider"]) for k, f in contract.GRAPH_FILES.items()
        }
        patches = _training_patches(cfg)
        ptask = progress.add_task("parity against PyTorch autograd", total=5, info="")
        grad_fig = {}
        for n in (1, 7):
            x0, x, _ = probe_inputs(patches, n, spec["channels"], seed=n)
            grad_fig[f"batch{n}"] = gradient_parity(sess["gradient"], model, x0, x, p.lam)
            progress.update(ptask, advance=1, info=f"gradient batch {n}")
        x0, _, (defect, mask) = probe_inputs(patches, 2, spec["channels"], seed=3)
        traj = {}
        for label, tuned, on_step in (("standard", False, False), ("tuned_gradient", True, False), ("tuned_step", True, True)):
            traj[label] = trajectory_parity(sess["step"], model, defect, mask, opts.parity_steps, p.alpha, p.lam, tuned, on_step)
            progress.update(ptask, advance=1, info=f"{opts.parity_steps}-step {label}")
        parity = {
            "gradient": grad_fig,
            "trajectory": traj,
            "steps": opts.parity_steps,
            "probe": "training patches" if patches is not None else "synthetic",
        }

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
        notes={
            "alpha": "the paper's alpha 0.5 is for plain gradient descent; with Adam on [0, 1] images a smaller alpha is the default"
        },
        training={
            "run": str(Path(run).resolve()),
            "rec_loss_stats": stats,
            "gamma": spec["gamma"],
            "model": cfg["model"],
            "data": cfg.get("data", {}),
            "steps": cfg.get("training", {}).get("steps"),
        },
        versions={
            "edgeproj": __version__,
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": ort.__version__,
            "python": platform.python_version(),
            "convtranspose": opts.convtranspose,
        },
        parity=parity,
        cost={
            "step_flops_per_sample": cost["step"]["total"],
            "gradient_flops_per_sample": cost["gradient"]["total"],
            "step_breakdown": cost["step"],
        },
    )
    write_manifest(manifest)
    return manifest
