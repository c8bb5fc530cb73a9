"""Encoder features of a fixed bank of training crops, computed once per run so that a training step
encodes only its output (the frozen VGG forward of content and style is a third of a step's work).

A bank holds `size` content crops and `size` style crops (items 0..size-1 of a `PairDataset`: the
same scales, crops, flips and colour changes as streamed training), keeps the VGG layers a network
reads (float16, on the CPU) and, for styles, every layer's channel mean and std (float32). Step t
pairs crops drawn from a generator seeded by (seed, t), so a resumed run sees the same batches."""
import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .function import mean_std
from .precision import autocast

ENCODE_BATCH = 8


class CropBank:
    """content[layer], style[layer]: (size, C, h, w) float16 for each kept layer (0-based relu index);
    style_stats: per layer (mean, std), each (size, C, 1, 1) float32."""

    def __init__(self, dataset, size, layers, encoder, device, workers=0):
        self.layers, self.size = tuple(layers), size
        self.content = {i: [] for i in self.layers}
        self.style = {i: [] for i in self.layers}
        stats = [[] for _ in range(5)]
        loader = DataLoader(dataset, batch_size=ENCODE_BATCH, sampler=range(size), num_workers=workers)
        with torch.no_grad():
            for content, style in tqdm(loader, desc="encoding the crop bank", unit="batch", dynamic_ncols=True):
                with autocast(device):
                    c, s = encoder(content.to(device)), encoder(style.to(device))
                for i in self.layers:
                    self.content[i].append(c[i].half().cpu())
                    self.style[i].append(s[i].half().cpu())
                for i, f in enumerate(s):
                    stats[i].append(tuple(x.cpu() for x in mean_std(f.float())))
        self.content = {i: torch.cat(v) for i, v in self.content.items()}
        self.style = {i: torch.cat(v) for i, v in self.style.items()}
        self.style_stats = [tuple(torch.cat(parts) for parts in zip(*layer)) for layer in stats]

    def nbytes(self):
        return sum(t.numel() * t.element_size() for d in (self.content, self.style) for t in d.values())

    def batch(self, seed, step, batch_size, device):
        """The batch of step `step`: (content feats, style feats, style stats). Feature lists have five
        entries (None for layers not kept), float32 on `device`; stats as `style_stats`, for the batch."""
        rng = np.random.default_rng([seed, 3, step])
        ci = torch.from_numpy(rng.integers(0, self.size, batch_size))
        si = torch.from_numpy(rng.integers(0, self.size, batch_size))

        def pick(bank, index):
            return [bank[i][index].to(device).float() if i in bank else None for i in range(5)]

        stats = [(m[si].to(device), s[si].to(device)) for m, s in self.style_stats]
        return pick(self.content, ci), pick(self.style, si), stats
