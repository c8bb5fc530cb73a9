"""The reference tensors in tests/data, made by and checked against the official StyA2K code.

    python -m tests.official_reference check --official PATH           the official code reproduces tests/data
    python -m tests.official_reference make --official PATH --out DIR  new seeded cases, written to DIR

PATH is a checkout of github.com/LearningHx/StyA2K (the commit below); its `models/networks.py`
(which imports only torch) is imported from there at run time and never copied into this repository.
`check` loads each stored state_dict and input into the official module and compares its output and
its DA and PA branches (the inputs of fusion1 and fusion2, caught by hooks) with the stored tensors.
`make` builds the same cases anew: PyTorch's default initialisation under a seed, sim_alpha drawn in
[0.5, 1.1) and sim_beta in [0, 0.6) (not the defaults 1 and 0), inputs relu(N(0, 1)) like post-ReLU
features; square maps, because the official code folds its regions back into an h x h map.
"""
import argparse
import importlib.util
import sys
from pathlib import Path

import torch

from .conftest import DATA, reference_error

COMMIT = "70b58dfdf6c249a0c621d8b849945272671dce74"
ENV = "OFFICIAL_STYA2K"
TOLERANCE = 5e-6  # relative to the stored tensor's scale, as `conftest.close`
# (layer, in_planes, batch, side) of each A2K case in a2k_cases.pt, in order
A2K_CASES = [(3, 64, 1, 32), (4, 64, 2, 16), (5, 64, 1, 8), (3, 32, 1, 64)]
TRANSFORM_PLANES, TRANSFORM_SIDE = 64, 16  # relu4_1 side; relu5_1 is half of it


def import_official(checkout):
    """The official `models/networks.py` of the checkout at `checkout`, as a module."""
    path = Path(checkout) / "models" / "networks.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: give a checkout of github.com/LearningHx/StyA2K at commit {COMMIT}")
    spec = importlib.util.spec_from_file_location("official_stya2k_networks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@torch.no_grad()
def run_a2k(official, case):
    """{out, da, pa} of the official A2K module loaded with `case` (a dict as in a2k_cases.pt)."""
    net = official.A2K(case["in_planes"])
    net.load_state_dict(case["state_dict"])
    caught = {}

    def catch(conv, args):
        caught[conv] = args[0]

    for conv in (net.fusion1, net.fusion2):
        conv.register_forward_pre_hook(catch)
    out = net(case["content"], case["style"], layer=str(case["layer"]))
    return {"out": out, "da": caught[net.fusion1], "pa": caught[net.fusion2]}


@torch.no_grad()
def run_transform(official, case):
    """The official Transform's output for `case` (a dict as in transform_case.pt)."""
    net = official.Transform(case["in_planes"])
    net.load_state_dict(case["state_dict"])
    return net(*(case[k] for k in ("content4_1", "style4_1", "content5_1", "style5_1")))


def random_similarity(net):
    """Non-default sim_alpha and sim_beta in every A2K module of `net`, from the global generator."""
    with torch.no_grad():
        for name, param in net.named_parameters():
            if name.endswith("sim_alpha"):
                param.uniform_(0.5, 1.1)
            elif name.endswith("sim_beta"):
                param.uniform_(0.0, 0.6)


def state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def make(official, seed):
    """(A2K cases, Transform case) computed by the official code, the layout of tests/data's files."""
    torch.manual_seed(seed)
    cases = []
    for layer, planes, batch, side in A2K_CASES:
        net = official.A2K(planes)
        random_similarity(net)
        content, style = (torch.randn(batch, planes, side, side).relu() for _ in range(2))
        case = dict(layer=layer, in_planes=planes, state_dict=state(net), content=content, style=style)
        cases.append({**case, **run_a2k(official, case)})
    net = official.Transform(TRANSFORM_PLANES)
    random_similarity(net)
    maps = {
        f"{kind}{level}": torch.randn(1, TRANSFORM_PLANES, side, side).relu()
        for level, side in (("4_1", TRANSFORM_SIDE), ("5_1", TRANSFORM_SIDE // 2)) for kind in ("content", "style")
    }
    transform = dict(in_planes=TRANSFORM_PLANES, state_dict=state(net), **maps)
    return cases, {**transform, "out": run_transform(official, transform)}


def errors(official, cases, transform):
    """(label, relative error) of the official code's results against the stored ones, for every tensor."""
    rows = []
    for i, case in enumerate(cases):
        got = run_a2k(official, case)
        label = f"A2K case {i} (relu{case['layer']}_1, {tuple(case['content'].shape)})"
        rows += [(f"{label} {k}", reference_error(got[k], case[k])) for k in ("out", "da", "pa")]
    rows.append(("Transform out", reference_error(run_transform(official, transform), transform["out"])))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.official_reference", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["check", "make"])
    parser.add_argument("--official", type=Path, required=True, help=f"checkout of LearningHx/StyA2K at {COMMIT}")
    parser.add_argument("--out", type=Path, help="make: folder for a2k_cases.pt and transform_case.pt")
    parser.add_argument("--seed", type=int, default=0, help="make: torch.manual_seed (default 0)")
    args = parser.parse_args(argv)
    if args.command == "make" and args.out is None:
        parser.error("make needs --out DIR (tests/data's files are the evidence: regenerate them elsewhere)")
    try:
        official = import_official(args.official)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "make":
        cases, transform = make(official, args.seed)
        args.out.mkdir(parents=True, exist_ok=True)
        torch.save(cases, args.out / "a2k_cases.pt")
        torch.save(transform, args.out / "transform_case.pt")
        print(f"wrote {args.out / 'a2k_cases.pt'} and {args.out / 'transform_case.pt'}")
        return 0
    rows = errors(official, torch.load(DATA / "a2k_cases.pt"), torch.load(DATA / "transform_case.pt"))
    for label, error in rows:
        print(f"{label}: {error:.2e}")
    worst = max(e for _, e in rows)
    print(f"largest relative difference {worst:.2e} (tolerance {TOLERANCE:g})")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
