"""The training-free pair's statistics, against a per-position loop written from the definitions."""
import pytest
import torch

from model.a2k import a2k_mean_std
from model.all_to_all import attention_mean_std, positions, unflatten
from model.function import mean_std, mvn, shallow_keys
from model.training_free import KEY_CHANNELS, TrainingFree


def weighted_stats(query, keys, values, scale):
    """softmax(scale <query, keys>)-weighted mean and std of values: (Ck,), (n, Ck), (n, Cv) -> two (Cv,)."""
    weights = torch.softmax(scale * keys @ query, 0)
    mean = weights @ values
    return mean, (weights @ (values * values) - mean * mean).clamp(min=0).sqrt()


def padded(x, top, left, p):
    """Replicate-pad (C, H, W) by top/left, then bottom/right up to multiples of p."""
    x = torch.cat([x[:, :1]] * top + [x], 1)
    x = torch.cat([x[:, :, :1]] * left + [x], 2)
    while x.shape[1] % p:
        x = torch.cat([x, x[:, -1:]], 1)
    while x.shape[2] % p:
        x = torch.cat([x, x[:, :, -1:]], 2)
    return x


def regions(x, p):
    """(C, H, W) -> list of (p*p, C) position rows, regions row-major, positions row-major."""
    return [x[:, i : i + p, j : j + p].flatten(1).T for i in range(0, x.shape[1], p) for j in range(0, x.shape[2], p)]


