"""Peak memory of one call: CUDA's allocator peak, or the process's peak resident set on Linux CPUs."""
import re
from pathlib import Path

import torch

PROC = Path("/proc/self")


class PeakMemory:
    """with PeakMemory(device) as peak: ...  then peak.mib is the peak during the block in MiB
    (CUDA: allocations above those before; CPU: the process's peak RSS, VmHWM, reset at entry
    through /proc/self/clear_refs), or None where it cannot be measured."""

    def __init__(self, device):
        self.device = torch.device(device)
        self.mib = None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            self.base = None
            try:
                (PROC / "clear_refs").write_text("5")
                self.base = 0
            except OSError:
                pass
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mib = (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        elif self.base is not None:
            match = re.search(r"VmHWM:\s+(\d+) kB", (PROC / "status").read_text())
            self.mib = int(match.group(1)) / 1024 if match else None
        return False
