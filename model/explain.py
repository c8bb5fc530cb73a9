"""Where one content position attends in the style: the paper's central figure, for the
training-free pair (same keys at relu4_1; A2K against all-to-all)."""
import torch

from .a2k import REGION_SIZE, aggregate, cut_regions, fold_regions, match_regions
from .function import shallow_keys
from .training_free import TrainingFree


def region_map(weights, p, h, w):
    """(n,) per-region or (n, r) per-position weights of the padded grid of an (h, w) map -> (h, w) map."""
    if weights.dim() == 1:
        weights = weights[:, None].expand(-1, p * p)
    return fold_regions(weights[None, None, :, :, None], p, h, w)[0, 0]


@torch.inference_mode()
def attention_maps(net, content, style, point):
    """net: a TrainingFree network; content (1, 3, H, W), style (1, 3, Hs, Ws) in [0, 1]; point (x, y)
    in content pixels. Returns maps over the style's relu4_1 grid (Hs/8, Ws/8), each summing to 1:
    "da": DA's weight of each style region (shown on all its positions), "pa": PA's weights inside
    the one matched region, "all2all": softmax over every style position; and "cell": the query's
    (x, y) on the content's relu4_1 grid."""
    if not isinstance(net, TrainingFree):
        raise TypeError("attention maps are defined for the training-free pair (a2k_free, all2all_free)")
    c, s = net.encoder(content), net.encoder(style)
    ck, sk = shallow_keys(c, 3), shallow_keys(s, 3)
    h, w = ck.shape[-2:]
    hs, ws = sk.shape[-2:]
    x = min(int(point[0] * w / content.shape[-1]), w - 1)
    y = min(int(point[1] * h / content.shape[-2]), h - 1)
    p = REGION_SIZE[4]
    query = ck[0, :, y, x]
    keys = cut_regions(sk, p, 1)  # (1, 1, n, r, C)
    kagg, _ = aggregate(keys, keys, 1.0, 0.0)
    da = torch.softmax(kagg[0, 0] @ query * net.scale, 0)
    content_regions = cut_regions(ck, p, 1)
    region = (y // p) * -(-w // p) + x // p
    matched = match_regions(content_regions[:, :, region : region + 1], keys)[0, 0, 0]
    pa = torch.zeros(keys.shape[2], keys.shape[3], dtype=query.dtype, device=query.device)
    pa[matched] = torch.softmax(keys[0, 0, matched] @ query * net.scale, 0)
    all2all = torch.softmax(query @ sk[0].flatten(1) * net.scale, 0).reshape(hs, ws)
    da_map = region_map(da, p, hs, ws)
    pa_map = region_map(pa, p, hs, ws)
    return {
        "da": (da_map / da_map.sum()).cpu(),  # renormalised: padded positions are cropped away
        "pa": (pa_map / pa_map.sum()).cpu(),
        "all2all": all2all.cpu(),
        "cell": (x, y),
    }
