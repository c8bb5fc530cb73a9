"""All-to-key attention (StyA2K, Zhu et al. ICCV 2023): distributed (DA) and progressive (PA) attention.

Maps are cut into non-overlapping p x p regions; in region form a map is a tensor
(B, heads, n, r, d): n regions (row-major), r = p*p positions per region (row-major), d = C / heads.

Two implementations give the same numbers:
- `branches_reference`: the formulas written out, materialising the h*N*n DA logits and the
  position-wise region scores (what the official code does; used by tests and benchmarks);
- `branches`: memory-lean; DA is softmax attention over n aggregated keys (SDPA), region
  matching runs over chunks of content regions, PA attends inside the gathered regions.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .function import mvn

HEADS = 8
REGION_SIZE = {2: 16, 3: 8, 4: 8, 5: 4}
MATCH_CHUNK_ELEMENTS = 1 << 24
ATTEND_CHUNK_ELEMENTS = 1 << 24


def pad_to_multiple(x, p):
    """Replicate-pad (B, C, H, W) on the bottom and right so H and W are multiples of p."""
    h, w = x.shape[-2:]
    ph, pw = -h % p, -w % p
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


def to_regions(x, p, heads):
    """(B, C, H, W), H and W multiples of p -> (B, heads, n, p*p, C/heads). One copy, which reads
    whole channel rows when x is channels_last (the CPU networks' layout)."""
    b, c, h, w = x.shape
    x = x.permute(0, 2, 3, 1).reshape(b, h // p, p, w // p, p, heads, c // heads)
    return x.permute(0, 5, 1, 3, 2, 4, 6).reshape(b, heads, (h // p) * (w // p), p * p, c // heads)


def from_regions(x, p, h, w):
    """(B, heads, n, p*p, d) -> (B, heads*d, h, w); inverse of `to_regions`. In channels_last memory
    on the CPU (its networks' layout; written in whole channel rows), contiguous elsewhere (CUDA's)."""
    b, heads, _, _, d = x.shape
    x = x.reshape(b, heads, h // p, w // p, p, p, d)
    out = x.permute(0, 2, 4, 3, 5, 1, 6).reshape(b, h, w, heads * d).permute(0, 3, 1, 2)
    return out if x.device.type == "cpu" else out.contiguous()


def cut_regions(x, p, heads):
    """(B, C, H, W) of any size -> region form (B, heads, n, p*p, C/heads) of the map replicate-padded
    to multiples of p."""
    return to_regions(pad_to_multiple(x, p), p, heads)


def fold_regions(x, p, h, w):
    """Region form of a padded map -> (B, heads*d, h, w), the padding cropped; inverse of `cut_regions`."""
    return from_regions(x, p, h + (-h % p), w + (-w % p))[..., :h, :w]


def aggregate(k, v, sim_alpha, sim_beta):
    """DA's one key and one value per style region, each (B, heads, n, d).

    w[x, y] = sigmoid(beta + alpha <kc[x], k[x, y]>), agg = (sum_y w k[x, y] + kc[x]) / (r + 1)."""
    r = k.shape[3]
    kc, vc = k.mean(3), v.mean(3)
    w = torch.sigmoid(sim_beta + sim_alpha * torch.einsum("bhnd,bhnrd->bhnr", kc, k))
    kagg = (torch.einsum("bhnr,bhnrd->bhnd", w, k) + kc) / (r + 1)
    vagg = (torch.einsum("bhnr,bhnrd->bhnd", w, v) + vc) / (r + 1)
    return kagg, vagg


def attend(q, k, v, scale):
    """softmax(scale * q k^T) v over the second-last axis of k. q (..., A, L, E), k (..., A, S, E),
    v (..., A, S, Ev). With Ev = E, or off the CPU, this is SDPA (leading axes merged into one so it
    gets the 4-d input its fused kernels need). On the CPU with Ev != E (values and their squares)
    SDPA has no fused kernel and its fallback rescales q and k in full and holds every logit; there the
    two products run directly, over chunks of at most ATTEND_CHUNK_ELEMENTS logits."""
    lead = q.shape[:-2]
    if q.device.type != "cpu" or q.shape[-1] == v.shape[-1]:
        out = F.scaled_dot_product_attention(*(x.reshape(-1, *x.shape[-3:]) for x in (q, k, v)), scale=scale)
        return out.reshape(*lead, *out.shape[-2:])
    q, k, v = (x.reshape(-1, *x.shape[-2:]) for x in (q, k, v))
    kt, rows = k.transpose(1, 2), max(1, ATTEND_CHUNK_ELEMENTS // (k.shape[0] * k.shape[1]))
    parts = [torch.bmm(torch.bmm(q[:, i : i + rows], kt).mul_(scale).softmax(-1), v) for i in range(0, q.shape[1], rows)]
    out = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
    return out.reshape(*lead, *out.shape[-2:])


def match_regions(q, k):
    """For each content region the style region with the highest position-wise score
    sum_y <q[x, y], k[z, y]>; (B, heads, nq). Computed in float32 (an argmax is sensitive to
    rounding) over chunks of content regions."""
    qf, kf = q.flatten(3).float(), k.flatten(3).float()
    chunk = max(1, MATCH_CHUNK_ELEMENTS // (kf.shape[0] * kf.shape[1] * kf.shape[2]))
    return torch.cat(
        [(qf[:, :, i : i + chunk] @ kf.transpose(-1, -2)).argmax(-1) for i in range(0, qf.shape[2], chunk)], dim=2
    )


def gather_regions(x, index):
    """x (B, heads, n, r, d), index (B, heads, m) -> (B, heads, m, r, d)."""
    b, h, _, r, d = x.shape
    return torch.gather(x, 2, index[..., None, None].expand(b, h, index.shape[2], r, d))


def branches(q1, k1, v1, q2, k2, v2, sim_alpha, sim_beta, scale=1.0):
    """Memory-lean DA and PA in region form. q (B, h, nq, r, d), k and v (B, h, ns, r, d) -> two (B, h, nq, r, dv)."""
    kagg, vagg = aggregate(k1, v1, sim_alpha, sim_beta)
    da = attend(q1.flatten(2, 3), kagg, vagg, scale).reshape(*q1.shape[:-1], vagg.shape[-1])
    index = match_regions(q2, k2)
    pa = attend(q2, gather_regions(k2, index), gather_regions(v2, index), scale)
    return da, pa


def branches_reference(q1, k1, v1, q2, k2, v2, sim_alpha, sim_beta):
    """The same DA and PA as `branches` (logits unscaled, as StyA2K has them), written out with every intermediate
    materialised."""
    kagg, vagg = aggregate(k1, v1, sim_alpha, sim_beta)
    logits = torch.einsum("bhxyd,bhzd->bhxyz", q1, kagg)
    da = torch.einsum("bhxyz,bhzd->bhxyd", logits.softmax(-1), vagg)
    index = torch.einsum("bhxyd,bhzyd->bhxzy", q2, k2).sum(-1).argmax(-1)
    k2m, v2m = gather_regions(k2, index), gather_regions(v2, index)
    weights = torch.einsum("bhxyd,bhxtd->bhxyt", q2, k2m).softmax(-1)
    pa = torch.einsum("bhxyt,bhxtd->bhxyd", weights, v2m)
    return da, pa


def region_rows(x, p):
    """(B, C, H, W) -> (B, N', C): the positions of the replicate-padded map in region order
    (regions row-major, then positions row-major inside each region)."""
    return cut_regions(x, p, 1).flatten(1, 3)


def fold_rows(rows, p, h, w):
    """(B, N', C) region rows -> (B, C, h, w); inverse of `region_rows`, padding cropped."""
    b, _, c = rows.shape
    return fold_regions(rows.reshape(b, 1, -1, p * p, c), p, h, w)


class A2K(nn.Module):
    """One A2K layer with the official parameter names. forward(content, style): (B, C, H, W) and
    (B, C, Hs, Ws) features of any sizes -> Z = fusion1(DA) + fusion2(PA) + content, (B, C, H, W).

    lean=True computes one head at a time on maps kept in region order, so the 1x1 convolutions
    are matrix products that need no re-layout; lean=False is the reference formulation."""

    def __init__(self, channels, region_size, heads=HEADS, lean=True):
        super().__init__()
        self.sim_alpha = nn.Parameter(torch.ones(1))
        self.sim_beta = nn.Parameter(torch.zeros(1))
        for name in ("q", "k", "v", "q2", "k2", "v2", "fusion1", "fusion2"):
            setattr(self, name, nn.Conv2d(channels, channels, 1))
        self.region_size = region_size
        self.heads = heads
        self.lean = lean

    def head_branches(self, content, style):
        """Yields (channel slice, DA, PA) for each head, DA and PA as region rows (B, N', C/heads)."""
        p, d = self.region_size, content.shape[1] // self.heads
        cn, sn, sv = (region_rows(x, p) for x in (mvn(content), mvn(style), style))

        def project(conv, rows, heads):
            out = F.linear(rows, conv.weight[heads, :, 0, 0], conv.bias[heads])
            return out.view(rows.shape[0], 1, -1, p * p, d)

        for i in range(self.heads):
            sl = slice(i * d, (i + 1) * d)
            da, pa = branches(
                project(self.q, cn, sl), project(self.k, sn, sl), project(self.v, sv, sl),
                project(self.q2, cn, sl), project(self.k2, sn, sl), project(self.v2, sv, sl),
                self.sim_alpha, self.sim_beta,
            )
            yield sl, da.flatten(1, 3), pa.flatten(1, 3)

    def attention(self, content, style):
        """The folded DA and PA branches (the inputs of fusion1 and fusion2), each (B, C, H, W)."""
        h, w = content.shape[-2:]
        p = self.region_size
        if self.lean:
            heads = list(self.head_branches(content, style))
            return tuple(fold_rows(torch.cat([x[i] for x in heads], -1), p, h, w) for i in (1, 2))
        cn, sn = mvn(content), mvn(style)
        maps = (self.q(cn), self.k(sn), self.v(style), self.q2(cn), self.k2(sn), self.v2(style))
        regions = [cut_regions(m, p, self.heads) for m in maps]
        da, pa = branches_reference(*regions, self.sim_alpha, self.sim_beta)
        return tuple(fold_regions(x, p, h, w) for x in (da, pa))

    def forward(self, content, style):
        if not self.lean:
            da, pa = self.attention(content, style)
            return self.fusion1(da) + self.fusion2(pa) + content
        out = None
        for sl, da, pa in self.head_branches(content, style):
            if out is None:
                bias = self.fusion1.bias + self.fusion2.bias
                out = bias.to(da.dtype).expand(da.shape[0] * da.shape[1], -1).clone()
            out.addmm_(da.reshape(-1, da.shape[-1]), self.fusion1.weight[:, sl, 0, 0].t().to(da.dtype))
            out.addmm_(pa.reshape(-1, pa.shape[-1]), self.fusion2.weight[:, sl, 0, 0].t().to(da.dtype))
        rows = out.view(content.shape[0], -1, out.shape[-1])
        return fold_rows(rows, self.region_size, *content.shape[-2:]) + content


def parameter_free(query_key, style_key, style_value, region_size):
    """A2K without parameters: identity projections, one head, sim_alpha = 1, sim_beta = 0.

    query_key (B, Ck, H, W), style_key (B, Ck, Hs, Ws), style_value (B, Cv, Hs, Ws) ->
    the DA and PA branches, each (B, Cv, H, W)."""
    h, w = query_key.shape[-2:]
    p = region_size
    q, k, v = (cut_regions(m, p, 1) for m in (query_key, style_key, style_value))
    return tuple(fold_regions(x, p, h, w) for x in branches(q, k, v, q, k, v, 1.0, 0.0))


def progressive(query_key, k, v, p, scale, offsets):
    """PA averaged over tilings of the content map into p x p regions, each starting `offset` = (dy, dx)
    pixels above and left of the map (which is replicate-padded there); the tilings' regions are matched
    and attended in one batch. query_key (B, Ck, H, W); k, v style region forms (B, 1, ns, r, C) ->
    (B, Cv, H, W)."""
    h, w = query_key.shape[-2:]
    shifted = [F.pad(query_key, (dx, 0, dy, 0), mode="replicate") if dy or dx else query_key for dy, dx in offsets]
    q = [cut_regions(x, p, 1) for x in shifted]
    counts = [x.shape[2] for x in q]
    q = torch.cat(q, 2)
    index = match_regions(q, k)
    out = attend(q, gather_regions(k, index), gather_regions(v, index), scale)
    tilings = [fold_regions(part, p, *x.shape[-2:])[..., dy : dy + h, dx : dx + w]
               for part, x, (dy, dx) in zip(out.split(counts, 2), shifted, offsets)]
    return sum(tilings) / len(tilings)


def a2k_mean_std(content_key, style_key, style_value, region_size, scale):
    """Parameter-free A2K statistics: identity projections, one head, sim_alpha = 1, sim_beta = 0.

    content_key (B, Ck, H, W), style_key (B, Ck, Hs, Ws), style_value (B, Cv, Hs, Ws) -> per content
    position the attention-weighted mean and std of the style values, each (B, Cv, H, W), averaged
    over the DA and PA branches. PA is itself the average over four tilings of the content map into
    regions, offset by half a region (0 or p/2 rows, 0 or p/2 columns): each content position is then
    matched through four different regions, so one wrong match paints a quarter of a block, and region
    borders of one tiling fall inside the regions of the others (no hard edges)."""
    h, w = content_key.shape[-2:]
    p = region_size
    values = torch.cat((style_value, style_value * style_value), 1)
    k, v = (cut_regions(m, p, 1) for m in (style_key, values))
    kagg, vagg = aggregate(k, v, 1.0, 0.0)
    q = cut_regions(content_key, p, 1)
    da = fold_regions(attend(q.flatten(2, 3), kagg, vagg, scale).reshape(*q.shape[:-1], vagg.shape[-1]), p, h, w)
    offsets = [(dy, dx) for dy in (0, p // 2) for dx in (0, p // 2)]
    pa = progressive(content_key, k, v, p, scale, offsets)
    stats = []
    for branch in (da, pa):
        mean, second = branch.split(style_value.shape[1], 1)
        stats.append((mean, (second - mean * mean).relu().sqrt()))
    (mean_da, std_da), (mean_pa, std_pa) = stats
    return (mean_da + mean_pa) / 2, (std_da + std_pa) / 2
