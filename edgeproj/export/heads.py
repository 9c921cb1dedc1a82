"""Each kind of L_r as ONNX: the loss and its gradient wrt x directly and wrt f(x).

A variant's declaration (edgeproj.models.variants) names its kind; HEADS maps the kind to its emitter.
Every head takes (builder, spec, x, f(x)), spec being edgeproj.export.bundle.model_spec, and returns
(rec_loss [N], g_x, g_r): the energy adds g_x to the network's vector-Jacobian product of g_r.
"""

from __future__ import annotations

import numpy as np

from edgeproj.contract import SSIM_C1 as C1
from edgeproj.contract import SSIM_C2 as C2
from edgeproj.export.builder import GraphBuilder
from edgeproj.models.ssim import gaussian_1d
from edgeproj.models.variants import get_variant


def squared_error(b: GraphBuilder, spec: dict, x: str, r: str):
    """L_r = factor * sum (x - r)^2, the factor from the variant's declaration (and the model's gamma)."""
    scale = get_variant(spec["variant"]).rec_scale(spec["gamma"])
    d = b.sub(x, r, "diff")
    rec = b.sum_chw(b.mul(d, d), "sqsum")
    if scale != 1.0:
        rec = b.mul(rec, b.const(scale, "scale"))
    g_x = b.mul(d, b.const(2.0 * scale, "two_scale"), "g_direct")
    g_r = b.op("Neg", [g_x], "g_recon")
    return rec, g_x, g_r


def dssim(b: GraphBuilder, spec: dict, a: str, r: str):
    """L_r = sum over valid windows of (1 - SSIM(a, r)) / 2, with its gradient wrt both images.

    With moments mu_a, mu_b, m_aa = G*a^2, m_bb, m_ab and S = A1 A2 / (B1 B2):
      dS/dm_ab = 2 A1 / D,  dS/dm_aa = dS/dm_bb = -S / B2,
      dS/dmu_a = 2 mu_b (A2 - A1) / D - 2 mu_a S (1/B1 - 1/B2)   (mu_b symmetrically),
    then the adjoint of the valid Gaussian filter (a full-padding Conv of the symmetric kernel).
    """
    k = spec["ssim_window"]
    five = 5 * spec["channels"]
    g = gaussian_1d(k).astype(np.float32)
    wv = b.const(np.broadcast_to(g.reshape(1, 1, k, 1), (five, 1, k, 1)).copy(), "gauss_v")
    wh = b.const(np.broadcast_to(g.reshape(1, 1, 1, k), (five, 1, 1, k)).copy(), "gauss_h")
    moments = b.op("Concat", [a, r, b.mul(a, a), b.mul(r, r), b.mul(a, r)], "moments", axis=1)
    # The Gaussian window is separable: a vertical and a horizontal 11-tap depthwise Conv.
    blurred_v = b.op("Conv", [moments, wv], "blurred_v", kernel_shape=[k, 1], group=five)
    blurred = b.op("Conv", [blurred_v, wh], "blurred", kernel_shape=[1, k], group=five)
    mu_a, mu_b, m_aa, m_bb, m_ab = b.op("Split", [blurred], "mom", n_out=5, axis=1)
    two = b.const(2.0, "two")
    mu_ab = b.mul(mu_a, mu_b)
    mu_aa = b.mul(mu_a, mu_a)
    mu_bb = b.mul(mu_b, mu_b)
    a1 = b.add(b.mul(two, mu_ab), b.const(C1, "C1"), "A1")
    a2 = b.add(b.mul(two, b.sub(m_ab, mu_ab)), b.const(C2, "C2"), "A2")
    b1 = b.add(b.add(mu_aa, mu_bb), b.const(C1, "C1"), "B1")
    b2 = b.add(b.sub(b.add(m_aa, m_bb), b.add(mu_aa, mu_bb)), b.const(C2, "C2"), "B2")
    den = b.mul(b1, b2, "D")
    s = b.div(b.mul(a1, a2), den, "S")
    half = b.const(0.5, "half")
    rec = b.sum_chw(b.sub(half, b.mul(half, s)), "dssim_sum")
    # dL/dS = -1/2 everywhere; fold it into the partial derivatives.
    inv_den = b.div(b.const(1.0, "one"), den)
    d_mab = b.mul(b.mul(a1, inv_den), b.const(-1.0, "neg_one"))  # -0.5 * 2 A1 / D
    d_m2 = b.mul(b.div(s, b2), b.const(0.5, "half"))  # -0.5 * (-S / B2)
    diff_ad = b.mul(b.sub(a2, a1), inv_den)  # (A2 - A1) / D
    s_term = b.mul(s, b.sub(b.div(b.const(1.0, "one"), b1), b.div(b.const(1.0, "one"), b2)))
    d_mua = b.mul(b.sub(b.mul(mu_b, diff_ad), b.mul(mu_a, s_term)), b.const(-1.0, "neg_one"))  # -0.5 * 2 (...)
    d_mub = b.mul(b.sub(b.mul(mu_a, diff_ad), b.mul(mu_b, s_term)), b.const(-1.0, "neg_one"))
    grads = b.op("Concat", [d_mua, d_mub, d_m2, d_m2, d_mab], "dmom", axis=1)
    # Adjoint of the valid filter: full-padding Convs of the symmetric kernels.
    back_h = b.op("Conv", [grads, wh], "dmom_full_h", kernel_shape=[1, k], group=five, pads=[0, k - 1, 0, k - 1])
    back = b.op("Conv", [back_h, wv], "dmom_full", kernel_shape=[k, 1], group=five, pads=[k - 1, 0, k - 1, 0])
    p_mua, p_mub, p_aa, p_bb, p_ab = b.op("Split", [back], "pmom", n_out=5, axis=1)
    g_a = b.add(b.add(p_mua, b.mul(b.mul(two, a), p_aa)), b.mul(r, p_ab), "g_direct")
    g_r = b.add(b.add(p_mub, b.mul(b.mul(two, r), p_bb)), b.mul(a, p_ab), "g_recon")
    return rec, g_a, g_r


# The ONNX head per kind of L_r (edgeproj.models.variants.REC_LOSS_KINDS).
HEADS = {"squared_error": squared_error, "dssim": dssim}


def emit_head(b: GraphBuilder, spec: dict, x: str, recon: str):
    """L_r(x, f(x)) of the model's variant with its gradient wrt x directly and wrt f(x): (rec_loss, g_x, g_r)."""
    return HEADS[get_variant(spec["variant"]).rec_loss](b, spec, x, recon)
