"""The PyTorch reference projection: torch.optim.Adam on x with the masked, optionally tuned gradient.

This is the eager autograd loop that the exported graphs are proven against and benchmarked with;
it mirrors edgeproj.export.energy's step exactly (module docstring there), clipping included.
"""

from __future__ import annotations

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
