"""A2K against the reference implementation's tensors, and beyond it (any size, any style size)."""
import pytest
import torch

import model.a2k
from model.a2k import A2K, REGION_SIZE, attend, branches, branches_reference, match_regions, parameter_free
from model.stya2k import Transform

from .conftest import DATA, close

CASES = torch.load(DATA / "a2k_cases.pt")


def module(case, lean, device):
    m = A2K(case["in_planes"], REGION_SIZE[case["layer"]], lean=lean)
    m.load_state_dict(case["state_dict"])
    return m.to(device)


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "reference"])
@pytest.mark.parametrize("index", range(len(CASES)))
@torch.no_grad()
def test_a2k_reproduces_reference(index, lean, device):
    case = CASES[index]
    m = module(case, lean, device)
    content, style = case["content"].to(device), case["style"].to(device)
    da, pa = m.attention(content, style)
    assert close(da, case["da"])
    assert close(pa, case["pa"])
    assert close(m(content, style), case["out"])


@torch.no_grad()
def test_a2k_in_lower_precision_is_the_reference_at_that_precision():
    """Under autocast (CUDA runs in float16; the CPU's bfloat16 takes the same paths) the lean layer casts its
    fusion weights to the activations' dtype and agrees with the reference formulation within bfloat16's error."""
    case = CASES[0]
    lean, reference = (module(case, lean, "cpu") for lean in (True, False))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, want = (m(case["content"], case["style"]) for m in (lean, reference))
    scale = case["out"].abs().max()
    assert (got.float() - want.float()).abs().max() <= 0.01 * scale
    assert (got.float() - case["out"]).abs().mean() <= 0.005 * scale  # the max: a region matched differently


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "reference"])
@torch.no_grad()
def test_transform_reproduces_reference(device, lean):
    case = torch.load(DATA / "transform_case.pt")
    t = Transform(case["in_planes"], lean=lean)
    t.load_state_dict(case["state_dict"])
    t.to(device)
    args = [case[k].to(device) for k in ("content4_1", "style4_1", "content5_1", "style5_1")]
    assert close(t(*args), case["out"])


def naive_branches(q1, k1, v1, q2, k2, v2, alpha, beta, p, heads):
    """The spec's formulas with explicit loops over heads and regions, on padded (C, H, W) maps."""
    def regions(x):
        c, h, w = x.shape
        d = c // heads
        return [
            [x[i * d:(i + 1) * d, a:a + p, b:b + p].reshape(d, p * p).T for a in range(0, h, p) for b in range(0, w, p)]
            for i in range(heads)
        ]

    Q1, K1, V1, Q2, K2, V2 = map(regions, (q1, k1, v1, q2, k2, v2))
    da, pa = [], []
    for i in range(heads):
        kagg, vagg = [], []
        for k, v in zip(K1[i], V1[i]):
            kc = k.mean(0)
            w = torch.sigmoid(beta + alpha * (k @ kc))
            kagg.append(((w[:, None] * k).sum(0) + kc) / (len(k) + 1))
            vagg.append(((w[:, None] * v).sum(0) + v.mean(0)) / (len(k) + 1))
        kagg, vagg = torch.stack(kagg), torch.stack(vagg)
        da.append([torch.softmax(q @ kagg.T, -1) @ vagg for q in Q1[i]])
        head_pa = []
        for q in Q2[i]:
            m = max(range(len(K2[i])), key=lambda z: (q * K2[i][z]).sum().item())
            head_pa.append(torch.softmax(q @ K2[i][m].T, -1) @ V2[i][m])
        pa.append(head_pa)
    return da, pa


