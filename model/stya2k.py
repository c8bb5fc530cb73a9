"""The StyA2K network: A2K at relu3_1 as decoder skip, Transform at relu4_1 + relu5_1, skip decoder."""
from .a2k import A2K, REGION_SIZE
from .decoder import SkipDecoder
from .stylenet import StyleNet, TwoLevelTransform


class Transform(TwoLevelTransform):
    """A2K at relu4_1 and relu5_1, merged. Keys of latest_net_transform.pth. lean: see `A2K`."""

    def __init__(self, channels=512, lean=True):
        super().__init__(channels)
        self.attn_adain_4_1 = A2K(channels, REGION_SIZE[4], lean=lean)
        self.attn_adain_5_1 = A2K(channels, REGION_SIZE[5], lean=lean)

    def forward(self, content4, style4, content5, style5):
        return self.merge(self.attn_adain_4_1(content4, style4), self.attn_adain_5_1(content5, style5))


class StyA2K(StyleNet):
    """Files: `a2k` <- latest_net_A2K.pth, `transform` <- latest_net_transform.pth, `decoder` <- latest_net_decoder.pth.
    lean=False runs every A2K layer in the reference formulation (same numbers; see `A2K`)."""

    def __init__(self, lean=True):
        super().__init__()
        self.a2k = A2K(256, REGION_SIZE[3], lean=lean)
        self.transform = Transform(512, lean)
        self.decoder = SkipDecoder()

    def transfer(self, c, s):
        return self.transform(c[3], s[3], c[4], s[4]), self.a2k(c[2], s[2])

    def decode(self, feat4, skip3):
        return self.decoder(feat4, skip3)
