"""Models and preprocessing: the SSIM-AE architecture, the four losses, ModelConfig, tiling and patches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from edgeproj.errors import CheckpointError, ConfigError
from edgeproj.models.autoencoder import build_model
from edgeproj.models.config import ModelConfig
from edgeproj.models.ssim import dssim_sum
from edgeproj.models.variants import get_variant, variant_names
from edgeproj.preprocess import Preprocess, random_patch, stitch, tile_origins, to_patches

VARIANTS = variant_names()

# The Bergmann et al. (2018) encoder, written out from the paper's table at width 32:
# (output channels, kernel, stride); padding is 1 throughout, LeakyReLU(0.2) after each.
PAPER_ENCODER = [(32, 4, 2), (32, 4, 2), (32, 3, 1), (64, 4, 2), (64, 3, 1), (128, 4, 2), (64, 3, 1), (32, 3, 1)]
LATENT_KERNEL = 8


def _encoder_layers(channels: int, width: int) -> list[tuple[int, int, int, int]]:
    """(in, out, kernel, stride) of the encoder convs, scaling the paper's table by width / 32."""
    layers, cin = [], channels
    for out32, k, s in PAPER_ENCODER:
        cout = out32 * width // 32
        layers.append((cin, cout, k, s))
        cin = cout
    return layers


