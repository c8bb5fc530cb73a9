"""The half-precision path: inference autocasts to float16 on CUDA only, and the lean A2K and the
networks keep their numbers under float16 autocast (run here on the CPU, which has the same dtype rules)."""
import contextlib
import warnings

import pytest
import torch

from model.a2k import A2K
from model.methods import load_method
from model.precision import CUDA_DTYPE, autocast


def test_cpu_runs_float32_and_cuda_autocasts_to_float16():
    assert isinstance(autocast("cpu"), contextlib.nullcontext)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available": the context is still built as on a GPU
        cuda = autocast("cuda")
    assert CUDA_DTYPE == torch.float16 and cuda.fast_dtype == torch.float16 and cuda.device == "cuda"


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "reference"])
@torch.no_grad()
def test_a2k_under_float16_autocast_stays_close_to_float32(lean):
    torch.manual_seed(0)
    m = A2K(64, 4, lean=lean)
    for param in m.parameters():
        param.copy_(torch.randn_like(param) * 0.05)
    content, style = torch.rand(1, 64, 21, 18), torch.rand(1, 64, 16, 24)
    exact = m(content, style)
    with torch.autocast("cpu", dtype=torch.float16):
        half = m(content, style)
    assert torch.isfinite(half).all()
    assert (half.float() - exact).abs().max() <= 2e-2 * exact.abs().max()


@torch.inference_mode()
def test_training_free_a2k_under_float16_autocast_is_within_a_level():
    net = load_method("a2k_free", None, "cpu")
    gen = torch.Generator().manual_seed(0)
    content, style = torch.rand(1, 3, 64, 80, generator=gen), torch.rand(1, 3, 72, 64, generator=gen)
    exact = net(content, style).clamp(0, 1)
    with torch.autocast("cpu", dtype=torch.float16):
        half = net(content, style).float().clamp(0, 1)
    assert (half - exact).abs().mean() * 255 < 1.0
