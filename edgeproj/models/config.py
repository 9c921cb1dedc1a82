"""Model configuration: a frozen dataclass that travels with the weights (config.json in a run)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from edgeproj.errors import CheckpointError, ConfigError
from edgeproj.models.variants import get_variant

# Input sides a user architecture may take (the window of the DSSIM loss and map needs 11 pixels at least).
USER_SIZE_RANGE = (16, 2048)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and variant of one autoencoder.

    Attributes:
        variant: a registered variant's name (edgeproj.models.variants: l2ae, dsae, vae, gvae, ...).
        channels: 1 (grayscale) or 3 (RGB).
        size: input height and width; the architecture needs 128 (latent conv is 8x8 on 8x8 maps).
        latent: latent dimension (paper: 100).
        width: base width; the Bergmann layers are width, width, width, 2w, 2w, 4w, 2w, w (paper: 32).
        ssim_window: SSIM window size for the DSSIM loss (paper: 11, Gaussian sigma 1.5).
        architecture: a user's autoencoder, "package.module:Name" of an nn.Module class or factory called
            without arguments (edgeproj.models.user); empty for the SSIM-AE. With one, `variant` names its
            loss only (l2ae: L2, dsae: DSSIM), `size` may be any side in USER_SIZE_RANGE, and latent and
            width are not used.
    """

    variant: str = "l2ae"
    channels: int = 1
    size: int = 128
    latent: int = 100
    width: int = 32
    ssim_window: int = 11
    architecture: str = ""

    def __post_init__(self):
        variant = get_variant(self.variant)  # an unknown name is a ConfigError listing the choices
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {self.channels}")
        if self.architecture:
            if variant.vae or variant.learned_gamma:
                raise ConfigError(
                    f"a user architecture trains as a plain autoencoder with --loss l2 or dssim, not as {variant.label}"
                )
            lo, hi = USER_SIZE_RANGE
            if not lo <= self.size <= hi:
                raise ConfigError(f"the input side must be in {lo}..{hi}, got {self.size}")
        elif self.size != 128:
            raise ConfigError(f"the SSIM-AE architecture takes 128x128 inputs, got size {self.size}")
        if self.latent < 1 or self.width < 1:
            raise ConfigError("latent and width must be positive")
        if self.ssim_window % 2 != 1:
            raise ConfigError("ssim_window must be odd")

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.architecture:
            d.pop("architecture")  # the SSIM-AE's config.json stays as older edgeproj versions wrote it
        else:
            d.pop("latent"), d.pop("width")  # the SSIM-AE's; a user's architecture has its own
        return d

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise CheckpointError(f"model config has unknown keys {sorted(unknown)}; was it written by a newer edgeproj?")
        return cls(**data)
