"""The Bergmann et al. 2018 SSIM-autoencoder for 128x128 inputs, with each variant's L_r in PyTorch.

A variant's facts (VAE or not, its L_r kind and factor, a learned gamma) come from its declaration in
edgeproj.models.variants; REC_LOSSES holds the PyTorch code of each kind of L_r. The decoder ends in a
sigmoid: images live in [0, 1].
"""

from __future__ import annotations

import math

import torch
from torch import nn

from edgeproj.models.config import ModelConfig
from edgeproj.models.ssim import dssim_sum
from edgeproj.models.variants import get_variant

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


class Autoencoder(nn.Module):
    """What training, export and the PyTorch reference ask of an autoencoder: f(x) (`reconstruct`, defined by
    a subclass, which also sets `config` and `variant`), L_r and the training loss."""

    is_vae = False
    gamma = None  # a learned decoder scale (gamma-VAE), or None

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, loss: bool = False):
        """f(x); with loss=True the training loss and its parts (the form DDP needs to sync gradients)."""
        return self.training_loss(x) if loss else self.reconstruct(x)

    def rec_loss(self, x: torch.Tensor, recon: torch.Tensor | None = None) -> torch.Tensor:
        """Per-sample reconstruction loss L_r(x) (module docstring), shape N."""
        r = self.reconstruct(x) if recon is None else recon
        return REC_LOSSES[self.variant.rec_loss](self, x, r)

    def training_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Mean training loss over the batch and its parts (for the log)."""
        loss = self.rec_loss(x).mean()
        return loss, {"rec": float(loss.detach())}


class ConvAutoencoder(Autoencoder):
    """SSIM-AE architecture; the variant's declaration selects the loss and (for VAEs) a Gaussian encoder."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.variant = get_variant(config.variant)
        c, w, z = config.channels, config.width, config.latent
        spec = _encoder_spec(c, w)
        enc: list[nn.Module] = []
        for cin, cout, k, s, p in spec:
            enc += [nn.Conv2d(cin, cout, k, s, p), nn.LeakyReLU(NEG_SLOPE)]
        self.encoder = nn.Sequential(*enc)
        self.is_vae = self.variant.vae
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
        if self.variant.learned_gamma:
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
        if not self.variant.learned_gamma:
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

    def training_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Mean training loss over the batch and its parts (for the log): ELBO terms for the VAEs."""
        if not self.is_vae:
            return super().training_loss(x)
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        rec = self.rec_loss(x, self.decode(z))
        if self.variant.learned_gamma:
            rec = rec + x[0].numel() * self.log_gamma.clamp(min=LOG_GAMMA_MIN)  # -log p(x|z) up to 2 pi
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1)
        loss = (rec + kl).mean()
        parts = {"rec": float(rec.mean().detach()), "kl": float(kl.mean().detach())}
        if self.gamma is not None:
            parts["gamma"] = float(self.gamma.detach())
        return loss, parts


def _squared_error(model: ConvAutoencoder, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """The variant's factor times sum (x - r)^2; the factor is 1 / (2 gamma^2) for a learned gamma."""
    sq = (x - r).pow(2).flatten(1).sum(1)
    v = model.variant
    if v.learned_gamma:
        return sq / (2 * torch.exp(2 * model.log_gamma.clamp(min=LOG_GAMMA_MIN)))
    return sq if v.scale == 1.0 else v.scale * sq


def _dssim(model: ConvAutoencoder, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Sum over the valid SSIM windows of (1 - SSIM(x, r)) / 2."""
    return dssim_sum(x, r, model.config.ssim_window)


# L_r per kind (edgeproj.models.variants.REC_LOSS_KINDS): (model, x, f(x)) -> per-sample loss, shape N.
REC_LOSSES = {"squared_error": _squared_error, "dssim": _dssim}


def build_model(config: ModelConfig):
    """A freshly initialized autoencoder for `config`: the SSIM-AE, or the user's architecture it names."""
    if config.architecture:
        from edgeproj.models.user import UserAutoencoder

        return UserAutoencoder(config)
    return ConvAutoencoder(config)
