"""Warm starts: at step 0 StyA2K and SANet equal AdaIN decoder((c4 + attended style4 + up2(c5)) / 2),
the attention written out here from model.a2k's primitives (identity projections, one logit scale)."""
import math

import pytest
import torch

from model.a2k import HEADS, REGION_SIZE, attend, branches, cut_regions, fold_regions
from model.all_to_all import positions, unflatten
from model.baselines import SANetNet
from model.decoder import adain_decoder
from model.function import mvn, up2_to
from model.stya2k import StyA2K
from model.warm_start import warm_start
from model.weights import ADAIN_DECODER, VGG, load_into


def a2k_relu4(c4, s4):
    """Training-free A2K at relu4_1: keys mvn of the layer itself, 8 heads, logits / sqrt(64), mean of DA and PA."""
    p, tau = REGION_SIZE[4], 1 / math.sqrt(c4.shape[1] // HEADS)
    q, k, v = (cut_regions(x, p, HEADS) for x in (mvn(c4), mvn(s4), s4))
    da, pa = branches(q, k, v, q, k, v, 1.0, 0.0, tau)
    return (fold_regions(da, p, *c4.shape[-2:]) + fold_regions(pa, p, *c4.shape[-2:])) / 2


def all_to_all_relu4(c4, s4):
    """Training-free all-to-all attention at relu4_1: one head, logits / sqrt(512)."""
    out = attend(positions(mvn(c4)), positions(mvn(s4)), positions(s4), 1 / math.sqrt(c4.shape[1]))
    return unflatten(out, c4)


@pytest.fixture(scope="module")
def decoder():
    net = adain_decoder()
    load_into(net, ADAIN_DECODER)
    return net.double()


@pytest.mark.parametrize("method,lean", [("stya2k", True), ("stya2k", False), ("sanet", None)])
def test_step_zero_is_training_free_attention_decoded_by_adain(decoder, method, lean):
    net = StyA2K(lean=lean) if method == "stya2k" else SANetNet()
    load_into(net.encoder.layers, VGG, allow_extra=True)
    warm_start(net, method).double().eval()
    attention = a2k_relu4 if method == "stya2k" else all_to_all_relu4
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for (h, w), (hs, ws) in (((64, 64), (64, 64)), ((72, 40), (56, 88)), ((40, 104), (96, 48))):
            content = torch.rand(1, 3, h, w, generator=gen, dtype=torch.float64)
            style = torch.rand(1, 3, hs, ws, generator=gen, dtype=torch.float64)
            c, s = net.encode(content), net.encode(style)
            expected = decoder((c[3] + attention(c[3], s[3]) + up2_to(c[4], c[3])) / 2)[..., :h, :w]
            out = net(content, style)
            assert out.shape == expected.shape == (1, 3, h, w)
            assert (out - expected).abs().max().item() < 1e-4, (h, w)
