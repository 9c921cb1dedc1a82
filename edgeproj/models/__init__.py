"""The paper's four autoencoders (section 4.1) on the Bergmann et al. 2018 SSIM-AE architecture."""

from edgeproj.models.autoencoder import ConvAutoencoder, build_model
from edgeproj.models.config import VARIANTS, ModelConfig

__all__ = ["VARIANTS", "ModelConfig", "ConvAutoencoder", "build_model"]
