"""Train StyA2K (the recipe of Zhu et al., "All-to-key Attention for Arbitrary Style Transfer", ICCV
2023, as in the official code, github.com/LearningHx/StyA2K) or SANet (Park & Lee, CVPR 2019) from scratch,
or fine-tune either from a warm start (--warm-start):

    python -m model.train --method stya2k|sanet --contents DIR --styles DIR --out DIR --steps N
                          [--warm-start [--bank 256]] [--batch B] [--lr LR] [--decay-every K] [--crop 256] [--load-size 512]
                          [--save-every 1000] [--sample-every 500] [--workers 0] [--device cuda|cpu]
                          [--seed 0] [--weights-dir DIR] [--half] [--resume | --init DIR] [--time-limit SECONDS]

Data: every image under --contents and --styles (recursive) is resized (aspect kept) so that its
shorter side is a random size in [crop, load-size], randomly cropped to crop x crop and flipped
left-right at random; each style crop also gets a moderate random colour change (brightness,
contrast and saturation factors in [0.8, 1.2], hue shift within +-0.05 turn). Unreadable files are
skipped (the count is printed once). Pairs are drawn by shuffling each folder once per pass over
it; every random choice is a function of (seed, sample number), so a resumed run sees exactly the
batches it would have seen. `python -m model.dataset` assembles such folders (see there).

Recipes (--batch and --lr default to them):
    stya2k  Adam lr 2e-4, batch 8; L = 10 L_global + 1.25 L_A2K (the paper's losses and weights). The lr is
            multiplied by 0.3 every --decay-every steps after the first two such periods; the
            default --decay-every is steps / 5, so a run of 5 epochs (steps = 5 x images / batch)
            is the paper's "2 epochs at full lr, then 3 more at x0.3 each". Trainable a2k,
            transform and decoder, convolutions initialised N(0, 0.02), biases 0.
    sanet   Adam lr 1e-4 / (1 + 5e-5 step), batch 5; L = content + 3 style + 50 L_id1 + L_id2.
    --warm-start (either method)  `model.warm_start`'s initialisation (AdaIN decoder, attention as
            training-free attention); Adam lr 1e-5 constant (at 1e-4 the second step tripled the
            loss), batch 4; L = content + 3 style, the evaluation's losses (`model.metrics`), on a
            `CropBank` of --bank content and style crops encoded once.

Writes to --out: checkpoint.pt (every --save-every steps and at the end; --resume continues from it;
--init DIR instead starts the trained parts from DIR's files in the official layout, e.g. an earlier
run's OUT/weights, with a fresh optimizer and schedule), losses.csv (step, lr, each unweighted loss
term, the weighted total, the step's compute seconds) and its plot loss_curve.png (at every
checkpoint), samples/step_NNNNNN.png (rows of content |
style | output) and, at the end, the weights in the official layout under weights/ (readable by
`model.methods.load_method(method, weights_dir=OUT/weights)` and by the official code; --half stores
them as float16). Mixed precision (float16 autocast with a gradient scaler) on CUDA, float32 on the
CPU. The VGG encoder is frozen.
"""
import argparse
import csv
import functools
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import functional as TF
from torchvision.utils import save_image
from tqdm import tqdm

from .a2k import REGION_SIZE, parameter_free
from .baselines import SANetNet
from .crop_bank import CropBank
from .files import IMAGE_SUFFIXES
from .function import mean_std, mvn, shallow_keys
from .images import ImageError, open_image
from .loss_curve import plot_losses
from .methods import default_device, device_argument
from .metrics import content_loss
from .precision import autocast
from .stya2k import StyA2K
from .warm_start import warm_start
from .weights import OFFICIAL, VGG, WeightsError, load_into

RECIPES = {"stya2k": {"lr": 2e-4, "batch": 8}, "sanet": {"lr": 1e-4, "batch": 5}}
WEIGHTS = {"stya2k": {"global": 10.0, "a2k": 1.25}, "sanet": {"content": 1.0, "style": 3.0, "id1": 50.0, "id2": 1.0}}
WARM = {"lr": 1e-5, "batch": 4, "weights": {"content": 1.0, "style": 3.0}}
BANK_LAYERS = {"stya2k": (2, 3, 4), "sanet": (3, 4)}  # the VGG layers (0-based) each network's transfer reads
SANET_LR_DECAY = 5e-5
STYA2K_LR_FACTOR = 0.3
SAMPLE_PAIRS = 4
COLOUR_JITTER = 0.2  # style crops: brightness, contrast and saturation factors in [1 - x, 1 + x]
HUE_JITTER = 0.05  # style crops: hue shift in turns, in [-x, x]


