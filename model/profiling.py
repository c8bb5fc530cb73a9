"""Time and peak memory of one block of work, on CUDA or on a Linux CPU."""
import re
import time
from pathlib import Path

import torch

PROC = Path("/proc/self")


class Cost:
    """with Cost(device) as cost: ...  then cost.seconds is the block's wall time (CUDA work
    finished) and cost.mib the block's peak memory in MiB above what was held at entry: on CUDA
    the allocator's peak above its allocation at entry; on the CPU the process's peak resident set
    (VmHWM, reset at entry through /proc/self/clear_refs) above its resident set at entry, or None
    where the peak cannot be reset."""

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
                self.base = self.status_kib("VmRSS")
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
            self.mib = (self.status_kib("VmHWM") - self.base) / 1024
        return False

    @staticmethod
    def status_kib(field):
        """A memory field of /proc/self/status (VmRSS, VmHWM), in KiB."""
        return int(re.search(rf"{field}:\s+(\d+) kB", (PROC / "status").read_text()).group(1))