def expected_param_count(variant: str, channels: int = 1, width: int = 32, latent: int = 100) -> int:
    """Parameter count from the layer list: encoder, 8x8 latent conv, mirrored decoder (+ gamma)."""
    enc = _encoder_layers(channels, width)
    n = 0
    for cin, cout, k, _ in enc:
        n += cin * cout * k * k + cout
    z_out = 2 * latent if get_variant(variant).vae else latent
    n += width * z_out * LATENT_KERNEL**2 + z_out  # latent conv: width -> z (VAE: mean and log-variance)
    n += latent * width * LATENT_KERNEL**2 + width  # transposed 8x8 conv back: z -> width
    for cin, cout, k, _ in reversed(enc):  # mirror: out -> in, same kernel
        n += cout * cin * k * k + cin
    if get_variant(variant).learned_gamma:
        n += 1  # the learned log gamma
    return n


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _convs(seq: nn.Module) -> list[nn.Module]:
    return [m for m in seq.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


# ---------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("variant", VARIANTS)
def test_shapes(variant, channels):
    torch.manual_seed(0)
    model = build_model(ModelConfig(variant=variant, channels=channels)).eval()
    x = torch.rand(1, channels, 128, 128)
    with torch.no_grad():
        mu, logvar = model.encode(x)
        r = model(x)  # forward without loss is the reconstruction
    assert r.shape == (1, channels, 128, 128)
    assert float(r.min()) >= 0.0 and float(r.max()) <= 1.0  # sigmoid output
    assert mu.shape == (1, 100, 1, 1)
    if get_variant(variant).vae:
        assert logvar is not None and logvar.shape == (1, 100, 1, 1)
    else:
        assert logvar is None
    assert model.rec_loss(torch.rand(3, channels, 128, 128), torch.rand(3, channels, 128, 128)).shape == (3,)


# ---------------------------------------------------------------------------------------- architecture


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("variant", VARIANTS)
def test_param_count_matches_paper_layer_list(variant, channels):
    model = build_model(ModelConfig(variant=variant, channels=channels))
    assert n_params(model) == expected_param_count(variant, channels)


def test_param_count_anchor():
    # An absolute anchor, so that a shared mistake in the helper cannot hide: the grayscale L2-AE.
    enc = 1 * 32 * 16 + 32 + 32 * 32 * 16 + 32 + 32 * 32 * 9 + 32 + 32 * 64 * 16 + 64 + 64 * 64 * 9 + 64
    enc += 64 * 128 * 16 + 128 + 128 * 64 * 9 + 64 + 64 * 32 * 9 + 32
    lat = 32 * 100 * 64 + 100
    dec = 100 * 32 * 64 + 32
    dec += 32 * 64 * 9 + 64 + 64 * 128 * 9 + 128 + 128 * 64 * 16 + 64 + 64 * 64 * 9 + 64
    dec += 64 * 32 * 16 + 32 + 32 * 32 * 9 + 32 + 32 * 32 * 16 + 32 + 32 * 1 * 16 + 1
    assert expected_param_count("l2ae") == enc + lat + dec
    assert n_params(build_model(ModelConfig())) == enc + lat + dec


@pytest.mark.parametrize("variant", VARIANTS)
def test_architecture_layers(variant):
    c, w, z = 3, 32, 100
    model = build_model(ModelConfig(variant=variant, channels=c))
    enc = _convs(model.encoder)
    assert all(isinstance(m, nn.Conv2d) and not isinstance(m, nn.ConvTranspose2d) for m in enc)
    got = [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0]) for m in enc]
    assert got == _encoder_layers(c, w)
    lat = model.to_latent
    assert isinstance(lat, nn.Conv2d) and lat.kernel_size == (8, 8) and lat.in_channels == w
    assert lat.out_channels == (2 * z if get_variant(variant).vae else z)

    dec = _convs(model.decoder)
    first = dec[0]
    assert isinstance(first, nn.ConvTranspose2d)
    assert (first.in_channels, first.out_channels, first.kernel_size[0]) == (z, w, 8)
    mirrored = [(cout, cin, k, s) for cin, cout, k, s in reversed(_encoder_layers(c, w))]
    assert [(m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0]) for m in dec[1:]] == mirrored
    for m, (_, _, _, s) in zip(dec[1:], mirrored):
        # Upsampling layers (stride 2 in the encoder) are transposed convolutions.
        assert isinstance(m, nn.ConvTranspose2d) == (s == 2)

    acts = [m for m in model.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 16  # after 8 encoder convs, the 8x8 deconv and 7 decoder convs
    assert all(a.negative_slope == pytest.approx(0.2) for a in acts)
    assert isinstance(list(model.decoder.children())[-1], nn.Sigmoid)
    assert get_variant(variant).learned_gamma == hasattr(model, "log_gamma")


@pytest.mark.parametrize("variant", ["l2ae", "vae", "gvae"])
def test_width_and_latent_change_param_count(variant):
    base = n_params(build_model(ModelConfig(variant=variant)))
    narrow = build_model(ModelConfig(variant=variant, width=16))
    small_z = build_model(ModelConfig(variant=variant, latent=20))
    assert n_params(narrow) == expected_param_count(variant, width=16)
    assert n_params(small_z) == expected_param_count(variant, latent=20)
    assert n_params(narrow) < base and n_params(small_z) < base
    with torch.no_grad():
        mu, _ = small_z.encode(torch.rand(1, 1, 128, 128))
        assert mu.shape == (1, 20, 1, 1)
        assert small_z.decode(mu).shape == (1, 1, 128, 128)


# ---------------------------------------------------------------------------------------------- losses


def _pair(seed: int, channels: int = 1, n: int = 2):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, 128, 128, generator=g)
    r = (x + 0.2 * torch.randn(n, channels, 128, 128, generator=g)).clamp(0, 1)
    return x, r


def _sq_by_hand(x: torch.Tensor, r: torch.Tensor) -> np.ndarray:
    d = x.double().numpy() - r.double().numpy()
    return np.array([float((d[i] ** 2).sum()) for i in range(d.shape[0])])


@pytest.mark.parametrize("channels", [1, 3])
def test_l2ae_rec_loss_is_sum_of_squares(channels):
    model = build_model(ModelConfig(variant="l2ae", channels=channels))
    x, r = _pair(1, channels)
    got = model.rec_loss(x, r).detach().double().numpy()
    np.testing.assert_allclose(got, _sq_by_hand(x, r), rtol=1e-5)


