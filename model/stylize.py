"""Stylise PIL images with any method, and the batch command line:

    python -m model.stylize --content FILE_OR_DIR --style FILE_OR_DIR --method NAME [--method NAME ...]
                            [--size 512] [--alpha 1.0] [--preserve-color] [--weights-dir DIR] [--grid] --out DIR

Outputs are named CONTENT__STYLE__METHOD.png; pairs whose output exists are skipped (resumable).
--grid also writes OUT/grid.png from the outputs, as `model.evaluate` does (a row per pair: content,
style, each method; cells of 384 px, captions in full)."""
import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from .contact_sheet import sheet_from_outputs
from .features import FeatureCache
from .files import image_files, output_name
from .images import MIN_SIDE, ImageError, open_image
from .methods import METHODS, device_argument, load_method
from .pipeline import STYLE_SIZE, stylize
from .weights import WeightsError


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m model.stylize", description="Stylise every content x style x method.")
    parser.add_argument("--content", required=True, help="an image or a folder of images")
    parser.add_argument("--style", required=True, help="an image or a folder of images")
    parser.add_argument("--method", action="append", required=True, choices=list(METHODS), help="repeat for several")
    parser.add_argument("--size", type=int, default=512, help="long side in pixels (default 512)")
    parser.add_argument("--style-size", type=int, default=STYLE_SIZE,
                        help=f"style long side in pixels, whatever --size is (default {STYLE_SIZE}; 0: same as --size)")
    parser.add_argument("--alpha", type=float, default=1.0, help="style strength in [0, 1]")
    parser.add_argument("--preserve-color", action="store_true", help="keep the content's colours")
    parser.add_argument("--weights-dir", help="folder with official checkpoints (see python -m model.check_weights)")
    parser.add_argument("--device", type=device_argument, help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    parser.add_argument("--grid", action="store_true", help="also write OUT/grid.png, a contact sheet of the outputs")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    if args.size < MIN_SIDE:
        parser.error(f"--size must be at least {MIN_SIDE} pixels, not {args.size}")
    if args.style_size and args.style_size < MIN_SIDE:
        parser.error(f"--style-size must be 0 (same as --size) or at least {MIN_SIDE} pixels, not {args.style_size}")
    if not 0 <= args.alpha <= 1:
        parser.error(f"--alpha must be in [0, 1], not {args.alpha}")
    try:
        contents, styles = image_files(args.content), image_files(args.style)
        nets = {m: load_method(m, args.weights_dir, args.device) for m in args.method}
    except (FileNotFoundError, WeightsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(c, s, m) for c in contents for s in styles for m in args.method]
    unreadable = {}  # path -> why

    def read(path):
        if path not in unreadable:
            try:
                return open_image(path)
            except ImageError as exc:
                unreadable[path] = exc
                tqdm.write(f"skipping {path}: {exc}")
        return None

    cache = FeatureCache()  # each content and style is encoded once for all methods (same VGG weights)
    done = skipped = failed = 0
    for content, style, method in tqdm(jobs, desc="stylising", unit="image"):
        target = args.out / output_name(content, style, method)
        if target.exists():
            skipped += 1
            continue
        content_img, style_img = read(content), read(style)
        if content_img is None or style_img is None:
            continue
        try:
            image = stylize(content_img, style_img, nets[method], args.size, args.alpha, args.preserve_color,
                              style_size=args.style_size or None, cache=cache)
        except ImageError as exc:  # readable, but unusable at this size (too elongated)
            tqdm.write(f"skipping {content.name} x {style.name}: {exc}")
            failed += 1
            continue
        partial = target.with_suffix(".part.png")
        image.save(partial)
        partial.replace(target)
        done += 1
    print(f"{done} written, {skipped} already there, {len(unreadable)} unreadable file(s) and {failed} unusable "
          f"pair(s) skipped; outputs in {args.out}")
    if args.grid:
        contents, styles = ([p for p in paths if p not in unreadable] for paths in (contents, styles))
        if contents and styles:
            labels = {m: METHODS[m].label for m in args.method}
            sheet_from_outputs(contents, styles, args.method, args.out, labels).save(args.out / "grid.png")
            print(f"grid in {args.out / 'grid.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