def loop_a2k_mean_std(ck, sk, sv, p, scale):
    """One batch item: ck (Ck, H, W), sk (Ck, Hs, Ws), sv (Cv, Hs, Ws) -> mean, std (Cv, H, W)."""
    h, w = ck.shape[1:]
    ks, vs = regions(padded(sk, 0, 0, p), p), regions(padded(sv, 0, 0, p), p)
    kagg, vagg, v2agg = [], [], []
    for k, v in zip(ks, vs):
        kc = k.mean(0)
        wgt = torch.sigmoid(k @ kc)
        kagg.append((wgt @ k + kc) / (len(k) + 1))
        vagg.append((wgt @ v + v.mean(0)) / (len(k) + 1))
        v2agg.append((wgt @ (v * v) + (v * v).mean(0)) / (len(k) + 1))
    kagg, vagg, v2agg = torch.stack(kagg), torch.stack(vagg), torch.stack(v2agg)
    da_m, da_2 = torch.zeros(sv.shape[0], h, w, dtype=sv.dtype), torch.zeros(sv.shape[0], h, w, dtype=sv.dtype)
    pa_m, pa_2 = torch.zeros(sv.shape[0], h, w, dtype=sv.dtype), torch.zeros(sv.shape[0], h, w, dtype=sv.dtype)
    for y in range(h):
        for x in range(w):
            a = torch.softmax(scale * kagg @ ck[:, y, x], 0)
            da_m[:, y, x], da_2[:, y, x] = a @ vagg, a @ v2agg
    for dy in (0, p // 2):
        for dx in (0, p // 2):
            big = padded(ck, dy, dx, p)
            for y in range(h):
                for x in range(w):
                    ry, rx = (y + dy) // p * p, (x + dx) // p * p
                    q = big[:, ry : ry + p, rx : rx + p].flatten(1).T
                    best = max(range(len(ks)), key=lambda z: (q * ks[z]).sum().item())
                    a = torch.softmax(scale * ks[best] @ big[:, y + dy, x + dx], 0)
                    pa_m[:, y, x] += a @ vs[best] / 4
                    pa_2[:, y, x] += a @ (vs[best] * vs[best]) / 4
    std = lambda m, s2: (s2 - m * m).clamp(min=0).sqrt()  # noqa: E731
    return (da_m + pa_m) / 2, (std(da_m, da_2) + std(pa_m, pa_2)) / 2


def test_a2k_statistics_match_the_loop():
    gen = torch.Generator().manual_seed(0)
    ck, sk = torch.randn(2, 6, 7, 5, generator=gen), torch.randn(2, 6, 6, 9, generator=gen)
    sv = torch.randn(2, 3, 6, 9, generator=gen)
    mean, std = a2k_mean_std(ck, sk, sv, 4, 0.5)
    for b in range(2):
        m, s = loop_a2k_mean_std(ck[b].double(), sk[b].double(), sv[b].double(), 4, 0.5)
        assert torch.allclose(mean[b].double(), m, atol=1e-5) and torch.allclose(std[b].double(), s, atol=1e-5)


def test_std_is_capped_at_the_styles_own():
    """A planted style whose one region alternates between -10 and 10 while the rest is 0: content
    keys that match that region alone would get stds near 10."""
    keys = torch.zeros(1, 4, 8, 8)
    keys[:, :, :4, :4] = 5.0  # the odd region's keys
    values = torch.zeros(1, 2, 8, 8)
    values[:, :, :4, :4] = 10.0 * (torch.arange(16).reshape(4, 4) % 2 * 2 - 1)
    content_key = torch.full((1, 4, 4, 4), 5.0)
    for attention in ("a2k", "all2all"):
        net = TrainingFree(attention)
        mean, std = net.mean_std(content_key, keys, values)
        assert std.max() <= 1.0 and mean.abs().max() <= 10.0
    _, raw = a2k_mean_std(content_key, keys, values, 4, TrainingFree("a2k").scale)
    assert raw.max() > 5  # what the cap is there for


def test_all_to_all_statistics_match_the_loop():
    gen = torch.Generator().manual_seed(1)
    ck, sk = torch.randn(1, 6, 5, 4, generator=gen), torch.randn(1, 6, 3, 7, generator=gen)
    sv = torch.randn(1, 3, 3, 7, generator=gen) * 0.4
    net = TrainingFree("all2all")
    mean, std = net.mean_std(ck, sk, sv)
    keys, values = sk[0].flatten(1).T.double(), sv[0].flatten(1).T.double()
    for y in range(5):
        for x in range(4):
            m, s = weighted_stats(ck[0, :, y, x].double(), keys, values, net.scale)
            assert torch.allclose(mean[0, :, y, x].double(), m, atol=1e-5)
            assert torch.allclose(std[0, :, y, x].double(), s.clamp(max=1), atol=1e-5)


def test_the_pair_differs_only_in_the_attention():
    """TrainingFree("a2k") gives a2k_mean_std over 8 x 8 regions, TrainingFree("all2all") attention over every
    style position, both with logits scaled by 1/sqrt(960) and the std capped at 1; anything else is refused."""
    torch.manual_seed(0)
    ck, sk, sv = torch.randn(1, KEY_CHANNELS, 12, 10), torch.randn(1, KEY_CHANNELS, 9, 11), 3 * torch.randn(1, 6, 9, 11)
    scale = 1 / KEY_CHANNELS**0.5
    mean, std = TrainingFree("a2k").mean_std(ck, sk, sv)
    want_mean, want_std = a2k_mean_std(ck, sk, sv, 8, scale)
    assert torch.equal(mean, want_mean) and torch.equal(std, want_std.clamp(max=1)) and (want_std > 1).any()
    mean, std = TrainingFree("all2all").mean_std(ck, sk, sv)
    want_mean, want_std = attention_mean_std(positions(ck), positions(sk), positions(sv), scale)
    assert torch.equal(mean, unflatten(want_mean, ck)) and torch.equal(std, unflatten(want_std, ck).clamp(max=1))
    with pytest.raises(ValueError, match="attention must be 'a2k' or 'all2all', not 'sanet'"):
        TrainingFree("sanet")
    assert TrainingFree("a2k").decode(torch.zeros(1, 512, 4, 5)).shape == (1, 3, 32, 40)  # the AdaIN decoder


def test_transfer_gives_the_decoder_attended_statistics_on_relu4_in_the_styles_scale():
    """transfer: the keys are AdaAttN's shallow keys up to relu4_1, the values the style's relu4_1 standardised;
    the result std * mvn(content relu4_1) + mean, brought back to the style's channel mean and std."""
    torch.manual_seed(1)
    sizes = [(64, 16), (128, 8), (256, 4), (512, 2)]
    c = [torch.rand(1, ch, n, n + 1) for ch, n in sizes]
    s = [torch.rand(1, ch, n + 1, n) for ch, n in sizes]
    net = TrainingFree("a2k")
    (got,) = net.transfer(c, s)
    mean, std = net.mean_std(shallow_keys(c, 3), shallow_keys(s, 3), mvn(s[3]))
    style_mean, style_std = mean_std(s[3])
    assert got.shape == c[3].shape and torch.allclose(got, (std * mvn(c[3]) + mean) * style_std + style_mean)
