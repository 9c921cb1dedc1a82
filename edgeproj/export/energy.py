"""The energy E(x) = L_r(x) + lam * ||x - x0||_1, its analytic gradient, and the masked-Adam step, as ONNX.

Gradient graph  inputs: x, x0 (N x C x H x W), lam [1]
                outputs: energy [N], rec_loss [N], grad (N x C x H x W), recon (N x C x H x W)
Step graph      inputs: x, x0, m, v (N x C x H x W), step [N], weight (N x C x H x W), tuned [1],
                        tuned_on_step [1], alpha [1], lam [1], active [N]
                outputs: x_next, m_next, v_next, step_next, energy, rec_loss, recon
Forward graph   inputs: x, x0, lam; outputs: energy, rec_loss, recon, saved_<layer> (what the backward needs)
Update graph    inputs: the step graph's, recon, saved_<layer>; outputs: x_next, m_next, v_next, step_next
                (forward then update = step; host runners skip the update of a tile the stop rule ends)

One step (Adam with beta1 0.9, beta2 0.999, eps 1e-8, bias correction per sample):
    e2  = (x - f(x))^2                       the paper's tuned weight (eq. 8), not differentiated
    g   = weight * grad_x E * (tuned and not tuned_on_step ? e2 : 1)     [weight: 1, or Omega (eq. 7)]
    m'  = b1 m + (1 - b1) g ;  v' = b2 v + (1 - b2) g^2 ;  t' = step + 1
    d   = alpha * (m' / (1 - b1^t')) / (sqrt(v' / (1 - b2^t')) + eps)
    d  *= (tuned and tuned_on_step ? e2 / max_sample(e2) : 1)
    x'  = clip(x - d, 0, 1)
Samples with active = 0 keep x, m, v and step unchanged, so a batch can finish sample by sample.
`weight` is declared N x C x H x W (static channel count, simpler TensorRT profiles and CUDA graphs);
a one-channel mask is broadcast to C channels by the runtime before it is bound.
x is clipped to [0, 1], the range of the training images and of the sigmoid decoder: a projection
outside it is not an image the autoencoder has seen.
The tuned weight before Adam (eq. 8 read literally) is largely normalized away by Adam's per-pixel
scaling; after Adam it really slows well-reconstructed pixels. Both are selectable at run time.
"""

from __future__ import annotations

from edgeproj import contract as io
from edgeproj.contract import ADAM_BETA1, ADAM_BETA2, ADAM_EPS, ADAM_SCOPE, E2_FLOOR
from edgeproj.export.builder import GraphBuilder
from edgeproj.export.heads import emit_head
from edgeproj.export.network import NetworkEmitter


def _energy(b: GraphBuilder, rec: str, x: str, x0: str, lam: str):
    """E = L_r + lam * ||x - x0||_1: returns (energy, x - x0)."""
    diff0 = b.sub(x, x0, "diff0")
    l1 = b.sum_chw(b.op("Abs", [diff0]), "l1")
    return b.add(rec, b.mul(lam, l1), "energy_v"), diff0


def _gradient(b: GraphBuilder, net: NetworkEmitter, g_x: str, g_r: str, diff0: str, lam: str) -> str:
    """grad_x E from the head's partials, the network's vector-Jacobian product and the L1 term."""
    g_net = net.backward(b, g_r)
    return b.add(b.add(g_x, g_net), b.mul(lam, b.op("Sign", [diff0])), "grad_v")


def emit_energy(b: GraphBuilder, net: NetworkEmitter, spec: dict, x: str, x0: str, lam: str):
    """Emit f(x), L_r, E and grad_x E. Returns dict of value names: recon, rec_loss, energy, grad."""
    recon = net.forward(b, x)
    rec, g_x, g_r = emit_head(b, spec, x, recon)
    energy, diff0 = _energy(b, rec, x, x0, lam)
    grad = _gradient(b, net, g_x, g_r, diff0, lam)
    return {io.RECON: recon, io.REC_LOSS: rec, io.ENERGY: energy, io.GRAD: grad}