# ---------------------------------------------------------------- data


def check_image(path):
    """None if `open_image` reads the file, else the reason it cannot."""
    try:
        open_image(path)
    except ImageError as exc:
        return str(exc)
    return None


def readable_images(folder):
    """The image files under `folder` (recursive, sorted) that `open_image` reads. Each file is
    decoded once here, on threads (PIL decodes without the GIL); the skipped ones are counted once."""
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    with ThreadPoolExecutor() as pool:
        errors = list(pool.map(check_image, paths))
    good = [p for p, error in zip(paths, errors) if error is None]
    bad = [error for error in errors if error is not None]
    if bad:
        print(f"{folder}: skipped {len(bad)} of {len(paths)} image files that cannot be read, e.g. {bad[0]}")
    if not good:
        raise SystemExit(f"{folder} holds no readable image")
    return good


@functools.lru_cache(maxsize=4)
def permutation(seed, stream, epoch, n):
    """The order of the n files of `stream` (0 contents, 1 styles) in pass `epoch` over them."""
    return np.random.default_rng([seed, stream, epoch]).permutation(n)


def load_square(path, size):
    """RGB PIL image resized (bilinear) to size x size."""
    return open_image(path).resize((size, size), Image.BILINEAR)


def load_shorter_side(path, size):
    """RGB PIL image resized (bilinear, aspect kept) so that its shorter side is `size` pixels."""
    img = open_image(path)
    scale = size / min(img.size)
    return img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))), Image.BILINEAR)


