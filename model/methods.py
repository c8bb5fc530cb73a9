"""One entry point for every method: which files it needs, whether it can run, and loading it."""
import argparse
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .baselines import AdaAttNNet, AdaINNet, SANetNet
from .precision import memory_format
from .stya2k import StyA2K
from .training_free import TrainingFree
from .weights import ADAIN_DECODER, OFFICIAL, TRAINED, VGG, load_into, locate


@dataclass(frozen=True)
class Method:
    """files: submodule name of the network -> the weight file it is loaded from (the encoder from VGG).
    attention: "a2k" (all-to-key), "all2all" or None (no attention). reconstructs: whether its transfer of
    the content onto itself gives the content back (what alpha 0 blends towards, see StyleNet); False
    for networks trained without an identity loss, whose decoder never learnt to return the photo."""

    name: str
    label: str
    build: Callable[[], torch.nn.Module]
    files: dict = field(default_factory=dict)
    attention: str | None = None
    reconstructs: bool = True

    def all_files(self):
        return {"encoder.layers": VGG, **self.files}


METHODS = {
    m.name: m
    for m in (
        Method("a2k_free", "A2K (training-free)", lambda: TrainingFree("a2k"), {"decoder": ADAIN_DECODER}, "a2k"),
        Method("all2all_free", "all-to-all (training-free)", lambda: TrainingFree("all2all"),
               {"decoder": ADAIN_DECODER}, "all2all"),
        Method("adain", "AdaIN", AdaINNet, {"decoder": ADAIN_DECODER}),
        # StyA2K's and AdaAttN's losses (the papers') have no identity term; SANet's has two
        Method("stya2k", "StyA2K (official)", StyA2K, OFFICIAL["stya2k"], "a2k", reconstructs=False),
        Method("sanet", "SANet (official)", SANetNet, OFFICIAL["sanet"], "all2all"),
        Method("adaattn", "AdaAttN (official)", AdaAttNNet, OFFICIAL["adaattn"], "all2all", reconstructs=False),
        Method("stya2k_here", "StyA2K (trained here)", StyA2K, TRAINED["stya2k_here"], "a2k", reconstructs=False),
        Method("sanet_here", "SANet (trained here)", SANetNet, TRAINED["sanet_here"], "all2all"),
    )
}


@dataclass(frozen=True)
class MethodStatus:
    name: str
    label: str
    missing: list

    @property
    def available(self):
        return not self.missing


def get_method(name):
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def available_methods(weights_dir=None):
    """name -> MethodStatus; `missing` lists the weight files (WeightFile) not found."""
    return {
        m.name: MethodStatus(m.name, m.label, [wf for wf in m.all_files().values() if locate(wf, weights_dir) is None])
        for m in METHODS.values()
    }


def default_device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_device(name):
    """A device name given by a user -> torch.device (None -> `default_device()`); ValueError that
    says what to use instead for a malformed name or a CUDA device this machine does not have."""
    if name is None:
        return default_device()
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"{name!r} is not a device: use cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise ValueError(f"{name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s) visible to PyTorch; "
                         "use --device cpu, or a GPU that exists")
    return device


def device_argument(name):
    """argparse type for a command's --device: `check_device`, its ValueError as a usage error."""
    try:
        return check_device(name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def load_method(name, weights_dir=None, device=None):
    """The method's network in eval mode on `device` (default: CUDA if present), its weights in
    `precision.memory_format(device)` (channels_last on the CPU).

    forward(content, style, alpha=1.0): (B, 3, H, W) floats in [0, 1] -> raw decoder output (B, 3, H, W).
    Raises WeightsError naming any missing or wrong file, ValueError for an unknown name."""
    method = get_method(name)
    net = method.build()
    for attr, wf in method.all_files().items():
        load_into(net.get_submodule(attr), wf, weights_dir, allow_extra=wf is VGG)
    device = torch.device(device or default_device())
    return net.eval().to(device, memory_format=memory_format(device))


def layouts():
    """(WeightFile, the state_dict it must fit) for every file of every method, for `weights.verify`."""
    for method in METHODS.values():
        net = method.build()
        for attr, wf in method.all_files().items():
            yield wf, net.get_submodule(attr).state_dict()
