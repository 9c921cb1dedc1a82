"""The paper's four autoencoders (section 4.1) on the Bergmann et al. 2018 SSIM-AE architecture.

The variant registry (`edgeproj.models.variants`) and the config import without torch; the model classes
load on first use, so the CLI can read the registry for its choices and keep `--help` instant.
"""

from edgeproj.models.config import ModelConfig
from edgeproj.models.variants import Variant, get_variant, list_variants, variant_names

__all__ = ["ModelConfig", "Variant", "get_variant", "list_variants", "variant_names", "ConvAutoencoder", "build_model"]


def __getattr__(name: str):
    if name in ("ConvAutoencoder", "build_model"):
        from edgeproj.models import autoencoder

        return getattr(autoencoder, name)
    raise AttributeError(f"module 'edgeproj.models' has no attribute {name!r}")