def _handed_over(net: NetworkEmitter) -> list[tuple[int, str]]:
    """The kept values the forward graph hands to the update graph, (key, dtype): all but f(x) itself
    (a final sigmoid's output), which the update graph reads from `recon`."""
    return [(i, dt) for i, dt in net.kept() if not net.is_recon(i)]


def _image_shape(spec: dict) -> list:
    return ["N", spec["channels"], spec["size"], spec["size"]]


def build_gradient_graph(net: NetworkEmitter, spec: dict):
    """The gradient graph (module docstring) as a checked onnx.ModelProto."""
    b = GraphBuilder("edgeproj_gradient")
    img = _image_shape(spec)
    x, x0, lam = (b.input(name, shape) for name, shape in zip(io.GRADIENT_INPUTS, (img, img, [1])))
    out = emit_energy(b, net, spec, x, x0, lam)
    shapes = {io.ENERGY: ["N"], io.REC_LOSS: ["N"], io.GRAD: img, io.RECON: img}
    for name in io.GRADIENT_OUTPUTS:
        b.output(out[name], name, shapes[name])
    return b.model("grad_x of E(x) = L_r(x) + lam * ||x - x0||_1 for an edgeproj autoencoder")


def _step_inputs(b: GraphBuilder, img: list) -> dict:
    shape = {**{k: img for k in io.IMAGE_INPUTS}, **{k: ["N"] for k in io.VECTOR_INPUTS}, **{k: [1] for k in io.SETTINGS}}
    return {name: b.input(name, shape[name]) for name in io.STEP_INPUTS}


def _adam_tail(b: GraphBuilder, inp: dict, recon: str, grad: str, img: list) -> None:
    """The masked-Adam update (module docstring) from grad_x E, as the graph outputs `<state>_next`."""
    x, m, v, step, weight, active = (inp[k] for k in (io.X, io.M, io.V, io.STEP, io.WEIGHT, io.ACTIVE))
    tuned, on_step, alpha, _ = (inp[k] for k in io.SETTINGS)
    # The optimizer tail: eps = 1e-8 and (1 - beta2) g^2 underflow in FP16, so TensorRT pins these to FP32.
    b.scope = ADAM_SCOPE

    one = b.const(1.0, "one")
    zero = b.const(0.0, "zero")
    err = b.sub(x, recon, "err")
    e2 = b.mul(err, err, "e2")
    # Select instead of branching (no If nodes for TensorRT): w = Where(on, e2, 1). Not the blend
    # 1 + on * (e2 - 1): in float32 that rounds e2 below 6e-8 to a multiple of 6e-8 (or to 0), and Adam
    # divides by the gradient's own size, so a well-reconstructed pixel would take a wrong step.
    before = b.op("Greater", [b.mul(tuned, b.sub(one, on_step), "tuned_before"), zero], "tuned_before_on")
    after = b.op("Greater", [b.mul(tuned, on_step, "tuned_after"), zero], "tuned_after_on")
    w_grad = b.op("Where", [before, e2, one], "w_grad")
    g = b.mul(b.mul(grad, weight), w_grad, "g_eff")

    b1, b2 = b.const(ADAM_BETA1, "beta1"), b.const(ADAM_BETA2, "beta2")
    m_new = b.add(b.mul(b1, m), b.mul(b.const(1 - ADAM_BETA1, "one_m_beta1"), g), "m_new")
    v_new = b.add(b.mul(b2, v), b.mul(b.const(1 - ADAM_BETA2, "one_m_beta2"), b.mul(g, g)), "v_new")
    t_new = b.add(step, one, "t_new")
    t4 = b.per_sample(t_new, "t4")
    bc1 = b.sub(one, b.op("Pow", [b1, t4]), "bc1")
    bc2 = b.sub(one, b.op("Pow", [b2, t4]), "bc2")
    denom = b.add(b.op("Sqrt", [b.div(v_new, bc2)]), b.const(ADAM_EPS, "eps"), "denom")
    delta = b.mul(alpha, b.div(b.div(m_new, bc1), denom), "delta")
    e2_max = b.op("ReduceMax", [e2], "e2_max", axes=[1, 2, 3], keepdims=1)
    e2n = b.div(e2, b.add(e2_max, b.const(E2_FLOOR, "e2_floor")), "e2n")
    w_step = b.op("Where", [after, e2n, one], "w_step")
    x_new = b.op("Clip", [b.sub(x, b.mul(delta, w_step)), zero, one], "x_new")

    act = b.op("Greater", [b.per_sample(active, "act4"), zero], "act_on")

    def keep(new, old, hint):
        # Where, not old + a * (new - old): exact for finished samples, and a NaN elsewhere cannot leak in.
        return b.op("Where", [act, new, old], hint)

    nxt = io.NEXT
    b.output(keep(x_new, x, "x_keep"), nxt[io.X], img)
    b.output(keep(m_new, m, "m_keep"), nxt[io.M], img)
    b.output(keep(v_new, v, "v_keep"), nxt[io.V], img)
    b.output(b.op("Where", [b.op("Greater", [active, zero]), t_new, step], "step_keep"), nxt[io.STEP], ["N"])
    b.scope = ""


