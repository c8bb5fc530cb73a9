"""Decoders from features back to RGB: the AdaIN decoder (relu4_1 -> image) and the StyA2K /
AdaAttN decoder with a relu3_1 skip input. Outputs are raw (not clamped)."""
import torch
import torch.nn as nn


def conv_block(cin, cout, relu=True):
    layers = [nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


def upsample():
    return nn.Upsample(scale_factor=2, mode="nearest")


def decoder_tail():
    """The layers both decoders end with: (B, 256, h, w) at relu3_1 level -> (B, 3, 4h, 4w)."""
    return [
        *conv_block(256, 256), *conv_block(256, 256), *conv_block(256, 128), upsample(),
        *conv_block(128, 128), *conv_block(128, 64), upsample(),
        *conv_block(64, 64), *conv_block(64, 3, relu=False),
    ]


def adain_decoder():
    """AdaIN's decoder: (B, 512, H/8, W/8) relu4_1-like feature -> (B, 3, H, W); keys "1.weight" ... "28.bias"."""
    return nn.Sequential(*conv_block(512, 256), upsample(), *conv_block(256, 256), *decoder_tail())


class SkipDecoder(nn.Module):
    """StyA2K's and AdaAttN's decoder: forward(feat4 (B, 512, h4, w4), skip3 (B, 256, h3, w3)) -> (B, 3, 4*h3, 4*w3)."""

    def __init__(self):
        super().__init__()
        self.decoder_layer_1 = nn.Sequential(*conv_block(512, 256), upsample())
        self.decoder_layer_2 = nn.Sequential(*conv_block(512, 256), *decoder_tail())

    def forward(self, feat4, skip3):
        up = self.decoder_layer_1(feat4)[..., : skip3.shape[-2], : skip3.shape[-1]]
        return self.decoder_layer_2(torch.cat((up, skip3), dim=1))
