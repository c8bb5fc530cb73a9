"""What every stylisation network shares: encode both images, transfer features, decode, crop."""
import torch.nn as nn

from .encoder import Encoder
from .function import up2_to


class StyleNet(nn.Module):
    """forward(content (B, 3, H, W), style (B, 3, Hs, Ws) in [0, 1], alpha) -> raw RGB (B, 3, H, W).

    forward == stylize_features(encode(content), encode(style), alpha): a comparison of two methods
    with the same encoder weights encodes each image once (`model.features`).
    Subclasses define `transfer(c_feats, s_feats)` -> tuple of decoder inputs and `decode(*inputs)`.
    Style strength alpha < 1 blends each transferred feature with the content transferred onto itself."""

    def __init__(self):
        super().__init__()
        self.encoder = Encoder()

    def encode(self, x):
        """(B, 3, H, W) in [0, 1] -> the five VGG features (relu1_1 .. relu5_1)."""
        return self.encoder(x)

    def stylize_features(self, c, s, alpha=1.0):
        """Encoder features of content and style (lists from `encode`) -> raw RGB (B, 3, H, W),
        H and W those of the content image (relu1_1 has the image's size)."""
        h, w = c[0].shape[-2:]
        feats = self.transfer(c, s)
        if alpha < 1:
            own = self.transfer(c, c)
            feats = tuple(alpha * f + (1 - alpha) * o for f, o in zip(feats, own))
        del c, s  # forward's features are freed before decoding, which is where memory peaks
        return self.decode(*feats)[..., :h, :w]

    def forward(self, content, style, alpha=1.0):
        return self.stylize_features(self.encode(content), self.encode(style), alpha)


class TwoLevelTransform(nn.Module):
    """Merge of a relu4_1 and a relu5_1 result as SANet, AdaAttN and StyA2K do: merge_conv(pad(a4 + up2(a5)))."""

    def __init__(self, channels=512):
        super().__init__()
        self.merge_conv_pad = nn.ReflectionPad2d(1)
        self.merge_conv = nn.Conv2d(channels, channels, 3)

    def merge(self, a4, a5):
        return self.merge_conv(self.merge_conv_pad(a4 + up2_to(a5, a4)))
