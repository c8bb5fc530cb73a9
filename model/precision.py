"""How inference runs on each device: float32 on the CPU, autocast to CUDA_DTYPE on CUDA.

float16 was chosen over bfloat16 by `python -m model.speed --precision` (README, Performance):
its outputs are about 5x closer to float32. channels_last made the full network 2x slower on an
H100, so CUDA tensors stay contiguous; on the CPU (oneDNN convolutions) it makes the encoder and
decoder about 1.3x faster with outputs equal within 1e-4, so CPU networks are channels_last."""
import contextlib

import torch

CUDA_DTYPE = torch.float16


def autocast(device):
    """The autocast context for inference on `device` (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=CUDA_DTYPE)
    return contextlib.nullcontext()


def memory_format(device):
    """The layout networks run in on `device`: channels_last on the CPU, contiguous on CUDA."""
    return torch.channels_last if torch.device(device).type == "cpu" else torch.contiguous_format
