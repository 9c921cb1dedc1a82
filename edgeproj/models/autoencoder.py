"""The Bergmann et al. 2018 SSIM-autoencoder for 128x128 inputs and the paper's four variants.

Reconstruction loss L_r(x) per sample, as the projection energy uses it (paper eq. 4). All are sums
over pixels (and channels), so lambda * ||x - x0||_1 (also a sum) has the same meaning for every variant:
    l2ae:  L_r = sum (x - f(x))^2
    dsae:  L_r = sum over valid 11x11 windows of (1 - SSIM(x, f(x))) / 2
    vae:   L_r = sum (x - f(x))^2 / 2                    (unit decoder variance; constants dropped)
    gvae:  L_r = sum (x - f(x))^2 / (2 gamma^2)              (learned gamma, Dai & Wipf 2019)
The gvae training loss adds D log gamma (D = C*H*W), which learns gamma; it is constant in x, so the
energy leaves it out like the other constants (it would offset E and blur relative stop tests).
For the VAEs f(x) = D(mu(x)): the unregularized reconstruction term of the ELBO at the posterior mean
(Matsubara et al.), without the KL term. The decoder ends in a sigmoid: images live in [0, 1].
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgeproj.models.config import ModelConfig
from edgeproj.models.ssim import dssim_sum

NEG_SLOPE = 0.2
LOG_GAMMA_MIN = math.log(1e-3)


def _encoder_spec(c: int, w: int):
    """(in, out, kernel, stride, padding) for the eight encoder convolutions."""
    return [
        (c, w, 4, 2, 1),
        (w, w, 4, 2, 1),
        (w, w, 3, 1, 1),
        (w, 2 * w, 4, 2, 1),
        (2 * w, 2 * w, 3, 1, 1),
        (2 * w, 4 * w, 4, 2, 1),
        (4 * w, 2 * w, 3, 1, 1),
        (2 * w, w, 3, 1, 1),
    ]


class ConvAutoencoder(nn.Module):
    """SSIM-AE architecture; `variant` selects loss and (for VAEs) a Gaussian encoder."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c, w, z = config.channels, config.width, config.latent
        spec = _encoder_spec(c, w)
        enc: list[nn.Module] = []
        for cin, cout, k, s, p in spec:
            enc += [nn.Conv2d(cin, cout, k, s, p), nn.LeakyReLU(NEG_SLOPE)]
        self.encoder = nn.Sequential(*enc)
        self.is_vae = config.variant in ("vae", "gvae")
        # The 8x8 latent convolution; a VAE encoder emits mean and log-variance.
        self.to_latent = nn.Conv2d(w, 2 * z if self.is_vae else z, 8, 1, 0)
        dec: list[nn.Module] = [nn.ConvTranspose2d(z, w, 8, 1, 0), nn.LeakyReLU(NEG_SLOPE)]
        for i, (cin, cout, k, s, p) in enumerate(reversed(spec)):
            layer = nn.Conv2d(cout, cin, k, s, p) if s == 1 else nn.ConvTranspose2d(cout, cin, k, s, p)
            dec.append(layer)
            if i < len(spec) - 1:
                dec.append(nn.LeakyReLU(NEG_SLOPE))
        dec.append(nn.Sigmoid())
        self.decoder = nn.Sequential(*dec)
        if config.variant == "gvae":
            self.log_gamma = nn.Parameter(torch.zeros(()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # PyTorch's default init collapses this deep net to a constant output (input Jacobian ~1e-8);
        # Kaiming init for LeakyReLU keeps the signal alive from the first step.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, a=NEG_SLOPE, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)

    @property
    def gamma(self) -> torch.Tensor | None:
        if self.config.variant != "gvae":
            return None
        return self.log_gamma.clamp(min=LOG_GAMMA_MIN).exp()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Latent mean (N x latent x 1 x 1) and, for VAEs, log-variance."""
        h = self.to_latent(self.encoder(x))
        if self.is_vae:
            mu, logvar = h.chunk(2, dim=1)
            return mu, logvar
        return h, None

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction f(x); VAEs decode the posterior mean."""
        return self.decode(self.encode(x)[0])

    def forward(self, x: torch.Tensor, loss: bool = False):
        """f(x); with loss=True the training loss and its parts (the form DDP needs to sync gradients)."""
        return self.training_loss(x) if loss else self.reconstruct(x)

    def rec_loss(self, x: torch.Tensor, recon: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample reconstruction loss L_r(x) (module docstring), shape N."""
        r = self.reconstruct(x) if recon is None else recon
        v = self.config.variant
        if v == "dsae":
            return dssim_sum(x, r, self.config.ssim_window)
        sq = (x - r).pow(2).flatten(1).sum(1)
        if v == "l2ae":
            return sq
        if v == "vae":
            return 0.5 * sq
        return sq / (2 * torch.exp(2 * self.log_gamma.clamp(min=LOG_GAMMA_MIN)))

    def training_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Mean training loss over the batch and its parts (for the log)."""
        if not self.is_vae:
            loss = self.rec_loss(x).mean()
            return loss, {"rec": float(loss.detach())}
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        rec = self.rec_loss(x, self.decode(z))
        if self.config.variant == "gvae":
            rec = rec + x[0].numel() * self.log_gamma.clamp(min=LOG_GAMMA_MIN)  # -log p(x|z) up to 2 pi
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1)
        loss = (rec + kl).mean()
        parts = {"rec": float(rec.mean().detach()), "kl": float(kl.mean().detach())}
        if self.gamma is not None:
            parts["gamma"] = float(self.gamma.detach())
        return loss, parts


def build_model(config: ModelConfig) -> ConvAutoencoder:
    """A freshly initialized autoencoder for `config`."""
    return ConvAutoencoder(config)
