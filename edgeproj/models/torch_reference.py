"""The PyTorch reference projection: torch.optim.Adam on x with the masked, optionally tuned gradient.

This is the eager autograd loop that the exported graphs are proven against and benchmarked with;
it mirrors edgeproj.export.energy's step exactly (module docstring there), clipping included.
"""

from __future__ import annotations

import math

import torch

from edgeproj.contract import ADAM_BETA1, ADAM_BETA2, ADAM_EPS, E2_FLOOR


def energy(model, x: torch.Tensor, x0: torch.Tensor, lam: float):
    """Per-sample E(x) = L_r(x) + lam * ||x - x0||_1, with L_r and f(x)."""
    recon = model.reconstruct(x)
    rec = model.rec_loss(x, recon)
    return rec + lam * (x - x0).abs().flatten(1).sum(1), rec, recon


def torch_project(
    model,
    x0: torch.Tensor,
    alpha: float,
    lam: float,
    steps: int,
    tuned: bool = True,
    tuned_on_step: bool = True,
    weight: torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
    record: bool = False,
):
    """Run `steps` Adam iterations from x0; returns (x_T, energies [steps x N], first-step (m, v) or None)."""
    if dtype is not None:
        model = model.to(dtype)
        x0 = x0.to(dtype)
        weight = None if weight is None else weight.to(dtype)
    for p in model.parameters():
        p.requires_grad_(False)
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=alpha, betas=(ADAM_BETA1, ADAM_BETA2), eps=ADAM_EPS)
    energies, first_mv = [], None
    for _ in range(steps):
        e, _, recon = energy(model, x, x0, lam)
        (g,) = torch.autograd.grad(e.sum(), x)
        e2 = (x.detach() - recon.detach()).pow(2)
        if weight is not None:
            g = g * weight
        if tuned and not tuned_on_step:
            g = g * e2
        x.grad = g
        prev = x.detach().clone()
        opt.step()
        with torch.no_grad():
            if tuned and tuned_on_step:
                e2n = e2 / (e2.flatten(1).amax(1).view(-1, 1, 1, 1) + E2_FLOOR)
                x.copy_(prev + (x - prev) * e2n)
            x.clamp_(0.0, 1.0)
        energies.append(e.detach())
        if record and first_mv is None:
            st = opt.state[x]
            first_mv = (st["exp_avg"].clone(), st["exp_avg_sq"].clone())
    return x.detach(), torch.stack(energies), first_mv


@torch.no_grad()
def torch_project_stopping(model, x0: torch.Tensor, projection) -> tuple[torch.Tensor, torch.Tensor]:
    """The deployed loop in eager PyTorch, for the benchmark's line figure: per-sample stop rules and
    masked Adam written out, so finished samples stop changing. Returns (projection, iterations per sample).

    It mirrors edgeproj.runtime.loop.run_projection on a host runner: each round computes E, L_r and f at
    x, checks the stop rules on them (non-finite = diverged and reset to x0, L_r threshold, and after x0
    energy convergence over `window`), and only the samples that go on are differentiated and moved, so
    a sample that meets the rule at x returns x. The backward pass is skipped when no sample goes on
    (autograd cannot drop rows of a batch without running its forward again).
    """
    stop = projection.stop
    n = x0.shape[0]
    x, m, v = x0.clone(), torch.zeros_like(x0), torch.zeros_like(x0)
    t = torch.zeros(n, 1, 1, 1, dtype=x0.dtype, device=x0.device)
    active = [True] * n
    diverged = [False] * n
    iterations = torch.zeros(n, dtype=torch.int64)
    traces: list[list[float]] = [[] for _ in range(n)]
    thr = stop.rec_loss_threshold
    for it in range(projection.max_iterations):
        idx = [i for i in range(n) if active[i]]
        if not idx:
            break
        xa = x[idx].requires_grad_(True)
        with torch.enable_grad():
            e, rec, recon = energy(model, xa, x0[idx], projection.lam)
        el, rl = e.tolist(), rec.tolist()
        for j, i in enumerate(idx):
            if not (math.isfinite(el[j]) and math.isfinite(rl[j])):
                active[i], diverged[i] = False, True
                continue
            if thr is not None and rl[j] < thr and it == 0:  # below the threshold at x0: no step, no trace
                active[i] = False
                continue
            traces[i].append(el[j])
            if thr is not None and rl[j] < thr:
                active[i] = False
            elif stop.energy_rtol > 0 and len(traces[i]) > stop.window:
                ref = traces[i][-1 - stop.window]
                if abs(el[j] - ref) <= stop.energy_rtol * abs(ref):
                    active[i] = False
        sel = [j for j, i in enumerate(idx) if active[i]]
        if not sel:
            break
        with torch.enable_grad():
            (g,) = torch.autograd.grad(e[sel].sum(), xa)
        idx = [idx[j] for j in sel]
        xa, recon, g = xa.detach()[sel], recon.detach()[sel], g[sel]
        e2 = (xa - recon).pow(2)
        if projection.tuned and not projection.tuned_on_step:
            g = g * e2
        ti = t[idx] + 1
        mi = ADAM_BETA1 * m[idx] + (1 - ADAM_BETA1) * g
        vi = ADAM_BETA2 * v[idx] + (1 - ADAM_BETA2) * g * g
        delta = projection.alpha * (mi / (1 - ADAM_BETA1**ti)) / ((vi / (1 - ADAM_BETA2**ti)).sqrt() + ADAM_EPS)
        if projection.tuned and projection.tuned_on_step:
            delta = delta * e2 / (e2.flatten(1).amax(1).view(-1, 1, 1, 1) + E2_FLOOR)
        x[idx] = (xa - delta).clamp(0.0, 1.0)
        m[idx], v[idx], t[idx] = mi, vi, ti
        iterations[idx] += 1
    bad = torch.tensor(diverged) | ~torch.isfinite(x).flatten(1).all(1).cpu()
    x[bad.to(x.device)] = x0[bad.to(x.device)]
    return x, iterations
