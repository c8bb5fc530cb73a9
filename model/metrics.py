"""The paper's quantitative metrics: content loss, style loss (VGG features) and SSIM (luminance).

Images are (B, 3, H, W) RGB floats in [0, 1]; the losses and SSIM are 0-dim tensors (means over the batch).
`evaluate_pair` scores one comparison of PIL images (the demo's Metrics panel)."""
import pandas as pd
import torch
import torch.nn.functional as F

from .encoder import Encoder
from .function import mean_std, mvn
from .images import as_rgb, resize_long_side
from .methods import default_device
from .pipeline import to_tensor
from .weights import VGG, load_into

DEFINITIONS = "content: MSE of mvn relu4_1 + relu5_1; style: mean/std MSE over relu1_1..relu5_1; SSIM on BT.601 luminance"
COLUMNS = ("content_loss", "style_loss", "ssim")


def load_encoder(weights_dir=None, device=None):
    """The frozen VGG encoder (relu1_1..relu5_1) for the losses, in eval mode on `device` (default: CUDA if present)."""
    encoder = Encoder()
    load_into(encoder.layers, VGG, weights_dir, allow_extra=True)
    return encoder.eval().to(device or default_device())


def content_loss(out_feats, content_feats):
    """MSE between mvn(features) of output and content at relu4_1, plus the same at relu5_1."""
    return sum(F.mse_loss(mvn(o), mvn(c)) for o, c in zip(out_feats[3:], content_feats[3:]))


def style_loss(out_feats, style_feats):
    """Sum over relu1_1..relu5_1 of MSE(channel means) + MSE(channel stds) between output and style."""
    loss = 0
    for o, s in zip(out_feats, style_feats):
        (o_mean, o_std), (s_mean, s_std) = mean_std(o), mean_std(s)
        loss += F.mse_loss(o_mean, s_mean) + F.mse_loss(o_std, s_std)
    return loss


def luminance(rgb):
    """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) ITU-R BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=rgb.dtype, device=rgb.device)
    return (rgb * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)


def gaussian_window(size=11, sigma=1.5, dtype=torch.float32, device=None):
    """(1, 1, size, size) Gaussian kernel summing to 1."""
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g)[None, None]


def ssim(a, b, k1=0.01, k2=0.03):
    """Mean SSIM (Wang et al. 2004) between the BT.601 luminances of a and b, both (B, 3, H, W) in [0, 1]
    with H, W >= 11: Gaussian window 11 x 11, sigma 1.5, data range 1, no padding. 1 for equal images."""
    if a.shape != b.shape:
        raise ValueError(f"SSIM needs images of the same size, got {tuple(a.shape)} and {tuple(b.shape)}")
    x, y = luminance(a), luminance(b)
    window = gaussian_window(dtype=x.dtype, device=x.device)
    mu_x, mu_y = F.conv2d(x, window), F.conv2d(y, window)
    var_x = F.conv2d(x * x, window) - mu_x**2
    var_y = F.conv2d(y * y, window) - mu_y**2
    cov = F.conv2d(x * y, window) - mu_x * mu_y
    c1, c2 = k1**2, k2**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean()


@torch.inference_mode()
def measure(content, style, outputs, encoder):
    """content (1, 3, H, W), style (1, 3, Hs, Ws) and outputs {method: (1, 3, H, W)} in [0, 1] (clamp raw
    outputs first) -> one dict per method: method, content_loss, style_loss, ssim (floats)."""
    content_feats, style_feats = encoder(content), encoder(style)
    rows = []
    for method, out in outputs.items():
        out_feats = encoder(out)
        rows.append({
            "method": method,
            "content_loss": content_loss(out_feats, content_feats).item(),
            "style_loss": style_loss(out_feats, style_feats).item(),
            "ssim": ssim(out, content).item(),
        })
    return rows


def evaluate_pair(content_img, style_img, outputs, encoder):
    """Metrics of one comparison: the content and style as given (PIL images, paths or bytes) and
    {method: RGB PIL output}, all outputs of the same size. Content and style are resized as
    `model.stylize.stylize` did (long side = the outputs' long side).
    Returns a DataFrame with columns method, content_loss, style_loss, ssim, one row per method."""
    device = next(encoder.parameters()).device
    size = max(next(iter(outputs.values())).size)
    content = to_tensor(resize_long_side(as_rgb(content_img), size), device)
    style = to_tensor(resize_long_side(as_rgb(style_img), size), device)
    tensors = {m: to_tensor(as_rgb(img), device) for m, img in outputs.items()}
    return pd.DataFrame(measure(content, style, tensors, encoder), columns=["method", *COLUMNS])
