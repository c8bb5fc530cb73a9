import json
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"
# CUDA variants are always collected: without a GPU they are reported as skipped, never silently absent
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU"))]


def reference_error(a, b):
    """max |a - b| relative to the reference tensor `b`'s scale (its largest magnitude, at least 1)."""
    return (a.cpu() - b).abs().max().item() / max(1.0, b.abs().max().item())


def close(a, b):
    """Within 5e-6 of the reference's scale: the largest error of our A2K measured on the CPU is 1.05e-6."""
    return reference_error(a, b) <= 5e-6


@pytest.fixture(params=DEVICES)
def device(request):
    """Each device in float32: TF32 convolutions (cuDNN's default) are off for equivalence tests."""
    if request.param == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return torch.device(request.param)


def random_state_dict(layout, seed=0):
    """A state dict with the given key -> shape layout, random N(0, 0.02) values as in training's init."""
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=gen) * 0.02 for k, shape in layout.items()}


def official_layouts():
    """weights-folder path -> key layout of every official checkpoint file."""
    official = json.loads((DATA / "official_keys.json").read_text())
    baselines = json.loads((DATA / "baseline_keys.json").read_text())
    sanet = {name: keys for name, keys in baselines["sanet"].items() if name != "vgg_normalised.pth"}
    layouts = {}
    for folder, files in (("stya2k", official), ("stya2k_here", official), ("sanet", sanet),
                          ("sanet_here", sanet), ("adaattn", baselines["adaattn"])):
        layouts.update({f"{folder}/{name}": keys for name, keys in files.items()})
    return layouts


@pytest.fixture(scope="session")
def official_weights_dir(tmp_path_factory):
    """A weights folder holding every official file, built from the published key layouts."""
    root = tmp_path_factory.mktemp("weights")
    for i, (path, layout) in enumerate(official_layouts().items()):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        torch.save(random_state_dict(layout, seed=i), root / path)
    return root
