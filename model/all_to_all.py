"""All-to-all attention: every content position attends to every style position (SANet, AdaAttN).

Computed with `scaled_dot_product_attention`, which never holds the N x M weights at once on the
memory-efficient / flash kernels. Maps are flattened to (B, 1, positions, channels)."""
import torch
import torch.nn as nn

from .a2k import attend
from .function import mean_std, mvn


def positions(x):
    """(B, C, H, W) -> (B, 1, H*W, C), contiguous (the fused attention kernels need unit stride on C)."""
    return x.flatten(2).transpose(1, 2).contiguous().unsqueeze(1)


def unflatten(x, like):
    """(B, 1, H*W, C) -> (B, C, H, W) with the size of `like`."""
    return x.squeeze(1).transpose(1, 2).reshape(x.shape[0], x.shape[-1], *like.shape[-2:])


def attention_mean_std(q, k, v, scale):
    """Attention-weighted mean and std of values: q (..., N, dk), k (..., M, dk), v (..., M, dv) -> two (..., N, dv).

    std = sqrt(relu(E[v^2] - E[v]^2)); one attention pass over [v, v^2]."""
    mean, second = attend(q, k, torch.cat((v, v * v), -1), scale).split(v.shape[-1], -1)
    return mean, (second - mean * mean).relu().sqrt()


class SANet(nn.Module):
    """SANet layer: out_conv(softmax(f(mvn c)^T g(mvn s)) h(s)) + c. (B, C, H, W), (B, C, Hs, Ws) -> (B, C, H, W)."""

    def __init__(self, channels):
        super().__init__()
        self.f = nn.Conv2d(channels, channels, 1)
        self.g = nn.Conv2d(channels, channels, 1)
        self.h = nn.Conv2d(channels, channels, 1)
        self.out_conv = nn.Conv2d(channels, channels, 1)

    def forward(self, content, style):
        q, k, v = positions(self.f(mvn(content))), positions(self.g(mvn(style))), positions(self.h(style))
        return self.out_conv(unflatten(attend(q, k, v, 1.0), content)) + content


class AdaAttN(nn.Module):
    """AdaAttN layer: attention on keys gives a per-position mean and std of h(style); out = std * mvn(c) + mean.

    Above `max_sample` style positions, that many are drawn at random (seeded, as the official code)."""

    def __init__(self, channels, key_channels, max_sample=256 * 256, seed=6666):
        super().__init__()
        self.f = nn.Conv2d(key_channels, key_channels, 1)
        self.g = nn.Conv2d(key_channels, key_channels, 1)
        self.h = nn.Conv2d(channels, channels, 1)
        self.max_sample = max_sample
        self.seed = seed

    def forward(self, content, style, content_key, style_key):
        values = self.h(style)
        value_mean, value_std = mean_std(values)  # standardised so their squares fit float16
        k, v = positions(self.g(style_key)), positions((values - value_mean) / value_std)
        if k.shape[2] > self.max_sample:
            index = torch.randperm(k.shape[2], generator=torch.Generator().manual_seed(self.seed))
            index = index[: self.max_sample].to(k.device)
            k, v = k[:, :, index], v[:, :, index]
        mean, std = attention_mean_std(positions(self.f(content_key)), k, v, 1.0)
        return (unflatten(std, content) * mvn(content) + unflatten(mean, content)) * value_std + value_mean
