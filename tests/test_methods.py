"""Every method: official file layouts load, odd sizes run, baselines match their formulas."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from model.all_to_all import AdaAttN, SANet
from model.function import mvn
from model.images import open_image, resize_long_side
from model.methods import METHODS, available_methods, load_method
from model.pipeline import to_tensor
from model.weights import REPO_WEIGHTS, locate

from .conftest import official_layouts

EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.mark.parametrize("name", list(METHODS))
@torch.no_grad()
def test_every_method_runs_on_odd_sizes(name, official_weights_dir):
    net = load_method(name, official_weights_dir, "cpu")
    torch.manual_seed(0)
    content, style = torch.rand(1, 3, 157, 261), torch.rand(1, 3, 330, 243)
    out = net(content, style)
    assert out.shape == (1, 3, 157, 261)
    assert torch.isfinite(out).all()
    blended = net(content, style, alpha=0.5)
    assert blended.shape == out.shape and not torch.allclose(blended, out)


def test_official_layouts_load_unchanged(official_weights_dir):
    for name in ("stya2k", "sanet", "adaattn"):
        net = load_method(name, official_weights_dir, "cpu")
        for attr, wf in METHODS[name].files.items():
            saved = torch.load(official_weights_dir / wf.path, weights_only=True)
            assert saved.keys() == net.get_submodule(attr).state_dict().keys()
            for key, value in saved.items():
                assert torch.equal(net.get_submodule(attr).state_dict()[key], value), key


def test_available_methods_lists_missing_files(tmp_path, official_weights_dir):
    status = available_methods(tmp_path)
    shipped = {name for name, m in METHODS.items() if all(wf.packaged or wf.in_repo for wf in m.all_files().values())}
    assert {"a2k_free", "stya2k_here"} <= shipped
    assert {n for n, s in status.items() if s.available} == shipped
    assert [wf.path for wf in status["sanet"].missing] == [
        "sanet/transformer_iter_500000.pth", "sanet/decoder_iter_500000.pth"
    ]
    assert all(s.available for s in available_methods(official_weights_dir).values())


def test_check_weights_command(official_weights_dir):
    run = subprocess.run(
        [sys.executable, "-m", "model.check_weights", str(official_weights_dir)],
        capture_output=True, text=True, cwd=Path(__file__).parents[1],
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count(": ok") == len(official_layouts()) + 2
    assert "Warning" not in run.stderr


@torch.no_grad()
def test_sanet_layer_matches_its_formula(device):
    torch.manual_seed(0)
    layer = SANet(16).to(device)
    c, s = torch.rand(2, 16, 5, 7, device=device), torch.rand(2, 16, 6, 4, device=device)
    f = layer.f(mvn(c)).flatten(2)
    g = layer.g(mvn(s)).flatten(2)
    h = layer.h(s).flatten(2)
    attn = torch.softmax(f.transpose(1, 2) @ g, -1)
    expected = layer.out_conv((h @ attn.transpose(1, 2)).view_as(c)) + c
    assert torch.allclose(layer(c, s), expected, atol=1e-5)


@pytest.mark.parametrize("max_sample", [1000, 20, 10])  # 25 style positions, 12 key channels
@torch.no_grad()
def test_adaattn_layer_matches_its_formula(max_sample, device):
    torch.manual_seed(0)
    layer = AdaAttN(8, 12, max_sample=max_sample).to(device)
    c, s = torch.rand(1, 8, 4, 6, device=device), torch.rand(1, 8, 5, 5, device=device)
    ck, sk = torch.rand(1, 12, 4, 6, device=device), torch.rand(1, 12, 5, 5, device=device)
    g, h = layer.g(sk).flatten(2), layer.h(s).flatten(2)
    if g.shape[2] > max_sample:  # the official code seeds the global generator, then draws on the CPU
        torch.manual_seed(layer.seed)
        index = torch.randperm(g.shape[2])[:max_sample].to(device)
        g, h = g[:, :, index], h[:, :, index]
    attn = torch.softmax(layer.f(ck).flatten(2).transpose(1, 2) @ g, -1)
    mean = attn @ h.transpose(1, 2)
    std = torch.sqrt(torch.relu(attn @ (h * h).transpose(1, 2) - mean**2))
    expected = std.transpose(1, 2).view_as(c) * mvn(c) + mean.transpose(1, 2).view_as(c)
    assert torch.allclose(layer(c, s, ck, sk), expected, atol=1e-5)
    assert (AdaAttN(8, 12).max_sample, layer.seed) == (256 * 256, 6666)  # the official code's


@torch.no_grad()
def test_training_free_pair_gives_distinct_stylisations():
    content = to_tensor(resize_long_side(open_image(EXAMPLES / "contents/animal_red_panda.jpg"), 256), "cpu")
    style = to_tensor(resize_long_side(open_image(EXAMPLES / "styles/hokusai_great_wave_off_kanagawa.jpg"), 256), "cpu")
    a2k = load_method("a2k_free", device="cpu")(content, style).clamp(0, 1)
    all2all = load_method("all2all_free", device="cpu")(content, style).clamp(0, 1)
    assert (a2k - content).abs().mean() > 0.08
    assert (all2all - content).abs().mean() > 0.08
    assert (a2k - all2all).abs().mean() > 0.01
    # stylised, not noise: the colour statistics move towards the style's
    dist = lambda x: (x.mean((2, 3)) - style.mean((2, 3))).abs().sum()  # noqa: E731
    assert dist(a2k) < dist(content) and dist(all2all) < dist(content)


@pytest.mark.parametrize("name", ["stya2k_here", "sanet_here"])
@torch.no_grad()
def test_shipped_trained_weights_stylise(name):
    """The float16 files in weights/ load as they are and give a stylisation, not the content back."""
    assert all(locate(wf).parent.parent == REPO_WEIGHTS for wf in METHODS[name].files.values())
    content = to_tensor(resize_long_side(open_image(EXAMPLES / "contents/photo_chelsea.jpg"), 96), "cpu")
    style = to_tensor(resize_long_side(open_image(EXAMPLES / "styles/gogh_harvest.jpg"), 96), "cpu")
    out = load_method(name, device="cpu")(content, style)
    assert out.shape == content.shape
    assert torch.isfinite(out).all()
    assert (out.clamp(0, 1) - content).abs().mean() > 0.03
