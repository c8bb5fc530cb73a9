"""The shared-encoder path: encode once, cache features, same outputs as each method on its own."""
import numpy as np
import pytest
import torch
from PIL import Image

from model.features import FeatureCache, encoder_fingerprint
from model.methods import load_method
from model.pipeline import compare, stylize

SHIPPED = ["a2k_free", "all2all_free", "adain", "stya2k_here", "sanet_here"]
CONTENT = Image.fromarray(np.random.default_rng(0).integers(0, 256, (72, 96, 3), dtype=np.uint8))
STYLE = Image.fromarray(np.random.default_rng(1).integers(0, 256, (80, 64, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def nets():
    return {name: load_method(name, device="cpu") for name in SHIPPED}


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("alpha", [1.0, 0.6])
def test_forward_is_stylize_features_of_encode(nets, name, alpha):
    net = nets[name]
    gen = torch.Generator().manual_seed(0)
    c, s = torch.rand(1, 3, 72, 96, generator=gen), torch.rand(1, 3, 80, 64, generator=gen)
    with torch.inference_mode():
        whole = net(c, s, alpha)
        split = net.stylize_features(net.encode(c), net.encode(s), alpha)
    assert whole.shape == (1, 3, 72, 96)
    torch.testing.assert_close(split, whole, rtol=0, atol=0)


def test_shared_path_equals_per_method_path_for_every_shipped_method(nets):
    cache = FeatureCache()
    shared = compare(CONTENT, STYLE, [nets[n] for n in SHIPPED], size=96, style_size=80, cache=cache)
    assert cache.misses == 2 and cache.hits == 2 * len(SHIPPED) - 2  # one encoding each of content and style
    for name, out in zip(SHIPPED, shared):
        alone = stylize(CONTENT, STYLE, nets[name], size=96, style_size=80)
        diff = np.abs(np.asarray(out, dtype=int) - np.asarray(alone, dtype=int))
        assert diff.max() <= 1, name  # identical floats up to rounding to 8 bits


def test_style_size_is_independent_of_the_output_size(nets):
    cache = FeatureCache()
    out = stylize(CONTENT, STYLE, nets["adain"], size=64, style_size=48, cache=cache)
    assert out.size == (64, 48)
    shapes = {key[1] for key in cache.entries}
    assert shapes == {(1, 3, 48, 64), (1, 3, 48, 38)}  # content 64 px long side, style 48 px


def test_features_are_shared_only_between_identical_encoder_weights(nets):
    a, b = nets["a2k_free"], nets["stya2k_here"]
    assert encoder_fingerprint(a.encoder) == encoder_fingerprint(b.encoder)
    other = load_method("adain", device="cpu")
    with torch.no_grad():
        other.encoder.layers[2].bias[0] += 1e-3
    other.encoder._fingerprint = None
    assert encoder_fingerprint(other.encoder) != encoder_fingerprint(a.encoder)
    cache = FeatureCache()
    compare(CONTENT, STYLE, [a, other], size=64, style_size=64, cache=cache)
    assert cache.misses == 4 and cache.hits == 0


def test_cache_is_bounded_by_bytes_and_evicts_the_least_recently_used():
    feats = [torch.zeros(250)]  # 1000 bytes
    cache = FeatureCache(max_bytes=2500)
    cache.put("a", feats)
    cache.put("b", feats)
    assert cache.get("a") is feats  # "a" is now the most recent
    cache.put("c", feats)
    assert cache.get("b") is None and cache.get("a") is feats and cache.bytes == 2000
    cache.put("huge", [torch.zeros(1000)])  # larger than the bound: not kept, nothing evicted
    assert cache.get("huge") is None and cache.bytes == 2000
