"""`edgeproj export`: a training run -> a bundle (gradient.onnx, step.onnx, manifest.json)."""

from __future__ import annotations

import datetime as _dt
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgeproj import __version__
from edgeproj.errors import ConfigError
from edgeproj.runtime.manifest import SCHEMA_VERSION, GraphInfo, Projection, StopRule, sha256_file, write_manifest

GRAPHS = {"gradient": "gradient.onnx", "step": "step.onnx"}


@dataclass
class ExportOptions:
    """Projection defaults written into the manifest, and how the graphs are emitted."""

    alpha: float = 0.05
    lam: float = 0.05
    max_iterations: int = 100
    tuned: bool = True
    tuned_on_step: bool = True
    convtranspose: str = "native"
    parity: bool = True
    parity_steps: int = 50

    def __post_init__(self):
        if self.alpha <= 0 or self.lam < 0 or self.max_iterations < 1:
            raise ConfigError("alpha must be > 0, lam >= 0 and max iterations >= 1")


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
    from edgeproj.data.mvtec import normal_images
    from edgeproj.preprocess import Preprocess, to_patches
    from edgeproj.data.images import read_image

    src = cfg.get("data", {}).get("source")
    if not src or not Path(src).exists():
        return None
    pre = Preprocess.from_dict(cfg["preprocess"])
    try:
        paths = normal_images(Path(src))[:4]
        return np.concatenate([to_patches(read_image(p, pre.channels), pre)[0] for p in paths])[:limit]
    except Exception:  # parity probes fall back to synthetic inputs; export itself must not fail here
        return None


def export_bundle(run: Path, out: Path, opts: ExportOptions) -> dict:
    """Write the bundle for training run `run` into `out`; returns the manifest dict."""
    import onnx
    import onnxruntime as ort
    import torch

    from edgeproj.export.energy import build_gradient_graph, build_step_graph
    from edgeproj.export.network import NetworkEmitter, plan_from_model
    from edgeproj.export.parity import gradient_parity, probe_inputs, trajectory_parity
    from edgeproj.training.run import load_run

    model, cfg, stats = load_run(run)
    spec = model_spec(model)
    net = NetworkEmitter(plan_from_model(model), opts.convtranspose)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    graphs = {}
    protos = {"gradient": build_gradient_graph(net, spec), "step": build_step_graph(net, spec)}
    for name, proto in protos.items():
        path = out / GRAPHS[name]
        onnx.save(proto, str(path))
        graphs[name] = asdict(GraphInfo(
            file=GRAPHS[name], sha256=sha256_file(path), bytes=path.stat().st_size,
            inputs=[i.name for i in proto.graph.input], outputs=[o.name for o in proto.graph.output],
            opset=proto.opset_import[0].version,
        ))

    from edgeproj.export.flops import count_flops

    cost = {name: count_flops(proto, 1) for name, proto in protos.items()}
    parity = {}
    if opts.parity:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = {k: ort.InferenceSession(str(out / GRAPHS[k]), so, providers=["CPUExecutionProvider"]) for k in GRAPHS}
        patches = _training_patches(cfg)
        grad_fig = {}
        for n in (1, 7):
            x0, x, _ = probe_inputs(patches, n, spec["channels"], seed=n)
            grad_fig[f"batch{n}"] = gradient_parity(sess["gradient"], model, x0, x, opts.lam)
        x0, _, (defect, mask) = probe_inputs(patches, 2, spec["channels"], seed=3)
        traj = {}
        for label, tuned, on_step in (("standard", False, False), ("tuned_gradient", True, False), ("tuned_step", True, True)):
            traj[label] = trajectory_parity(sess["step"], model, defect, mask, opts.parity_steps, opts.alpha, opts.lam, tuned, on_step)
        parity = {"gradient": grad_fig, "trajectory": traj, "steps": opts.parity_steps, "probe": "training patches" if patches is not None else "synthetic"}

    threshold = stats["min"] if stats else None
    projection = Projection(
        alpha=opts.alpha, lam=opts.lam, max_iterations=opts.max_iterations, tuned=opts.tuned,
        tuned_on_step=opts.tuned_on_step, stop=StopRule(rec_loss_threshold=threshold),
    )
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "edgeproj_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "variant": spec["variant"],
        "channels": spec["channels"],
        "size": spec["size"],
        "ssim_window": spec["ssim_window"],
        "input": {"layout": "NCHW", "dtype": "float32", "range": [0.0, 1.0], "color": "RGB" if spec["channels"] == 3 else "gray",
                  "scale": "pixel / (2^bits - 1)"},
        "preprocess": cfg["preprocess"],
        "graphs": graphs,
        "projection": asdict(projection),
        "notes": {"alpha": "the paper's alpha 0.5 is for plain gradient descent; with Adam on [0, 1] images a smaller alpha is the default"},
        "training": {"run": str(Path(run).resolve()), "rec_loss_stats": stats, "gamma": spec["gamma"],
                     "model": cfg["model"], "data": cfg.get("data", {}), "steps": cfg.get("training", {}).get("steps")},
        "versions": {"edgeproj": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                     "onnxruntime": ort.__version__, "python": platform.python_version(), "convtranspose": opts.convtranspose},
        "parity": parity,
        "cost": {"step_flops_per_sample": cost["step"]["total"], "gradient_flops_per_sample": cost["gradient"]["total"],
                 "step_breakdown": cost["step"]},
        "calibration": {},
    }
    write_manifest(manifest, out)
    return manifest
