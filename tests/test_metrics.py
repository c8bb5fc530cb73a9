"""Known answers for the metrics: zero losses for identical statistics, SSIM 1 / symmetric / negative."""
import numpy as np
import pytest
import torch
from PIL import Image

from model.images import resize_long_side
from model.metrics import content_loss, evaluate_pair, gaussian_window, load_encoder, luminance, ssim, style_loss


def synthetic(height=64, width=48, seed=0):
    """(1, 3, H, W) in [0, 1]: colour gradients, stripes and a bright square."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    freq, phase = rng.uniform(4, 12), rng.uniform(0, np.pi)
    img = np.stack([x, y, 0.5 + 0.5 * np.sin(freq * (x + y) * np.pi + phase)])
    img[:, height // 4 : height // 2, width // 4 : width // 2] = rng.uniform(0.6, 1.0, (3, 1, 1))
    return torch.from_numpy(img).float()[None]


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(device="cpu")


def test_identical_images_give_zero_content_loss_and_ssim_one(encoder):
    img = synthetic()
    feats = encoder(img)
    assert content_loss(feats, feats).item() == 0
    assert ssim(img, img).item() == pytest.approx(1.0, abs=1e-6)


def test_output_equal_to_style_gives_zero_style_loss(encoder):
    style = synthetic(seed=1)
    assert style_loss(encoder(style), encoder(style)).item() == 0
    assert style_loss(encoder(synthetic(seed=2)), encoder(style)).item() > 0


def test_content_loss_grows_with_noise(encoder):
    img = synthetic()
    content_feats = encoder(img)
    noise = torch.randn(img.shape, generator=torch.Generator().manual_seed(0))
    losses = [content_loss(encoder((img + s * noise).clamp(0, 1)), content_feats).item() for s in (0.02, 0.1, 0.3)]
    assert 0 < losses[0] < losses[1] < losses[2]


def test_ssim_of_inverted_image_is_negative():
    img = synthetic()
    assert ssim(img, 1 - img).item() < 0


def test_ssim_is_symmetric_and_below_one_for_different_images():
    a, b = synthetic(seed=3), synthetic(seed=4)
    assert ssim(a, b).item() == pytest.approx(ssim(b, a).item(), abs=1e-6)
    assert ssim(a, b).item() < 0.99


def test_ssim_of_one_window_matches_the_formula():
    """On 11 x 11 images there is one window position: SSIM is the formula on Gaussian-weighted statistics."""
    rng = np.random.default_rng(5)
    a, b = (torch.from_numpy(rng.uniform(size=(1, 3, 11, 11))).double() for _ in range(2))
    w = gaussian_window(dtype=torch.float64)[0, 0]
    x, y = luminance(a)[0, 0], luminance(b)[0, 0]
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy, cov = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum(), (w * (x - mx) * (y - my)).sum()
    c1, c2 = 0.01**2, 0.03**2
    expected = (2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert ssim(a, b).item() == pytest.approx(expected.item(), abs=1e-9)
    assert w.sum().item() == pytest.approx(1.0)


def test_luminance_is_bt601():
    rgb = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert luminance(rgb).item() == pytest.approx(0.299)


def test_ssim_rejects_different_sizes():
    with pytest.raises(ValueError, match="same size"):
        ssim(synthetic(64, 48), synthetic(48, 64))


def to_pil(tensor):
    return Image.fromarray(tensor[0].permute(1, 2, 0).mul(255).round().byte().numpy())


def test_evaluate_pair_gives_one_row_per_method(encoder):
    content, style = to_pil(synthetic(96, 72, seed=6)), to_pil(synthetic(80, 80, seed=7))
    outputs = {"copy": resize_long_side(content, 64), "style": resize_long_side(style, 64).resize((48, 64))}
    table = evaluate_pair(content, style, outputs, encoder)
    assert list(table.columns) == ["method", "content_loss", "style_loss", "ssim"]
    assert list(table["method"]) == ["copy", "style"]
    copy, styled = table.iloc[0], table.iloc[1]
    assert copy["content_loss"] == 0 and copy["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert styled["content_loss"] > 0 and styled["ssim"] < copy["ssim"]
