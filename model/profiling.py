"""Time and peak memory of one block of work, on CUDA or on a Linux CPU."""
import re
import time
from pathlib import Path

import torch

PROC = Path("/proc/self")


class Cost:
    """with Cost(device) as cost: ...  then cost.seconds is the block's wall time (CUDA work
    finished) and cost.mib its peak memory in MiB: on CUDA the allocator's peak above what was
    allocated at entry; on the CPU the process's peak resident set (VmHWM, reset at entry through
    /proc/self/clear_refs), or None where that cannot be reset."""

    def __init__(self, device):
        self.device = torch.device(device)
        self.seconds = None
        self.mib = None

    def __enter__(self):
        self.base = None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            try:
                (PROC / "clear_refs").write_text("5")
                self.base = 0
            except OSError:
                pass
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds = time.perf_counter() - self.start
        if self.device.type == "cuda":
            self.mib = (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        elif self.base is not None:
            match = re.search(r"VmHWM:\s+(\d+) kB", (PROC / "status").read_text())
            self.mib = int(match.group(1)) / 1024 if match else None
        return False