def test_vae_rec_loss_is_half_sum_of_squares():
    model = build_model(ModelConfig(variant="vae"))
    x, r = _pair(2)
    got = model.rec_loss(x, r).detach().double().numpy()
    np.testing.assert_allclose(got, 0.5 * _sq_by_hand(x, r), rtol=1e-5)


@pytest.mark.parametrize("log_gamma", [0.0, -1.3, 0.7])
def test_gvae_rec_loss(log_gamma):
    model = build_model(ModelConfig(variant="gvae", channels=3))
    with torch.no_grad():
        model.log_gamma.fill_(log_gamma)
    x, r = _pair(3, channels=3)
    d = 3 * 128 * 128
    # The energy's L_r leaves out D log gamma (constant in x); the training loss keeps it to learn gamma.
    want = _sq_by_hand(x, r) / (2 * math.exp(log_gamma) ** 2)
    got = model.rec_loss(x, r).detach().double().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert d == x[0].numel()
    assert float(model.gamma.detach()) == pytest.approx(math.exp(log_gamma), rel=1e-6)


def test_gvae_gamma_is_clamped_below():
    model = build_model(ModelConfig(variant="gvae"))
    with torch.no_grad():
        model.log_gamma.fill_(-30.0)
    x, r = _pair(4)
    want = _sq_by_hand(x, r) / (2 * 1e-3**2)
    np.testing.assert_allclose(model.rec_loss(x, r).detach().double().numpy(), want, rtol=1e-5)
    assert float(model.gamma.detach()) == pytest.approx(1e-3, rel=1e-5)


def test_dsae_identical_images_give_zero():
    model = build_model(ModelConfig(variant="dsae", channels=3))
    x, _ = _pair(5, channels=3)
    got = model.rec_loss(x, x.clone()).detach().numpy()
    np.testing.assert_allclose(got, 0.0, atol=1e-3)
    # ... and a different reconstruction gives a clearly positive loss
    _, r = _pair(5, channels=3)
    assert (model.rec_loss(x, r) > 100).all()


def _skimage_dssim_sum(a: np.ndarray, b: np.ndarray) -> float:
    """(1 - SSIM)/2 summed over the valid window positions, by scikit-image. a, b: C x H x W."""
    metrics = pytest.importorskip("skimage.metrics")
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, full=True)
    if a.shape[0] == 1:
        _, s = metrics.structural_similarity(a[0], b[0], **kw)
    else:
        _, s = metrics.structural_similarity(a.transpose(1, 2, 0), b.transpose(1, 2, 0), channel_axis=-1, **kw)
    pad = 5  # (11 - 1) / 2: the 11x11 window of sigma 1.5 at truncate 3.5
    s = s[pad:-pad, pad:-pad]
    assert s.shape[:2] == (118, 118)
    return float(((1.0 - s) / 2).sum())


