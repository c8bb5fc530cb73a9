"""Small tensor functions shared by every network: statistics, normalisation, shape fixes."""
import torch
import torch.nn.functional as F


def mean_std(feat, eps=1e-5):
    """Per-channel mean and std over H*W of (B, C, H, W); std = sqrt(unbiased var + eps). Both (B, C, 1, 1)."""
    flat = feat.flatten(2)
    mean = flat.mean(2)[..., None, None]
    std = (flat.var(2) + eps).sqrt()[..., None, None]
    return mean, std


def mvn(feat):
    """Mean-variance normalisation of (B, C, H, W) per channel."""
    mean, std = mean_std(feat)
    return (feat - mean) / std


def adain(content, style):
    """AdaIN: content feature renormalised to the style's channel mean and std."""
    mean, std = mean_std(style)
    return mvn(content) * std + mean


def shallow_keys(feats, i):
    """AdaAttN's keys for layer i (0-based): mvn of every shallower feature resized (nearest)
    to layer i's size, concatenated on channels with mvn(feats[i])."""
    size = feats[i].shape[-2:]
    parts = [mvn(F.interpolate(f, size=size, mode="nearest")) for f in feats[:i]]
    return torch.cat(parts + [mvn(feats[i])], dim=1)


def up2_to(x, like):
    """Nearest 2x upsampling of x, cropped to the spatial size of `like` (odd sizes round up in VGG)."""
    h, w = like.shape[-2:]
    return F.interpolate(x, scale_factor=2.0, mode="nearest")[..., :h, :w]
