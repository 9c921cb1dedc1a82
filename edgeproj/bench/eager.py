"""The PyTorch side of the bench: the bundle's model in torch and the eager autograd loop it is compared with.

torch is imported inside the functions: the runtime's bench runs (and reports "no torch") without it.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from edgeproj.bench.rows import BenchRow
from edgeproj.bench.workload import TimedLoop, bench_inputs
from edgeproj.runtime.manifest import Manifest


def torch_available() -> bool:
    """torch imports here (the eager rows are measured only then; a device has no torch)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def torch_cuda_available() -> bool:
    """torch is installed with CUDA and sees a GPU (then GPU backends get a same-device torch row)."""
    try:
        import torch
    except ImportError:
        return False
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken CUDA install means no same-device row, not a crash
        return False


def torch_model(manifest: Manifest):
    """The bundle's autoencoder in torch (eval mode), with the run's weights when the run is reachable."""
    from edgeproj.models.autoencoder import build_model
    from edgeproj.models.config import ModelConfig

    cfg = ModelConfig.from_dict(manifest.training.get("model") or {"variant": manifest.variant, "channels": manifest.channels})
    model = build_model(cfg).eval()
    if manifest.training.get("weights"):  # a user's model exported from its weights file, not from a run
        from edgeproj.models.user import load_weights

        load_weights(model.net, Path(manifest.training["weights"]))
        return model
    weights = Path(manifest.training.get("run", "")) / "model.safetensors"
    if weights.is_file():
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(weights)))
    return model


class EagerLoop(TimedLoop):
    """The PyTorch eager autograd loop on one batch, warmed up on entry, then timed one projection per `once()`.

    device="cuda" runs it on the GPU in FP32 (TF32 off, like the runtime's GPU paths), synchronized
    around every timed projection.
    """

    def __init__(self, manifest: Manifest, batch: int, iterations: int, warmup: int, device: str = "cpu"):
        self.manifest, self.batch, self.iterations, self.warmup, self.device = manifest, batch, iterations, warmup, device
        self.cuda = device.startswith("cuda")
        self.name = "torch-cuda" if self.cuda else "torch-eager"
        super().__init__()

    def __enter__(self) -> EagerLoop:
        import torch

        from edgeproj.models.torch_reference import torch_project

        with ExitStack() as stack:
            self.model = torch_model(self.manifest)
            self.x0 = torch.from_numpy(bench_inputs(self.manifest, self.batch))
            self.sync = torch.cuda.synchronize if self.cuda else (lambda: None)
            if self.cuda:
                self.model, self.x0 = self.model.to(self.device), self.x0.to(self.device)
                tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
                stack.callback(_set_tf32, torch, tf32)
                _set_tf32(torch, (False, False))
            self._project = torch_project
            p = self.manifest.projection
            torch_project(self.model, self.x0, p.alpha, p.lam, self.warmup, p.tuned, p.tuned_on_step)
            self.sync()
            self._close = stack.pop_all()
        return self

    def once(self) -> float:
        """One timed projection of `iterations` steps; its latency in ms."""
        p = self.manifest.projection

        def project():
            self._project(self.model, self.x0, p.alpha, p.lam, self.iterations, p.tuned, p.tuned_on_step)
            self.sync()

        return self._timed(project)

    def row(self) -> BenchRow:
        import torch

        return BenchRow(
            backend=self.name,
            batch=self.batch,
            iterations=self.iterations,
            latency_rounds_ms=list(self.latencies),
            error=self.error,
            threads=torch.get_num_threads(),
            torch=torch.__version__,
            device=torch.cuda.get_device_name(torch.device(self.device)) if self.cuda else None,
        )


def _set_tf32(torch, flags: tuple[bool, bool]) -> None:
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