def fold(branch, p, h, w):
    """Inverse of the loops' region order: per head a list of (r, d) regions -> (C, h, w)."""
    out = []
    for head in branch:
        rows = [torch.cat([r.T.reshape(-1, p, p) for r in head[j:j + w // p]], 2) for j in range(0, len(head), w // p)]
        out.append(torch.cat(rows, 1))
    return torch.cat(out, 0)[:, :h, :w]


def replicate_pad(x, p):
    """(C, H, W) -> (C, H', W') with H', W' the next multiples of p, by repeating the last row and
    column (index clamping; independent of the code's padding)."""
    c, h, w = x.shape
    rows = torch.arange(-(-h // p) * p).clamp(max=h - 1)
    cols = torch.arange(-(-w // p) * p).clamp(max=w - 1)
    return x[:, rows][:, :, cols]


def loop_mvn(x):
    """(C, H, W) normalised per channel: (x - mean) / sqrt(unbiased variance + 1e-5), with loops."""
    out = torch.empty_like(x)
    for i, channel in enumerate(x):
        values = channel.flatten()
        mean = values.sum() / len(values)
        var = ((values - mean) ** 2).sum() / (len(values) - 1)
        out[i] = (channel - mean) / torch.sqrt(var + 1e-5)
    return out


def conv1x1(conv, x):
    """A 1x1 convolution as an explicit sum over input channels. x (C, H, W)."""
    return torch.einsum("oc,chw->ohw", conv.weight[:, :, 0, 0], x) + conv.bias[:, None, None]


def loop_a2k(m, content, style):
    """The spec's A2K layer written from its formulas: Z = fusion1(DA) + fusion2(PA) + content, with
    DA and PA from `naive_branches` on replicate-padded maps. content (C, H, W), style (C, Hs, Ws)."""
    cn, sn = loop_mvn(content), loop_mvn(style)
    maps = [replicate_pad(conv1x1(conv, x), m.region_size) for conv, x in
            ((m.q, cn), (m.k, sn), (m.v, style), (m.q2, cn), (m.k2, sn), (m.v2, style))]
    nda, npa = naive_branches(*maps, m.sim_alpha.item(), m.sim_beta.item(), m.region_size, m.heads)
    h, w = content.shape[-2:]
    da, pa = (fold(x, m.region_size, *maps[0].shape[-2:])[:, :h, :w] for x in (nda, npa))
    return da, pa, conv1x1(m.fusion1, da) + conv1x1(m.fusion2, pa) + content


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "reference"])
@pytest.mark.parametrize(
    "content_size,style_size,p",
    [((12, 20), (12, 20), 4), ((11, 17), (9, 23), 4), ((16, 8), (24, 32), 8), ((5, 7), (3, 3), 4),
     ((11, 20), (12, 19), 4)],  # the last pads only rows of the content, only columns of the style
)
@torch.no_grad()
def test_a2k_any_size_matches_loops(content_size, style_size, p, lean):
    torch.manual_seed(0)
    c, heads = 16, 2
    m = A2K(c, p, heads=heads, lean=lean).double()
    for param in m.parameters():
        param.copy_(torch.randn_like(param) * 0.3)
    content = torch.rand(1, c, *content_size, dtype=torch.float64)
    style = torch.rand(1, c, *style_size, dtype=torch.float64)
    da, pa = m.attention(content, style)
    out = m(content, style)
    assert da.shape == pa.shape == out.shape == content.shape
    ref_da, ref_pa, ref_out = loop_a2k(m, content[0], style[0])
    for got, want in ((da[0], ref_da), (pa[0], ref_pa), (out[0], ref_out)):
        assert (got - want).abs().max().item() <= 1e-10 * max(1.0, want.abs().max().item())


@pytest.mark.parametrize("content_size,style_size,p", [((12, 20), (12, 20), 4), ((11, 17), (9, 23), 4)])
@torch.no_grad()
def test_parameter_free_a2k_is_the_formula_with_identity_projections(content_size, style_size, p):
    """parameter_free (the training's L_A2K target): one head, sim_alpha 1, sim_beta 0, the keys and values given."""
    torch.manual_seed(1)
    query_key = torch.rand(1, 6, *content_size, dtype=torch.float64)
    style_key = torch.rand(1, 6, *style_size, dtype=torch.float64)
    style_value = torch.rand(1, 5, *style_size, dtype=torch.float64)
    da, pa = parameter_free(query_key, style_key, style_value, p)
    maps = [replicate_pad(x[0], p) for x in (query_key, style_key, style_value)]
    for got, want in zip((da[0], pa[0]), naive_branches(*maps, *maps, 1.0, 0.0, p, 1)):
        want = fold(want, p, *maps[0].shape[-2:])[:, :content_size[0], :content_size[1]]
        assert got.shape == want.shape and (got - want).abs().max().item() <= 1e-10


@torch.no_grad()
def test_lean_equals_reference_on_large_uneven_maps(device, monkeypatch):
    monkeypatch.setattr(model.a2k, "MATCH_CHUNK_ELEMENTS", 1000)  # several chunks of content regions
    torch.manual_seed(1)
    shapes = [(2, 8, 37, 8, 32), (2, 8, 53, 8, 32)]
    q1 = torch.randn(shapes[0], device=device)
    k1, v1 = (torch.randn(shapes[1], device=device) for _ in range(2))
    q2 = torch.randn(shapes[0], device=device)
    k2, v2 = (torch.randn(shapes[1], device=device) for _ in range(2))
    lean = branches(q1, k1, v1, q2, k2, v2, 0.7, 0.1)
    ref = branches_reference(q1, k1, v1, q2, k2, v2, 0.7, 0.1)
    for a, b in zip(lean, ref):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("ev", [5, 6], ids=["sdpa", "products"])  # values as wide as the keys, or wider (CPU)
def test_attend_in_any_number_of_chunks_is_the_formula(monkeypatch, ev):
    """attend over chunks of 1, 2 (four parts), 4 (two parts) or all of the 7 query rows: softmax(scale q k^T) v."""
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 7, 5), torch.randn(2, 3, 9, 5), torch.randn(2, 3, 9, ev)
    want = torch.softmax(0.7 * q @ k.transpose(-1, -2), -1) @ v
    for elements in (1, 2 * 54, 4 * 54, 1 << 24):  # rows per chunk = elements // (6 x 9 logits a row)
        monkeypatch.setattr(model.a2k, "ATTEND_CHUNK_ELEMENTS", elements)
        assert torch.allclose(attend(q, k, v, 0.7), want, atol=1e-6), elements


def test_match_regions_in_any_number_of_chunks_is_the_formula(monkeypatch):
    torch.manual_seed(0)
    q, k = torch.randn(1, 2, 7, 2, 2), torch.randn(1, 2, 5, 2, 2)  # more regions than values in one
    want = torch.einsum("bhxyd,bhzyd->bhxz", q, k).argmax(-1)
    for elements in (1, 2 * 10, 1 << 24):  # content regions per chunk = elements // (2 x 5)
        monkeypatch.setattr(model.a2k, "MATCH_CHUNK_ELEMENTS", elements)
        assert torch.equal(match_regions(q, k), want), elements
