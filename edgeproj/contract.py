"""The graph contract shared by export, runtime and the PyTorch reference (pure Python, no dependencies).

Names of the graphs' inputs and outputs, the constants baked into them (Adam, SSIM), and the check
a loaded graph must pass. Export builds the graphs from these names; every backend binds by them; the
torch reference loop uses the same constants. A name or constant is spelled here and nowhere else.
"""

from __future__ import annotations

from edgeproj.errors import BundleError

# --- the gradient graph: E(x), L_r(x), grad_x E, f(x) -----------------------------------------------
GRADIENT_INPUTS = ("x", "x0", "lam")  # the same x, x0 and lam as the step graph's
GRADIENT_OUTPUTS = ("energy", "rec_loss", "grad", "recon")

# --- the step graph: one masked-Adam iteration ----------------------------------------------------
# The projection state, advanced by one step: each input has an output `<name>_next`.
X, M, V, STEP = STATE = ("x", "m", "v", "step")
NEXT = {name: f"{name}_next" for name in STATE}
# Image-shaped constants of a batch, and run-time settings ([1]-shaped, so no re-export to change them).
X0, WEIGHT, ACTIVE = "x0", "weight", "active"
SETTINGS = ("tuned", "tuned_on_step", "alpha", "lam")
STEP_INPUTS = (X, X0, M, V, STEP, WEIGHT, *SETTINGS, ACTIVE)
# Per-step readback for the stop rule (N floats each), and f(x) for the maps.
ENERGY, REC_LOSS, RECON, GRAD = "energy", "rec_loss", "recon", "grad"
STEP_OUTPUTS = (*NEXT.values(), ENERGY, REC_LOSS, RECON)
# Inputs with one row per sample (the others are [1]-shaped settings).
PER_SAMPLE = (X, X0, M, V, STEP, WEIGHT, ACTIVE)
# Image-shaped inputs (N x C x H x W); "step" and "active" are [N].
IMAGE_INPUTS = (X, X0, M, V, WEIGHT)
VECTOR_INPUTS = (STEP, ACTIVE)

# --- the step split in two, for host runners: a tile that meets the stop rule at x skips the backward --
# forward: E, L_r and f(x) at x, and what the backward needs (`saved_<layer>`: LeakyReLU signs, sigmoid
# outputs); update: the step's backward and Adam tail from those. forward then update = the step graph.
SAVED_PREFIX = "saved_"
FORWARD_INPUTS = GRADIENT_INPUTS
FORWARD_OUTPUTS = (ENERGY, REC_LOSS, RECON)  # + saved_*
UPDATE_INPUTS = (*STEP_INPUTS, RECON)  # + saved_*
UPDATE_OUTPUTS = tuple(NEXT.values())

GRAPHS = {
    "gradient": (GRADIENT_INPUTS, GRADIENT_OUTPUTS),
    "step": (STEP_INPUTS, STEP_OUTPUTS),
    "forward": (FORWARD_INPUTS, FORWARD_OUTPUTS),
    "update": (UPDATE_INPUTS, UPDATE_OUTPUTS),
}
GRAPH_FILES = {"gradient": "gradient.onnx", "step": "step.onnx", "forward": "forward.onnx", "update": "update.onnx"}
# Where the loop checks the stop rule, recorded by calibration (thresholds fit the projection they were
# measured on). Probing runners (the CPU) check E and L_r at x before x moves: a sample that meets the rule
# returns that x. Device runners check after the step and read the rule back every k steps: the step that
# found it and the rest of its chunk are taken, so a sample may run up to k steps further. Calibrations
# that record nothing were all made the second way, with an unrecorded chunk.
STOP_CHECK_BEFORE = "before the step"
STOP_CHECK_AFTER = "after the step"


def stop_check(probes: bool, chunk: int | None = None) -> str:
    """Where a runner (`Runner.probes`) checks the stop rule, with its readback chunk on device runners."""
    if probes:
        return STOP_CHECK_BEFORE
    return STOP_CHECK_AFTER if chunk is None else f"{STOP_CHECK_AFTER}, read back every {chunk} step{'s' if chunk != 1 else ''}"


# Graphs a bundle may lack (bundles exported before the split): host runners then run the step graph.
OPTIONAL_GRAPHS = ("forward", "update")
# The side of each split graph that carries the saved values.
_SAVED_SIDE = {"forward": "output", "update": "input"}

# --- constants inside the step graph --------------------------------------------------------------
ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999
ADAM_EPS = 1e-8
# Floor of the per-sample max of (x - f(x))^2 when the tuned weight scales Adam's step.
E2_FLOOR = 1e-12
# Node-name prefix of the step graph's optimizer tail (export writes it; TensorRT keeps it in FP32).
ADAM_SCOPE = "adam/"

# --- SSIM (Wang et al. 2004; Bergmann et al. 2018 use an 11x11 Gaussian window, sigma 1.5) ------------
SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2
SSIM_SIGMA = 1.5


def saved_names(names) -> list[str]:
    """The saved-value names among a split graph's inputs or outputs, in order."""
    return [n for n in names if n.startswith(SAVED_PREFIX)]


def check_graph(graph: str, inputs, outputs, where: str) -> None:
    """Raise BundleError naming what differs between a graph's real inputs/outputs and the contract.

    Order does not matter (backends bind by name); a missing or an unexpected name does.
    """
    if graph not in GRAPHS:
        raise BundleError(f"{where}: unknown graph '{graph}' (this edgeproj knows {', '.join(GRAPHS)})")
    want_in, want_out = GRAPHS[graph]
    problems = []
    for kind, want, have in (("input", want_in, inputs), ("output", want_out, outputs)):
        have = list(have)
        missing = [n for n in want if n not in have]
        saved_ok = _SAVED_SIDE.get(graph) == kind
        extra = [n for n in have if n not in want and not (saved_ok and n.startswith(SAVED_PREFIX))]
        if missing:
            problems.append(f"missing {kind}s {missing}")
        if extra:
            problems.append(f"unexpected {kind}s {extra}")
    if problems:
        raise BundleError(
            f"{where}: the {graph} graph does not match this edgeproj's contract ({'; '.join(problems)}); "
            "re-export the bundle with this version"
        )
