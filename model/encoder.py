"""The AdaIN "vgg_normalised" VGG-19 encoder, sliced at relu1_1 .. relu5_1 and frozen."""
import torch.nn as nn

SLICES = (4, 11, 18, 31, 44)
LAYER_NAMES = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONVS = (  # (index in the Sequential, in channels, out channels); ReLUs and pads between them
    (2, 3, 64), (5, 64, 64), (9, 64, 128), (12, 128, 128), (16, 128, 256), (19, 256, 256),
    (22, 256, 256), (25, 256, 256), (29, 256, 512), (32, 512, 512), (35, 512, 512),
    (38, 512, 512), (42, 512, 512),
)
POOLS = (7, 14, 27, 40)


def vgg_layers():
    """The first 44 modules of vgg_normalised (up to relu5_1), with the file's module indices."""
    layers = [nn.Conv2d(3, 3, 1)]
    convs = {i: (cin, cout) for i, cin, cout in CONVS}
    while len(layers) < SLICES[-1]:
        i = len(layers)
        if i in POOLS:
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        elif i + 1 in convs:
            layers.append(nn.ReflectionPad2d(1))
        elif i in convs:
            layers.append(nn.Conv2d(*convs[i], 3))
        else:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """forward(x): (B, 3, H, W) RGB in [0, 1] -> [relu1_1, ..., relu5_1] features
    (64, 128, 256, 512, 512 channels at 1, 1/2, 1/4, 1/8, 1/16 of the size, rounded up).
    `layers` holds the keys of vgg_normalised.pth up to relu5_1 ("0.weight", "2.weight", ... "42.bias")."""

    def __init__(self):
        super().__init__()
        self.layers = vgg_layers()
        self.requires_grad_(False)

    def forward(self, x):
        feats = []
        start = 0
        for end in SLICES:
            x = self.layers[start:end](x)
            feats.append(x)
            start = end
        return feats