def build_step_graph(net: NetworkEmitter, spec: dict):
    """The one-iteration masked-Adam step graph (module docstring) as a checked onnx.ModelProto."""
    b = GraphBuilder("edgeproj_step")
    img = _image_shape(spec)
    inp = _step_inputs(b, img)
    out = emit_energy(b, net, spec, inp[io.X], inp[io.X0], inp[io.SETTINGS[3]])
    _adam_tail(b, inp, out[io.RECON], out[io.GRAD], img)
    b.output(out[io.ENERGY], io.ENERGY, ["N"])
    b.output(out[io.REC_LOSS], io.REC_LOSS, ["N"])
    b.output(out[io.RECON], io.RECON, img)
    return b.model("one masked-Adam step of the energy-based projection (Dehaene et al. 2020, eq. 5/7/8)")


def build_forward_graph(net: NetworkEmitter, spec: dict):
    """The step's first half: E, L_r and f(x) at x, and the values its backward needs (`saved_<layer>`)."""
    b = GraphBuilder("edgeproj_forward")
    img = _image_shape(spec)
    x, x0, lam = (b.input(name, shape) for name, shape in zip(io.FORWARD_INPUTS, (img, img, [1])))
    recon = net.forward(b, x)
    rec, _, _ = emit_head(b, spec, x, recon)
    energy, _ = _energy(b, rec, x, x0, lam)
    b.output(energy, io.ENERGY, ["N"])
    b.output(rec, io.REC_LOSS, ["N"])
    b.output(recon, io.RECON, img)
    shapes = net.saved_shapes(spec["channels"], spec["size"])
    for i, dtype in _handed_over(net):
        b.output(net.saved(i), f"{io.SAVED_PREFIX}{i}", shapes[i], dtype)
    return b.model("E(x), L_r(x), f(x) and what the backward needs: the first half of the projection step")


def build_update_graph(net: NetworkEmitter, spec: dict):
    """The step's second half: grad_x E from the forward graph's outputs, then the masked-Adam update.

    Run on the tiles that go on after the stop rule saw the forward graph's E and L_r; forward then update
    computes what the step graph computes (a test holds them to it).
    """
    b = GraphBuilder("edgeproj_update")
    img = _image_shape(spec)
    inp = _step_inputs(b, img)
    recon = b.input(io.RECON, img)
    shapes = net.saved_shapes(spec["channels"], spec["size"])
    saved = {i: recon for i, _ in net.kept() if net.is_recon(i)}
    saved.update({i: b.input(f"{io.SAVED_PREFIX}{i}", shapes[i], dtype) for i, dtype in _handed_over(net)})
    net.use_saved(saved)
    x, x0, lam = inp[io.X], inp[io.X0], inp[io.SETTINGS[3]]
    _, g_x, g_r = emit_head(b, spec, x, recon)
    diff0 = b.sub(x, x0, "diff0")
    grad = _gradient(b, net, g_x, g_r, diff0, lam)
    _adam_tail(b, inp, recon, grad, img)
    return b.model("grad_x E from the forward graph's values and one masked-Adam step: the second half of the step")
