"""Table 2's KL-gradient column for the VAEs: |grad_x KL(q(z|x) || N(0, I))| at x0, in PyTorch.

The exported graphs hold the energy of the deployed projection (L_r and the L1 prior), not the KL term,
so this single-gradient score comes from the training run's model on the workstation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def kl_gradient_maps(run: Path, tiles: np.ndarray, batch: int = 16) -> np.ndarray:
    """Per-tile maps (N x H x W): the channel mean of |d KL / d x| at x = x0."""
    import torch

    from edgeproj.training.run import load_run

    model, _, _ = load_run(Path(run))
    model.eval()
    out = []
    for i in range(0, len(tiles), batch):
        x = torch.from_numpy(np.ascontiguousarray(tiles[i : i + batch])).requires_grad_(True)
        mu, logvar = model.encode(x)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1)
        (g,) = torch.autograd.grad(kl.sum(), x)
        out.append(g.abs().mean(dim=1).detach().numpy())
    return np.concatenate(out)