def to_chw(img):
    """RGB PIL image -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)


def change_colour(x, rng):
    """(3, H, W) in [0, 1] -> the same with random brightness, contrast, saturation and hue changes
    (ranges COLOUR_JITTER, HUE_JITTER), applied in that order; stays in [0, 1]."""
    brightness, contrast, saturation = rng.uniform(1 - COLOUR_JITTER, 1 + COLOUR_JITTER, size=3)
    x = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(x, brightness), contrast), saturation)
    return TF.adjust_hue(x, rng.uniform(-HUE_JITTER, HUE_JITTER))


class PairDataset(Dataset):
    """Item k (the k-th sample of the run) -> (content, style), each (3, crop, crop) in [0, 1].

    Each folder is reshuffled on every pass over it; scales, crops, flips and colour changes come
    from a generator seeded by (seed, k), so items do not depend on the worker or on earlier items."""

    def __init__(self, contents, styles, load_size, crop, seed):
        self.lists = (contents, styles)
        self.load_size, self.crop, self.seed = load_size, crop, seed

    def __getitem__(self, k):
        rng = np.random.default_rng([self.seed, 2, k])
        out = []
        for stream, paths in enumerate(self.lists):
            epoch, pos = divmod(k, len(paths))
            size = int(rng.integers(self.crop, self.load_size + 1))
            img = load_shorter_side(paths[permutation(self.seed, stream, epoch, len(paths))[pos]], size)
            x = int(rng.integers(0, img.width - self.crop + 1))
            y = int(rng.integers(0, img.height - self.crop + 1))
            img = img.crop((x, y, x + self.crop, y + self.crop))
            if rng.random() < 0.5:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            out.append(to_chw(img))
        return out[0], change_colour(out[1], rng)


# ---------------------------------------------------------------- losses


def stat_loss(a_feats, b_feats):
    """sum over layers of MSE(mean(a), mean(b)) + MSE(std(a), std(b)) (per-channel statistics)."""
    loss = 0.0
    for a, b in zip(a_feats, b_feats):
        (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
        loss = loss + F.mse_loss(ma, mb) + F.mse_loss(sa, sb)
    return loss


def a2k0(query_key, style_key, style_value, region_size):
    """Parameter-free A2K as the L_A2K target (A2K0 of the paper): DA + PA without the 1/sqrt(d) scale.
    query_key (B, Ck, H, W), style_key (B, Ck, Hs, Ws), style_value (B, C, Hs, Ws) -> (B, C, H, W)."""
    da, pa = parameter_free(query_key, style_key, style_value, region_size)
    return da + pa


def a2k_loss(o, c, s):
    """L_A2K = sum over relu2_1..relu5_1 of MSE(O_i, A2K0_i(C, S) + C_i); lists of 5 float32 features."""
    loss = 0.0
    for i in range(1, 5):
        with torch.no_grad():
            target = a2k0(shallow_keys(c, i), shallow_keys(s, i), s[i], REGION_SIZE[i + 1]) + c[i]
        loss = loss + F.mse_loss(o[i], target)
    return loss


def stylise(net, c, s, like):
    """Decoder output for content features c and style features s, cropped to the size of `like`."""
    return net.decode(*net.transfer(c, s))[..., : like.shape[-2], : like.shape[-1]]


def floats(feats):
    return [f.float() for f in feats]


def stya2k_losses(net, content, style):
    """Unweighted loss terms {"global", "a2k"} for (B, 3, H, W) batches in [0, 1]."""
    with autocast(content.device):
        c, s = net.encoder(content), net.encoder(style)
        o = net.encoder(stylise(net, c, s, content))
    c, s, o = floats(c), floats(s), floats(o)
    return {"global": stat_loss(o[:4], s[:4]), "a2k": a2k_loss(o, c, s)}


def sanet_losses(net, content, style):
    """Unweighted loss terms {"content", "style", "id1", "id2"} for (B, 3, H, W) batches in [0, 1]."""
    with autocast(content.device):
        c, s = net.encoder(content), net.encoder(style)
        out, icc, iss = stylise(net, c, s, content), stylise(net, c, c, content), stylise(net, s, s, style)
        o, fcc, fss = net.encoder(out), net.encoder(icc), net.encoder(iss)
    c, s, o, fcc, fss = floats(c), floats(s), floats(o), floats(fcc), floats(fss)
    return {
        "content": F.mse_loss(mvn(o[3]), mvn(c[3])) + F.mse_loss(mvn(o[4]), mvn(c[4])),
        "style": stat_loss(o, s),
        "id1": F.mse_loss(icc.float(), content) + F.mse_loss(iss.float(), style),
        "id2": sum(F.mse_loss(a, b) for a, b in zip(fcc + fss, c + s)),
    }


LOSSES = {"stya2k": stya2k_losses, "sanet": sanet_losses}


def warm_losses(net, c, s, style_stats, crop):
    """Unweighted {"content", "style"}, the evaluation's losses (model.metrics), from banked features:
    c, s as `CropBank.batch` gives them, the output decoded at crop x crop and encoded here."""
    with autocast(c[3].device):
        o = floats(net.encoder(net.decode(*net.transfer(c, s))[..., :crop, :crop]))
    style = sum(F.mse_loss(m, sm) + F.mse_loss(sd, ssd) for (m, sd), (sm, ssd) in zip(map(mean_std, o), style_stats))
    return {"content": content_loss(o, c), "style": style}


# ---------------------------------------------------------------- training state


def build(method, weights_dir, warm):
    """The network with the shipped VGG encoder. warm: `model.warm_start` (decoder from the AdaIN
    decoder, attention as training-free attention). Otherwise StyA2K's trainable convolutions are
    re-initialised N(0, 0.02) (SANet keeps PyTorch's default init). StyA2K's A2K layers run in the
    reference formulation (the same numbers in fewer, larger ops: faster than the lean one on
    training crops, measured on the CPU at 64 px)."""
    net = StyA2K(lean=False) if method == "stya2k" else SANetNet()
    load_into(net.get_submodule("encoder.layers"), VGG, weights_dir, allow_extra=True)
    if warm:
        warm_start(net, method, weights_dir)
    elif method == "stya2k":
        for module in trainable(net, method).values():
            for m in module.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.normal_(m.weight, 0.0, 0.02)
                    nn.init.zeros_(m.bias)
    return net


def trainable(net, method):
    """{submodule name: module} of what is trained (the encoder is not)."""
    return {attr: net.get_submodule(attr) for attr in OFFICIAL[method]}


def learning_rate(args, step):
    """The lr of the step that follows `step` completed steps (constant for warm starts)."""
    if args.warm_start:
        return args.lr
    if args.method == "sanet":
        return args.lr / (1 + SANET_LR_DECAY * step)
    return args.lr * STYA2K_LR_FACTOR ** max(0, step // args.decay_every - 1)


def rng_states():
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }


def set_rng_states(states):
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])


def save_checkpoint(path, config, step, modules, optimizer, scaler):
    """Written to a temporary file first, so an interrupted save leaves the previous checkpoint."""
    state = {
        "config": config,
        "step": step,
        "model": {attr: m.state_dict() for attr, m in modules.items()},
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": rng_states(),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def save_weights(modules, method, folder, half):
    """Each trained submodule's state dict at its official path under `folder`, float16 if `half`."""
    for attr, wf in OFFICIAL[method].items():
        state = {k: v.detach().cpu() for k, v in modules[attr].state_dict().items()}
        if half:
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        path = Path(folder) / wf.path
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)


