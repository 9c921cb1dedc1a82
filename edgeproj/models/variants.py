"""The autoencoder variants: one declaration each, the registry everything else reads.

Training, export, evaluation, the reports, the CLI's choices and the tests' parametrization all iterate or
look up this registry (in the manner of timm's model registry); nothing else spells a variant's name.
Importable without torch, so the CLI builds its choices from it and `--help` stays instant.

A declaration names its reconstruction loss L_r by kind (`rec_loss`). Each kind has its PyTorch code in
`edgeproj.models.autoencoder` (REC_LOSSES) and its ONNX head in `edgeproj.export.heads` (HEADS); a new
variant on an existing kind is its declaration alone. L_r is per sample, as the projection energy uses it
(paper eq. 4), and a sum over pixels (and channels), so lambda * ||x - x0||_1 (also a sum) means the same
for every variant. For the VAEs f(x) = D(mu(x)): the unregularized reconstruction term of the ELBO at the
posterior mean (Matsubara et al.), without the KL term.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeproj.errors import ConfigError

# The kinds of L_r; REC_LOSSES (PyTorch) and HEADS (ONNX) implement each, a test holds them to this list.
REC_LOSS_KINDS = ("squared_error", "dssim")


@dataclass(frozen=True)
class Variant:
    """One autoencoder variant of the Bergmann et al. 2018 SSIM-AE architecture.

    Attributes:
        name: the name in model configs, manifests and on the command line.
        label: its column in the report's Table 1 and its name in figure titles.
        formula: L_r(x) as a formula, for the reader.
        rec_loss: the kind of L_r: squared_error (a factor times sum (x - f(x))^2) or dssim (sum over the
            valid SSIM windows of (1 - SSIM(x, f(x))) / 2).
        scale: squared_error's factor.
        vae: a Gaussian encoder (mean and log-variance), a KL term in training, KL-gradient maps in reports.
        learned_gamma: a learned decoder scale gamma (parameter `log_gamma`, Dai & Wipf 2019): the factor
            is 1 / (2 gamma^2) instead of `scale`, and the training loss adds D log gamma (D = C*H*W),
            which is constant in x, so the energy leaves it out like the other constants (it would offset E
            and blur relative stop tests).
    """

    name: str
    label: str
    formula: str
    rec_loss: str = "squared_error"
    scale: float = 1.0
    vae: bool = False
    learned_gamma: bool = False

    def __post_init__(self):
        if self.rec_loss not in REC_LOSS_KINDS:
            raise ValueError(f"variant {self.name}: rec_loss must be one of {REC_LOSS_KINDS}, got {self.rec_loss!r}")
        if self.learned_gamma and self.rec_loss != "squared_error":
            raise ValueError(f"variant {self.name}: a learned gamma scales a squared error")

    def rec_scale(self, gamma: float | None) -> float:
        """squared_error's factor for a model whose learned gamma is `gamma` (None without one)."""
        if self.learned_gamma:
            return 1.0 / (2.0 * gamma**2)
        return self.scale


_REGISTRY: dict[str, Variant] = {}


def register(variant: Variant) -> Variant:
    """Add `variant` to the registry (in declaration order, which is Table 1's column order)."""
    if variant.name in _REGISTRY:
        raise ValueError(f"variant {variant.name!r} is declared twice")
    _REGISTRY[variant.name] = variant
    return variant


def get_variant(name: str) -> Variant:
    """The declaration of `name`; ConfigError listing the choices if there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown variant '{name}'; choose one of {', '.join(_REGISTRY)}") from None


def variant_names() -> tuple[str, ...]:
    """Every registered variant's name, in declaration order."""
    return tuple(_REGISTRY)


def list_variants() -> tuple[Variant, ...]:
    """Every registered variant, in declaration order."""
    return tuple(_REGISTRY.values())


# The paper's four autoencoders (section 4.1).
register(Variant("l2ae", "L2AE", "sum (x - f(x))^2"))
register(Variant("dsae", "DSAE", "sum over valid 11x11 windows of (1 - SSIM(x, f(x))) / 2", rec_loss="dssim"))
register(Variant("vae", "VAE", "sum (x - f(x))^2 / 2  (unit decoder variance; constants dropped)", scale=0.5, vae=True))
register(Variant("gvae", "gamma-VAE", "sum (x - f(x))^2 / (2 gamma^2)  (learned gamma)", vae=True, learned_gamma=True))


# A user's own architecture (edgeproj.models.user) takes its L_r by name: --loss name -> the variant whose L_r
# it is. Here, without torch, so the CLI builds its --loss choices from it.
LOSSES = {"l2": "l2ae", "dssim": "dsae"}


def loss_variant(loss: str) -> str:
    """The variant name that carries loss `loss` (l2 or dssim)."""
    try:
        return LOSSES[loss]
    except KeyError:
        raise ConfigError(f"unknown loss '{loss}'; choose one of {', '.join(LOSSES)}") from None


def loss_of(variant: str) -> str:
    """The --loss name of a user architecture whose config names `variant`."""
    return next(k for k, v in LOSSES.items() if v == variant)