def _smooth_pair(seed: int, channels: int):
    """Structured images (so SSIM varies across the map), as float64."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:128, 0:128] / 128.0
    a = np.stack([0.5 + 0.3 * np.sin(6 * xx + c) * np.cos(4 * yy) for c in range(channels)])
    a = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1)
    b = np.clip(0.8 * a + 0.1 + 0.1 * rng.standard_normal(a.shape), 0, 1)
    return a, b


@pytest.mark.parametrize("channels", [1, 3])
def test_dssim_sum_matches_skimage(channels):
    a, b = _smooth_pair(channels, channels)
    want = np.array([_skimage_dssim_sum(a, b), _skimage_dssim_sum(b, a[::-1].copy())])
    ta = torch.from_numpy(np.stack([a, b]))
    tb = torch.from_numpy(np.stack([b, a[::-1].copy()]))
    got64 = dssim_sum(ta, tb, 11).numpy()
    np.testing.assert_allclose(got64, want, rtol=1e-4)
    # The model's float32 path (the DSAE loss) agrees to the same tolerance.
    model = build_model(ModelConfig(variant="dsae", channels=channels))
    got32 = model.rec_loss(ta.float(), tb.float()).detach().double().numpy()
    np.testing.assert_allclose(got32, want, rtol=1e-4)


@pytest.mark.parametrize("variant", ["vae", "gvae"])
def test_vae_training_loss_includes_positive_kl(variant):
    torch.manual_seed(0)
    model = build_model(ModelConfig(variant=variant, width=8, latent=16))  # the loss, not the architecture
    x = torch.rand(3, 1, 128, 128)
    loss, parts = model.training_loss(x)
    assert parts["kl"] > 0
    assert float(loss.detach()) == pytest.approx(parts["rec"] + parts["kl"], rel=1e-5)
    assert float(loss.detach()) > parts["rec"]
    if variant == "gvae":
        assert parts["gamma"] == pytest.approx(1.0)
    # The loss is differentiable through the encoder's log-variance (the KL term reaches it).
    loss.backward()
    assert model.to_latent.weight.grad is not None and float(model.to_latent.weight.grad.abs().sum()) > 0


@pytest.mark.parametrize("variant", ["l2ae", "dsae"])
def test_ae_training_loss_is_mean_rec_loss(variant):
    torch.manual_seed(0)
    model = build_model(ModelConfig(variant=variant, width=8, latent=16))
    x = torch.rand(3, 1, 128, 128)
    loss, parts = model.training_loss(x)
    assert set(parts) == {"rec"}
    assert float(loss.detach()) == pytest.approx(float(model.rec_loss(x).detach().mean()), rel=1e-5)


def test_vae_reconstruct_is_deterministic():
    torch.manual_seed(0)
    model = build_model(ModelConfig(variant="vae", width=8, latent=16))
    x = torch.rand(2, 1, 128, 128)
    with torch.no_grad():
        assert torch.equal(model.reconstruct(x), model.reconstruct(x))
        mu, _ = model.encode(x)
        assert torch.equal(model.reconstruct(x), model.decode(mu))


# ---------------------------------------------------------------------------------------- ModelConfig


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(variant="wae"), "unknown variant"),
        (dict(channels=2), "channels"),
        (dict(size=64), "128"),
        (dict(ssim_window=10), "odd"),
        (dict(latent=0), "positive"),
        (dict(width=0), "positive"),
    ],
)
def test_model_config_rejects(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        ModelConfig(**kwargs)


def test_model_config_round_trip():
    cfg = ModelConfig(variant="gvae", channels=3, latent=64, width=16, ssim_window=7)
    d = cfg.to_dict()
    assert d == dict(variant="gvae", channels=3, size=128, latent=64, width=16, ssim_window=7)
    assert ModelConfig.from_dict(d) == cfg
    assert ModelConfig.from_dict(ModelConfig().to_dict()) == ModelConfig()


def test_model_config_unknown_keys():
    d = ModelConfig().to_dict() | {"dropout": 0.1}
    with pytest.raises(CheckpointError, match="dropout"):
        ModelConfig.from_dict(d)


# ---------------------------------------------------------------------------------------- preprocessing


@pytest.mark.parametrize(
    "side, patch, stride", [(512, 128, 64), (200, 128, 64), (300, 128, 128), (128, 128, 64), (100, 128, 64), (129, 128, 1)]
)
def test_tile_origins_cover_and_last_is_flush(side, patch, stride):
    o = tile_origins(side, patch, stride)
    assert o[0] == 0
    assert o == sorted(set(o))
    if side <= patch:
        assert o == [0]
        return
    assert o[-1] == side - patch
    covered = np.zeros(side, bool)
    for s in o:
        covered[s : s + patch] = True
    assert covered.all()
    assert all(b - a <= stride for a, b in zip(o, o[1:]))


def test_tile_origins_examples():
    assert tile_origins(512, 128, 64) == [0, 64, 128, 192, 256, 320, 384]
    assert tile_origins(200, 128, 64) == [0, 64, 72]


@pytest.mark.parametrize("channels", [1, 3])
def test_to_patches_shapes_and_content(channels):
    pre = Preprocess(mode="texture", resize=200, stride=64, channels=channels)
    img = np.random.default_rng(0).random((200, 200, channels)).astype(np.float32)
    patches, origins = to_patches(img, pre)
    assert patches.shape == (9, channels, 128, 128) and patches.dtype == np.float32
    assert len(origins) == 9 and origins[-1] == (72, 72)
    for p, (y, x) in zip(patches, origins):
        np.testing.assert_array_equal(p, img[y : y + 128, x : x + 128].transpose(2, 0, 1))


def test_stitch_constant_maps():
    pre = Preprocess(mode="texture", resize=200, stride=64, channels=1)
    _, origins = to_patches(np.zeros((200, 200, 1), np.float32), pre)
    maps = np.full((len(origins), 128, 128), 0.37, np.float32)
    out = stitch(maps, origins, pre, (200, 200))
    assert out.shape == (200, 200)
    np.testing.assert_allclose(out, 0.37, rtol=1e-6)
    # ... also for a non-square image, tiled at its aspect-preserving working size and resized back
    _, origins2 = to_patches(np.zeros((150, 310, 1), np.float32), pre)
    maps2 = np.full((len(origins2), 128, 128), 0.37, np.float32)
    out2 = stitch(maps2, origins2, pre, (150, 310))
    assert out2.shape == (150, 310)
    np.testing.assert_allclose(out2, 0.37, rtol=1e-5)


def test_patches_stitch_round_trip():
    pre = Preprocess(mode="texture", resize=200, stride=64, channels=1)
    img = np.random.default_rng(1).random((200, 200, 1)).astype(np.float32)
    patches, origins = to_patches(img, pre)
    out = stitch(patches[:, 0], origins, pre, (200, 200))
    np.testing.assert_allclose(out, img[..., 0], rtol=1e-6, atol=1e-7)


def test_to_patches_resizes_first():
    pre = Preprocess(mode="texture", resize=256, stride=128, channels=1)
    img = np.full((400, 400, 1), 0.25, np.float32)
    patches, origins = to_patches(img, pre)
    assert patches.shape == (4, 1, 128, 128)
    assert origins == [(0, 0), (0, 128), (128, 0), (128, 128)]
    np.testing.assert_allclose(patches, 0.25, rtol=1e-6)
    # A non-square frame keeps its aspect ratio: 400x300 -> 341x256 (short side 256), tiled 3 x 2.
    patches, origins = to_patches(np.full((400, 300, 1), 0.25, np.float32), pre)
    assert patches.shape == (6, 1, 128, 128)
    assert origins == [(0, 0), (0, 128), (128, 0), (128, 128), (213, 0), (213, 128)]


@pytest.mark.parametrize("mode", ["texture", "object"])
def test_random_patch_deterministic(mode):
    resize = 256 if mode == "texture" else 128
    pre = Preprocess(mode=mode, resize=resize, channels=3)
    img = np.random.default_rng(2).random((resize, resize, 3)).astype(np.float32)
    a = random_patch(img, pre, np.random.default_rng(7))
    b = random_patch(img, pre, np.random.default_rng(7))
    c = random_patch(img, pre, np.random.default_rng(8))
    assert a.shape == (3, 128, 128) and a.dtype == np.float32 and a.flags.c_contiguous
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    if mode == "texture":
        # A texture patch is a crop of the image.
        hits = [
            (y, x)
            for y in range(resize - 127)
            for x in range(resize - 127)
            if img[y, x, 0] == a[0, 0, 0] and np.array_equal(img[y : y + 128, x : x + 128].transpose(2, 0, 1), a)
        ]
        assert len(hits) == 1