def open_log(path, columns, start):
    """losses.csv opened for appending, rows after step `start` dropped (written after the checkpoint)."""
    rows = []
    if start > 0 and path.exists():
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f)][1:]
        rows = [r for r in rows if int(r[0]) <= start]
    f = open(path, "w", newline="")
    writer = csv.writer(f)
    writer.writerows([columns] + rows)
    f.flush()
    return f, writer


def sample_batch(contents, styles, size, device):
    """Fixed (content, style) pairs for the sample grids: the first files, resized to size x size."""
    n = min(SAMPLE_PAIRS, max(len(contents), len(styles)))
    c = torch.stack([to_chw(load_square(contents[i % len(contents)], size)) for i in range(n)])
    s = torch.stack([to_chw(load_square(styles[i % len(styles)], size)) for i in range(n)])
    return c.to(device), s.to(device)


@torch.no_grad()
def save_samples(net, content, style, path):
    """Grid PNG: one row per pair, content | style | output (clamped to [0, 1])."""
    with autocast(content.device):
        out = net(content, style).float().clamp(0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(torch.stack((content, style, out), 1).flatten(0, 1), path, nrow=3, padding=2)


# ---------------------------------------------------------------- batches


def streamed_batches(args, net, dataset, step):
    """Yields, for each step from `step` on, a function computing its recipe losses on freshly loaded crops."""
    loader = DataLoader(
        dataset,
        batch_size=args.batch,
        sampler=range(step * args.batch, args.steps * args.batch),
        num_workers=args.workers,
        pin_memory=args.device.type == "cuda",
    )
    for content, style in loader:
        yield functools.partial(
            LOSSES[args.method], net, content.to(args.device, non_blocking=True), style.to(args.device, non_blocking=True)
        )


def warm_batches(args, net, dataset, step):
    """Yields, for each step from `step` on, a function computing `warm_losses` on a batch of the crop bank
    (encoded here first; the time it takes is printed)."""
    started = time.monotonic()
    bank = CropBank(dataset, args.bank, BANK_LAYERS[args.method], net.encoder, args.device, args.workers)
    print(f"crop bank: {args.bank} contents and {args.bank} styles at {args.crop} px, {bank.nbytes() / 2**30:.2f} GiB, "
          f"encoded in {time.monotonic() - started:.0f} s")
    for t in range(step, args.steps):
        yield functools.partial(warm_losses, net, *bank.batch(args.seed, t, args.batch, args.device), args.crop)


# ---------------------------------------------------------------- command line


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m model.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--method", choices=list(RECIPES), required=True)
    parser.add_argument("--contents", type=Path, required=True, help="folder of content images")
    parser.add_argument("--styles", type=Path, required=True, help="folder of style images")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, required=True, help="optimizer steps in the whole run")
    parser.add_argument("--warm-start", action="store_true",
                        help="start from the AdaIN decoder and training-free attention (model.warm_start) and "
                        "train on a bank of encoded crops with the evaluation's losses")
    parser.add_argument("--bank", type=int, default=256, help="--warm-start: crops per folder encoded once (default 256)")
    parser.add_argument("--batch", type=int, help="default: the recipe's (stya2k 8, sanet 5, --warm-start 4)")
    parser.add_argument("--lr", type=float, help="initial lr; default: the recipe's (stya2k 2e-4, sanet 1e-4, "
                        "--warm-start 1e-5)")
    parser.add_argument("--decay-every", type=int, help="stya2k: steps per lr period (one epoch); default steps / 5")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--load-size", type=int, default=512)
    parser.add_argument("--save-every", type=int, default=1000)
    parser.add_argument("--sample-every", type=int, default=500)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--device", type=device_argument, default=default_device())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights-dir", type=Path, help="where vgg_normalised.pth is (default: the packaged copy)")
    parser.add_argument("--half", action="store_true", help="save the final weights as float16")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    start.add_argument("--init", type=Path, help="start the trained parts from this weights folder (official layout)")
    parser.add_argument("--time-limit", type=float, help="stop after this many seconds of training, then save")
    args = parser.parse_args(argv)
    recipe = WARM if args.warm_start else RECIPES[args.method]
    args.batch = recipe["batch"] if args.batch is None else args.batch
    args.lr = recipe["lr"] if args.lr is None else args.lr
    if args.method == "stya2k" and args.decay_every is None:
        args.decay_every = max(1, args.steps // 5)
    if args.method == "sanet" or args.warm_start:
        args.decay_every = None
    if args.crop > args.load_size:
        parser.error(f"--crop {args.crop} is larger than --load-size {args.load_size}")
    return args


def main(argv=None):
    args = parse_args(argv)
    device = args.device
    keys = ("method", "warm_start", "bank", "batch", "lr", "decay_every", "crop", "load_size", "seed")
    config = {k: getattr(args, k) for k in keys}
    ckpt_path = args.out / "checkpoint.pt"
    if not args.resume and ckpt_path.exists():
        print(f"{ckpt_path} exists: pass --resume to continue it, or choose another --out", file=sys.stderr)
        return 2
    if args.resume and not ckpt_path.exists():
        print(f"--resume: there is no {ckpt_path}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    try:
        net = build(args.method, args.weights_dir, args.warm_start).to(device)
    except WeightsError as exc:
        print(exc, file=sys.stderr)
        return 1
    modules = trainable(net, args.method)
    try:
        for attr, wf in OFFICIAL[args.method].items() if args.init else ():
            load_into(modules[attr], wf, args.init)
    except WeightsError as exc:
        print(exc, file=sys.stderr)
        return 1
    optimizer = torch.optim.Adam([p for m in modules.values() for p in m.parameters()], lr=args.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    step = 0
    if args.resume:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)  # our own file: holds RNG tuples
        changed = {k: (v, config[k]) for k, v in ckpt["config"].items() if config[k] != v}
        if changed:
            print(f"--resume: the checkpoint was made with other settings (saved, given): {changed}", file=sys.stderr)
            return 2
        for attr, state in ckpt["model"].items():
            modules[attr].load_state_dict(state)
        optimizer.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        set_rng_states(ckpt["rng"])
        step = ckpt["step"]

    contents, styles = readable_images(args.contents), readable_images(args.styles)
    dataset = PairDataset(contents, styles, args.load_size, args.crop, args.seed)
    batches = warm_batches(args, net, dataset, step) if args.warm_start else streamed_batches(args, net, dataset, step)
    sample_content, sample_style = sample_batch(contents, styles, args.crop, device)
    weights = WARM["weights"] if args.warm_start else WEIGHTS[args.method]
    terms = list(weights)
    log_path = args.out / "losses.csv"
    log_file, log = open_log(log_path, ["step", "lr", *terms, "total", "seconds"], step)
    bar = tqdm(total=args.steps, initial=step, desc=f"train {args.method}", dynamic_ncols=True)
    started = time.monotonic()
    for compute_losses in batches:
        elapsed = time.monotonic() - started
        if args.time_limit and elapsed > args.time_limit:
            break
        lr = learning_rate(args, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        start = time.perf_counter()
        losses = compute_losses()
        total = sum(weights[k] * v for k, v in losses.items())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(optimizer)
        scaler.update()
        values = {k: v.item() for k, v in losses.items()}
        values["total"] = total.item()
        seconds = time.perf_counter() - start
        step += 1
        log.writerow([step, f"{lr:.6g}", *(f"{values[k]:.6g}" for k in terms), f"{values['total']:.6g}", f"{seconds:.3f}"])
        log_file.flush()
        postfix = {k: f"{v:.3g}" for k, v in values.items()}
        if args.time_limit:
            postfix["limit in"] = tqdm.format_interval(max(0, args.time_limit - elapsed))
        bar.set_postfix(postfix)
        bar.update()
        if step % args.save_every == 0 and step < args.steps:
            save_checkpoint(ckpt_path, config, step, modules, optimizer, scaler)
            plot_losses(log_path, args.out / "loss_curve.png")
        if step % args.sample_every == 0 or step == args.steps:
            save_samples(net, sample_content, sample_style, args.out / "samples" / f"step_{step:06d}.png")
    bar.close()
    log_file.close()
    save_checkpoint(ckpt_path, config, step, modules, optimizer, scaler)
    plot_losses(log_path, args.out / "loss_curve.png")
    save_weights(modules, args.method, args.out / "weights", args.half)
    print(f"{step} steps; weights in {args.out / 'weights'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
