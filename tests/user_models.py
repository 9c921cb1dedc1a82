"""Autoencoders a user might bring (`edgeproj train/export --model user_models:Name`), none of them the SSIM-AE.

Importable by the CLI from this folder (tests run the CLI with it as the working directory or on the path).
"""

from __future__ import annotations

import torch
from torch import nn


def _down(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.ReLU()]


def _up(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.ReLU()]


class BatchNormAE(nn.Module):
    """Gray 128x128: Conv-BatchNorm-ReLU down to 8x8, a dense bottleneck of 64, ConvTranspose-BatchNorm-ReLU up."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(*_down(1, 16), *_down(16, 32), *_down(32, 32), *_down(32, 16))
        self.to_code = nn.Linear(16 * 8 * 8, 64)
        self.from_code = nn.Linear(64, 16 * 8 * 8)
        self.decoder = nn.Sequential(*_up(16, 32), *_up(32, 32), *_up(32, 16), nn.ConvTranspose2d(16, 1, 4, 2, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)
        code = self.to_code(h.flatten(1))
        return self.decoder(self.from_code(code).view(-1, 16, 8, 8))


class UpsampleAE(nn.Module):
    """Gray 128x128: strided Conv + ELU encoder to an 8x8x8 code; nearest Upsample + Conv decoder (no ConvTranspose)."""

    def __init__(self):
        super().__init__()
        chans = [1, 16, 32, 32]
        enc: list[nn.Module] = []
        for cin, cout in zip(chans, chans[1:]):
            enc += [nn.Conv2d(cin, cout, 3, 2, 1), nn.ELU()]
        self.encoder = nn.Sequential(*enc, nn.Conv2d(32, 8, 3, 2, 1))
        dec: list[nn.Module] = []
        for cin, cout in ((8, 32), (32, 32), (32, 16)):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, 1, 1), nn.ELU()]
        dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(16, 1, 3, 1, 1), nn.Sigmoid()]
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class DeepRGBAE(nn.Module):
    """RGB 128x128, five stages down to 4x4 (the SSIM-AE has four), LeakyReLU and Tanh, a 1x1 latent conv, and a
    bilinear upsampling in the decoder."""

    def __init__(self):
        super().__init__()
        chans = [3, 16, 32, 32, 48, 48]
        enc: list[nn.Module] = []
        for cin, cout in zip(chans, chans[1:]):
            enc += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.1)]
        self.encoder = nn.Sequential(*enc, nn.Conv2d(48, 24, 1))
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(24, 48, 4, 2, 1), nn.Tanh(),
            nn.ConvTranspose2d(48, 48, 4, 2, 1), nn.LeakyReLU(0.1),
            nn.ConvTranspose2d(48, 32, 4, 2, 1), nn.LeakyReLU(0.1),
            nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.LeakyReLU(0.1),
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(16, 3, 3, 1, 1), nn.Sigmoid(),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def deep_rgb() -> nn.Module:
    """A factory instead of a class (the --model path may name either)."""
    return DeepRGBAE()


class MaxPoolAE(nn.Module):
    """Max pooling: its backward scatters by data-dependent indices, which edgeproj does not lower."""

    def __init__(self):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(1, 8, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2))
        self.up = nn.Sequential(nn.ConvTranspose2d(8, 1, 2, 2), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


class NoisyAE(UpsampleAE):
    """Adds noise in eval mode: not a pure function of its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x + 0.01 * torch.randn_like(x))
