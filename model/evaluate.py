"""Quantitative comparison of methods on every content x style pair (the paper's metrics):

    python -m model.evaluate --contents DIR --styles DIR --methods a2k_free,all2all_free[,...] --out DIR
                             [--size 512] [--weights-dir DIR] [--device cpu|cuda] [--seed 0]

Writes to --out: metrics.csv (one row per method), metrics_per_pair.csv, metrics.md (the per-method
table in Markdown with the definitions used), every output at full size in outputs/ (named
CONTENT__STYLE__METHOD.png, as `model.stylize` names them) and grid.png (rows = pairs; columns =
content, style, then each method; cells of 384 px, captions in full). Every content and style is
resized once, so every method gets the same inputs."""
import argparse
import sys
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from .contact_sheet import sheet_from_outputs
from .files import image_files, output_name
from .images import ImageError, open_image, resize_long_side
from .methods import METHODS, available_methods, default_device, device_argument, load_method
from .metrics import COLUMNS, DEFINITIONS, load_encoder, measure
from .pipeline import to_image, to_tensor
from .precision import autocast
from .profiling import Cost
from .weights import WeightsError, missing_message


def check_methods(names, weights_dir=None):
    """Lines saying which names are unknown and which weight files are missing ([] if none)."""
    status = available_methods(weights_dir)
    problems = []
    for name in names:
        if name not in status:
            problems.append(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
        else:
            problems += [f"{name}: {missing_message(wf, weights_dir)}" for wf in status[name].missing]
    return problems


def read_images(paths, size):
    """{path: RGB PIL image with long side `size`}; unreadable files are skipped with a message."""
    images = {}
    for path in paths:
        try:
            images[path] = resize_long_side(open_image(path), size)
        except ImageError as exc:
            print(f"skipping {path}: {exc}", file=sys.stderr)
    return images


def memory_column(device):
    return "peak_cuda_mib" if device.type == "cuda" else "peak_rss_mib"


@torch.inference_mode()
def run_timed(net, content, style, seed):
    """Seeded forward -> (raw output (1, 3, H, W), seconds, peak memory in MiB; see model.profiling.Cost)."""
    torch.manual_seed(seed)
    with Cost(content.device) as cost, autocast(content.device):
        out = net(content, style)
    return out.float(), cost.seconds, cost.mib


def evaluate(contents, styles, nets, encoder, outputs, seed=0):
    """contents, styles: {path: PIL image}; nets: {method: network}, moved in turn to the encoder's device.
    Each output is saved in the folder `outputs` as `output_name(content, style, method)`.
    Returns one dict per method and pair."""
    device = next(encoder.parameters()).device
    pairs = [(c, s) for c in contents for s in styles]
    rows = []
    bar = tqdm(total=len(pairs) * len(nets), desc="evaluating", unit="image")
    for method, net in nets.items():
        bar.set_postfix_str(method)
        net.to(device)
        first_c, first_s = pairs[0]
        run_timed(net, to_tensor(contents[first_c], device), to_tensor(styles[first_s], device), seed)  # warm-up
        for c, s in pairs:
            content, style = to_tensor(contents[c], device), to_tensor(styles[s], device)
            out, seconds, peak = run_timed(net, content, style, seed)
            out = out.clamp(0, 1)
            [scores] = measure(content, style, {method: out}, encoder)
            rows.append({"content": c.name, "style": s.name, **scores, "time_s": seconds, memory_column(device): peak})
            to_image(out).save(outputs / output_name(c, s, method))
            bar.update()
        net.to("cpu")
    bar.close()
    return rows


def summarize(per_pair, memory):
    """Per-pair rows -> one row per method: mean losses and SSIM, median time, max of `memory`."""
    groups = per_pair.groupby("method", sort=False)
    summary = groups[list(COLUMNS)].mean()
    summary["median_time_s"] = groups["time_s"].median()
    summary[memory] = groups[memory].max()
    summary.insert(0, "pairs", groups.size())
    summary = summary.reset_index()
    summary.insert(1, "label", [METHODS[m].label for m in summary["method"]])
    return summary


def markdown(summary, notes):
    """Notes (lines of text), then the table; floats with 4 significant digits."""
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in summary.itertuples(index=False)]
    lines = [*notes, "", "| " + " | ".join(summary.columns) + " |", "|" + "---|" * len(summary.columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m model.evaluate", description="Compare methods with the paper's metrics.")
    parser.add_argument("--contents", required=True, help="a folder of content images (or one image)")
    parser.add_argument("--styles", required=True, help="a folder of style images (or one image)")
    parser.add_argument("--methods", required=True, help=f"comma-separated, from: {', '.join(METHODS)}")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--size", type=int, default=512, help="long side in pixels (default 512)")
    parser.add_argument("--weights-dir", help="folder with official checkpoints (see python -m model.check_weights)")
    parser.add_argument("--device", type=device_argument, help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    parser.add_argument("--seed", type=int, default=0, help="torch.manual_seed before every run (default 0)")
    args = parser.parse_args(argv)
    methods = list(dict.fromkeys(m.strip() for m in args.methods.split(",") if m.strip()))
    problems = check_methods(methods, args.weights_dir)
    if problems:
        print("error: " + "\n  ".join(problems), file=sys.stderr)
        return 2
    device = args.device or default_device()
    try:
        content_paths, style_paths = image_files(args.contents), image_files(args.styles)
        nets = {m: load_method(m, args.weights_dir, "cpu") for m in methods}
        encoder = load_encoder(args.weights_dir, device)
    except (FileNotFoundError, WeightsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    contents, styles = read_images(content_paths, args.size), read_images(style_paths, args.size)
    if not contents or not styles:
        print("error: no readable content image or no readable style image", file=sys.stderr)
        return 2

    outputs = args.out / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    rows = evaluate(contents, styles, nets, encoder, outputs, args.seed)
    memory = memory_column(device)
    per_pair = pd.DataFrame(rows)
    summary = summarize(per_pair, memory)
    memory_note = (
        "peak_cuda_mib: torch.cuda.max_memory_allocated during a forward, max over pairs "
        "(counts the method's and the metric encoder's weights)"
        if device.type == "cuda"
        else "peak_rss_mib: the process's peak resident memory during a forward (reset before each "
        "through /proc/self/clear_refs), max over pairs; it includes the loaded weights"
    )
    notes = [
        "# Quantitative comparison",
        "",
        f"{len(contents)} contents x {len(styles)} styles, long side {args.size} px, device {device}, seed {args.seed}.",
        "",
        f"Definitions: {DEFINITIONS} (Gaussian window 11, sigma 1.5, no padding).",
        "Losses and SSIM are means over pairs (lower losses: closer to the content / the style's statistics; "
        "SSIM 1: the content's structure kept). median_time_s: seconds per image after one warm-up run. "
        f"{memory_note}.",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    summary.to_csv(args.out / "metrics.csv", index=False)
    per_pair.to_csv(args.out / "metrics_per_pair.csv", index=False)
    table = markdown(summary, notes)
    (args.out / "metrics.md").write_text(table)
    labels = {m: METHODS[m].label for m in methods}
    sheet_from_outputs(list(contents), list(styles), methods, outputs, labels).save(args.out / "grid.png")
    print(table)
    print(f"results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
