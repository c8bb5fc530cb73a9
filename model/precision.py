"""How inference runs on each device: float32 on the CPU, autocast to CUDA_DTYPE on CUDA.

float16 was chosen over bfloat16 by `python -m model.speed --precision` (README, Performance):
its outputs are about 5x closer to float32. channels_last was measured too and made the
full network 2x slower on an H100, so tensors stay contiguous."""
import contextlib

import torch

CUDA_DTYPE = torch.float16


def autocast(device):
    """The autocast context for inference on `device` (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=CUDA_DTYPE)
    return contextlib.nullcontext()
