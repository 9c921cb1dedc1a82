"""Bring your own autoencoder: a user's nn.Module trained, exported and run like the built-in variants.

The model is named by an import path, "package.module:Name", of an nn.Module class or a factory, called
without arguments (the current directory is importable, as for uvicorn's app paths). Its contract,
checked at export (edgeproj.export.tracing.check_contract): in eval mode `model(x)` maps N x C x H x W
images in [0, 1] to their reconstruction f(x) of the same shape, as a pure function of x (no dropout or
noise in eval mode, one sample independent of the others), without control flow on the values of x.

L_r is one of the built-in losses, chosen by name (edgeproj.models.variants.LOSSES): the model's config
carries it as the variant with that loss (l2 -> l2ae, dssim -> dsae), so training, the energy and the ONNX
heads are the built-ins'.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import torch
from torch import nn

from edgeproj.errors import CheckpointError, ConfigError
from edgeproj.models.autoencoder import Autoencoder
from edgeproj.models.config import ModelConfig
from edgeproj.models.variants import get_variant


def resolve(path: str):
    """The class or factory that "package.module:Name" names; ConfigError saying what is wrong otherwise."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"--model must be 'package.module:Name' (an nn.Module class or factory), got '{path}'")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import '{module_name}' for --model {path}: {exc}") from None
    except Exception as exc:  # the user's module raised while importing
        raise ConfigError(f"importing '{module_name}' for --model {path} failed: {type(exc).__name__}: {exc}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"'{module_name}' has no '{attr}' (--model {path})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"--model {path} is a {type(obj).__name__}, not an nn.Module class or factory")
    return obj


def instantiate(path: str) -> nn.Module:
    """A fresh instance of the user's model."""
    factory = resolve(path)
    try:
        net = factory()
    except Exception as exc:
        raise ConfigError(f"--model {path}: calling it without arguments failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(net, nn.Module):
        raise ConfigError(f"--model {path} returned a {type(net).__name__}, not a torch.nn.Module")
    return net


def load_weights(net: nn.Module, weights: Path) -> None:
    """Load a safetensors file or a PyTorch state dict (optionally under 'state_dict' or 'model') into `net`."""
    weights = Path(weights)
    if not weights.is_file():
        raise CheckpointError(f"weights file '{weights}' does not exist")
    try:
        if weights.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(weights))
        else:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            for key in ("state_dict", "model"):
                if isinstance(state, dict) and isinstance(state.get(key), dict):
                    state = state[key]
    except Exception as exc:
        raise CheckpointError(f"cannot read weights '{weights}': {type(exc).__name__}: {exc}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"'{weights}' holds a {type(state).__name__}, not a state dict")
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape
        detail = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc).splitlines()[-1])
        raise CheckpointError(f"'{weights}' does not fit the model: {detail[:300]}") from None
    if missing or unexpected:
        parts = [f"{len(keys)} {what} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
                 for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys]  # fmt: skip
        raise CheckpointError(f"'{weights}' does not fit the model: {'; '.join(parts)} parameter names")


class UserAutoencoder(Autoencoder):
    """A user's autoencoder with the interface of the built-ins: f(x) = net(x), L_r by its loss."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if not config.architecture:
            raise ConfigError("UserAutoencoder needs a config with an architecture")
        self.config = config
        self.variant = get_variant(config.variant)
        self.net = instantiate(config.architecture)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def from_weights(config: ModelConfig, weights: Path) -> UserAutoencoder:
    """The user's model (`config.architecture`) with their weights, in eval mode, as an edgeproj autoencoder."""
    model = UserAutoencoder(config)
    load_weights(model.net, weights)
    return model.eval()
