"""Options shared by the verbs: value ranges and choices declared on the option, output checks, one backend choice.

Every numeric option declares its range (shown in --help, checked by the parser before any work) and
rejects NaN and infinity; every enumerated option declares its choices. The projection overrides use
the same bounds as export (edgeproj.runtime.manifest), so a run-time override cannot do what export
refuses.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

import typer

from edgeproj.cli.groups import OptionGroup, flag
from edgeproj.errors import BackendError, ConfigError
from edgeproj.files import unwritable_reason
from edgeproj.models.variants import LOSSES
from edgeproj.runtime import backends
from edgeproj.runtime.manifest import ALPHA_RANGE, LAM_RANGE, MAP_KINDS, MAX_ITERATIONS_RANGE

MapKind = Literal[MAP_KINDS]
MAX_BATCH = 1024
MAX_THREADS = 64


def _finite(value):
    """Option callback: NaN and infinity pass a float range check (comparisons are false); refuse them."""
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if isinstance(v, float) and not math.isfinite(v):
            raise typer.BadParameter(f"{v} is not a finite number")
    return value


def float_option(default, lo: float, hi: float, help: str, *decls: str):
    """A float option with a closed range [lo, hi], finite values only."""
    return typer.Option(default, *decls, min=lo, max=hi, callback=_finite, help=help)


def int_option(default, lo: int, hi: int | None, help: str, *decls: str):
    return typer.Option(default, *decls, min=lo, max=hi, help=help)


# A user's model's --loss choices, from the torch-free registry.
LossName = Literal[tuple(LOSSES)]


def model_option(help: str, panel: str):
    """--model: a user's autoencoder as 'package.module:Name' (edgeproj.models.user)."""
    return typer.Option(None, "--model", help=help, rich_help_panel=panel)


def loss_option(help: str, panel: str):
    """--loss: a user's model's L_r, one of edgeproj.models.variants.LOSSES (default l2, resolved by the verb)."""
    return typer.Option(None, help=help, rich_help_panel=panel)


def known_backend(value: str) -> str:
    """Option callback of --backend: a registered backend (read at parse time, so one registered after this
    module was imported counts), else a usage error listing the choices."""
    if value not in backends.REGISTRY:
        raise typer.BadParameter(f"unknown backend '{value}'; choose one of {', '.join(backends.names())}")
    return value


def runtime_choice(
    backend: str,
    batch: int,
    threads: int = 0,
    cuda_graph: bool = False,
    fp16: bool = False,
    force_fp16: bool = False,
    allow_fallback: bool = False,
):
    """One BackendChoice from the CLI flags; a flag the backend does not take is refused (ConfigError)."""
    from edgeproj.runtime.backends import backend_options
    from edgeproj.runtime.projector import BackendChoice

    options = backend_options(backend, threads=threads, cuda_graph=cuda_graph, fp16=fp16, allow_fallback=allow_fallback)
    return BackendChoice(backend, options, batch, force_fp16)


def stop_check_fit(manifest, projector, accept: bool) -> str | None:
    """Refuse (ConfigError) a bundle calibrated under another stop-rule check than `projector`'s, before any
    session opens; with `accept`, the mismatch is returned for a warning instead."""
    problem = manifest.stop_check_mismatch(projector.stop_check, projector.backend)
    if problem:
        # Advice to recalibrate on a backend that cannot run here would send the user the wrong way.
        why = backends.backend(projector.backend).unavailable_reason()
        if why:
            raise BackendError(f"backend {projector.backend} is unavailable here: {why}")
    if problem and not accept:
        raise ConfigError(problem)
    return problem


def output_dir(path: Path, what: str = "--out") -> Path:
    """Create `path` as a writable folder now, before any work; ConfigError saying why it cannot be."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} '{path}' is a file, not a folder; choose a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{what} '{path}' cannot be created: a part of its path is a file") from None
    except OSError as exc:
        raise ConfigError(f"{what} '{path}' cannot be created ({exc.strerror}); check the permissions of its parent") from None
    why = unwritable_reason(path)
    if why:
        raise ConfigError(f"{what} '{path}' is not writable ({why}); choose another folder")
    return path


def output_file(path: Path, what: str = "--out") -> Path:
    """Check that a file can be written at `path` (its folder is created), before any work."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} '{path}' is a folder; give a file name")
    output_dir(path.parent if str(path.parent) else Path("."), f"the folder of {what}")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{what} '{path}' exists and is not writable")
    return path


BatchHelp = "Patches per projection batch (ort-cpu lanes: the most tiles one lane takes at once; lower it to save memory)."


def backend_flags(batch: int = 8) -> OptionGroup:
    """The backend flags every projection verb takes, built into one BackendChoice (`batch` is the verb's default)."""
    return OptionGroup(
        "choice",
        "Backend",
        (
            # The choices are checked against the registry at parse time (a plain Literal would freeze them at
            # import); the metavar lists those registered when the CLI was imported.
            flag("backend", str, "ort-cpu", "--backend", "-b", metavar=f"<{'|'.join(backends.names())}>",
                 callback=known_backend, help="Inference backend."),
            flag("batch", int, batch, "--batch", min=1, max=MAX_BATCH, help=BatchHelp),
            flag("threads", int, 0, "--threads", min=0, max=MAX_THREADS,
                 help="ort-cpu threads: 0 runs one single-threaded lane per CPU core; N uses one session with N threads."),
            flag("cuda_graph", bool, False, "--cuda-graph", help="Capture the step as a CUDA graph (GPU backends)."),
            flag("fp16", bool, False, "--fp16", help="TensorRT FP16 (refused by a calibration that measured a loss, unless forced)."),
            flag("force_fp16", bool, False, "--force-fp16", help="Use FP16 even where calibration measured an accuracy loss."),
            flag("allow_fallback", bool, False, "--allow-fallback", help="Allow ONNX Runtime to fall back to the CPU silently."),
        ),
        runtime_choice,
    )  # fmt: skip


AcceptStopCheckOpt = typer.Option(
    False,
    "--accept-stop-check",
    help="Judge with thresholds calibrated on a backend that checks the stop rule elsewhere (another backend or chunk).",
)
AlphaOverride = float_option(None, *ALPHA_RANGE, "Override the manifest's Adam step size.")
LamOverride = float_option(None, *LAM_RANGE, "Override the manifest's lambda (weight of ||x - x0||_1).")
MaxIterationsOverride = int_option(None, *MAX_ITERATIONS_RANGE, "Override the iteration limit.")


def parse_resize(text: str | None) -> tuple[int, int] | None:
    """`--resize WxH` (or W,H) -> (width, height); ConfigError for anything else."""
    from edgeproj.runtime.framing import check_resize

    if not text:
        return None
    parts = text.lower().replace(",", "x").split("x")
    try:
        size = tuple(int(v) for v in parts)
    except ValueError:
        size = ()
    if len(size) != 2:
        raise ConfigError(f"--resize must be WIDTHxHEIGHT (two integers, e.g. 256x256), got '{text}'")
    check_resize(size)
    return size


def parse_roi(text: str | None) -> tuple[int, int, int, int] | None:
    """`--roi x,y,w,h` -> a box (x, y >= 0; w, h >= 1); ConfigError for anything else."""
    from edgeproj.runtime.framing import check_roi

    if not text:
        return None
    try:
        box = tuple(int(v) for v in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4:
        raise ConfigError(f"--roi must be x,y,w,h (four integers), got '{text}'")
    check_roi(box)
    return box
