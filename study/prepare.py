"""Render a study's stimuli with the model's command line and register them (idempotent, resumable):

    python -m study.prepare --contents DIR --styles DIR --methods a2k_free,all2all_free[,...]
                            --study NAME --consent FILE [--n-trials 20] [--catch-rate 0.1]
                            [--db PATH_OR_URL] [--size 512] [--images-dir DIR]
                            [--device cpu|cuda] [--weights-dir DIR] [--completion-code CODE]
                            [--title TEXT] [--no-consent-code CODE] [--require-prolific]
                            [--max-participants N] [--url https://HOST]
                            [--question overall|content|style|KEY=WORDING ...] [--no-references]
                            [--practice-trials 1] [--attention-rate 0.1] [--min-image-px 256]
                            [--screen-out-code CODE] [--debrief FILE] [--feedback-question TEXT]

Runs `python -m model.stylize` in a subprocess (skipped when every output exists), then registers
each output as browsers get it (study.picture_files: CONTENT__STYLE__METHOD.webp, made from the
model's CONTENT__STYLE__METHOD.png), plus one catch image per content x style (CONTENT__STYLE__catch.webp:
a rendered output turned upside down, see CATCH_RECIPE), and keeps each content photo and style
painting as a reference picture (images_dir/references/). The PNG renders may be deleted afterwards.
--db defaults to the app's database: env DATABASE_URL, else DATA_DIR/arena.db (DATA_DIR: env, else data/);
--images-dir to runs/study/NAME. Prints the participants' link (plain and Prolific's template), the
completion code, the trials per participant and an estimate of the minutes each participant needs.
"""
import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

from PIL import Image

from .picture_files import REFERENCE_QUALITY, SUFFIX, reference_image, reference_path, save
from .power import EFFECT, Design, recommended_participants
from .power import summary as power_summary
from .questions import BUILT_IN, QuestionError, parse
from .store import CATCH, MIN_IMAGE_PX, Store, StudyError, default_url

REPO = Path(__file__).resolve().parents[1]
# model.files' contract, kept here because study/ never imports model/ (tests/test_contracts.py pins it)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
# Upside down: a person sees it at once (on contents with a clear top), and unlike blur, inversion or a
# replaced region it keeps every statistic of the picture (histogram, sharpness, texture; its
# compressed size moves by under 3%), so no per-image measure tells it from a real output. The
# source method alternates over the cells, so catch images are spread over the methods like the
# real ones.
CATCH_RECIPE = "a rendered output turned upside down (rotated 180 degrees), encoded like the outputs"
SECONDS_PER_TRIAL = 8  # a considered look at two pictures and a click
SECONDS_AROUND = 90  # consent, instructions and the completion code
PROLIFIC_PARAMS = "&PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
FEEDBACK_QUESTION = "Anything you would like to tell us about this study? (optional)"


def summary(url, settings):
    """What the researcher needs next (settings: Store.study): the links, the codes, the trials and the
    time per participant."""
    link = f"{url.rstrip('/')}/study?study={settings['name']}"
    n_trials = settings["n_trials"]
    n_catch = round(n_trials * settings["catch_rate"])
    n_attention = round(n_trials * settings["attention_rate"])
    practice = settings["practice_trials"]
    minutes = max(1, round(((n_trials + practice) * SECONDS_PER_TRIAL + SECONDS_AROUND) / 60))
    codes = [f"completion code: {settings['completion_code']}"]
    for label, key in (("no-consent code", "no_consent_code"), ("screen-out code", "screen_out_code")):
        codes.append(f"{label}: {settings[key] or 'none (participants are told to return the study on Prolific)'}")
    return (f"participant link: {link}\n"
            f"Prolific study URL: {link}{PROLIFIC_PARAMS}\n" + "\n".join(codes) + "\n"
            f"trials per participant: {practice} practice, then {n_trials} ({n_trials - n_catch - n_attention} "
            f"comparisons, {n_catch} catch, {n_attention} attention checks)\n"
            f"questions: {'; '.join(w for _, w in settings['questions'])}\n"
            f"estimated time per participant: about {minutes} min")


def image_files(path):
    """A file -> [it]; a folder -> its image files, sorted (as model.stylize lists them)."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise StudyError(f"{path} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return found
    if path.is_file():
        return [path]
    raise StudyError(f"{path} is neither an image file nor a folder")


def output_name(content, style, method):
    """The file model.stylize writes for this content, style and method."""
    return f"{Path(content).stem}__{Path(style).stem}__{method}.png"


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def stimulus_name(content, style, method):
    """The file a participant's browser gets for this content, style and method (see study.picture_files)."""
    return Path(output_name(content, style, method)).with_suffix(SUFFIX).name


def make_catch_image(source, target):
    """Write a visibly broken copy of the rendered image `source` to `target` (see CATCH_RECIPE)."""
    with Image.open(source) as im:
        save(im.convert("RGB").transpose(Image.Transpose.ROTATE_180), target)


def render(contents, styles, methods, size, images_dir, device=None, weights_dir=None):
    """Run the model's batch command line (it skips outputs that exist and shows a progress bar)."""
    command = [sys.executable, "-m", "model.stylize", "--content", str(Path(contents).resolve()),
               "--style", str(Path(styles).resolve()), "--size", str(size), "--out", str(Path(images_dir).resolve())]
    for method in methods:
        command += ["--method", method]
    if device:
        command += ["--device", device]
    if weights_dir:
        command += ["--weights-dir", str(Path(weights_dir).resolve())]
    code = subprocess.run(command, cwd=REPO).returncode
    if code != 0:
        raise StudyError(f"python -m model.stylize failed (exit {code}); its message is above")


def register(store, study, contents, styles, methods, images_dir, size):
    """Register every output in images_dir (its served file, made from the model's PNG when missing),
    a catch image per content x style (made when missing, from the PNG of the cell's first, second, ...
    method in turn) and keep a reference picture of every content and style. contents, styles: lists
    of image files. Returns (number of new stimuli, names of missing outputs)."""
    images_dir = Path(images_dir)
    before = len(store.stimuli(study))
    hashes = {p: sha256_file(p) for p in {*contents, *styles}}
    for path, sha in hashes.items():
        if not reference_path(images_dir, sha).is_file():
            save(reference_image(path), reference_path(images_dir, sha), REFERENCE_QUALITY)
    missing = []
    for index, (content, style) in enumerate((c, s) for c in contents for s in styles):
        cell = (content.name, hashes[content], style.name, hashes[style])
        rendered = []
        for method in methods:
            png, served = images_dir / output_name(content, style, method), images_dir / stimulus_name(content, style, method)
            if not served.is_file():
                if not png.is_file():
                    missing.append(png.name)
                    continue
                with Image.open(png) as im:
                    save(im, served)
            store.add_stimulus(study, *cell, method, sha256_file(served), served.name, {"size": size})
            rendered.append((png, served))
        if rendered:
            source, source_served = rendered[index % len(rendered)]
            catch = images_dir / stimulus_name(content, style, CATCH)
            if not catch.is_file():
                if not source.is_file():
                    raise StudyError(f"cannot make {catch.name}: the render it is made from, {source.name}, is "
                                     "missing; put it back (python -m model.stylize renders it) and run again")
                make_catch_image(source, catch)
            store.add_stimulus(study, *cell, CATCH, sha256_file(catch), catch.name,
                               {"size": size, "made_from": source_served.name, "recipe": CATCH_RECIPE})
    return len(store.stimuli(study)) - before, missing


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m study.prepare", description="Render and register study stimuli.")
    parser.add_argument("--contents", required=True, help="folder (or file) of content photos")
    parser.add_argument("--styles", required=True, help="folder (or file) of style images")
    parser.add_argument("--methods", required=True, help="comma-separated, at least two, e.g. a2k_free,all2all_free")
    parser.add_argument("--study", required=True, help="the study's name (letters, digits, _ - .)")
    parser.add_argument("--consent", required=True, type=Path, help="text file participants must agree to")
    parser.add_argument("--n-trials", type=int, default=20, help="trials per participant, catch trials included")
    parser.add_argument("--catch-rate", type=float, default=0.1, help="fraction of catch trials (default 0.1)")
    parser.add_argument("--completion-code", help="code shown at the end, e.g. Prolific's (default: random)")
    parser.add_argument("--db", default=default_url(), help="SQLAlchemy URL or SQLite file (default: %(default)s)")
    parser.add_argument("--size", type=int, default=512, help="long side in pixels (default 512)")
    parser.add_argument("--images-dir", type=Path, help="where the images go (default: runs/study/NAME)")
    parser.add_argument("--device", help="for the model: cpu, cuda, ... (default: cuda if present)")
    parser.add_argument("--weights-dir", help="for the model: folder with official checkpoints")
    parser.add_argument("--title", help="the participants' page title (default: a neutral one)")
    parser.add_argument("--no-consent-code", help="Prolific's code for participants who do not consent")
    parser.add_argument("--require-prolific", action="store_true", help="refuse links without a Prolific ID")
    parser.add_argument("--max-participants", type=int, help="enrol at most this many participants")
    parser.add_argument("--url", default="http://HOST:7860", help="the study server's address, for the printed links")
    parser.add_argument("--question", action="append", dest="questions",
                        help="a question each trial may ask (repeat for several, spread evenly): "
                             f"{', '.join(BUILT_IN)} or KEY=your wording (default: overall)")
    parser.add_argument("--no-references", action="store_true",
                        help="show only the two results, not the content photo and style painting beside them")
    parser.add_argument("--practice-trials", type=int, default=1, help="shown first, never analysed (default 1)")
    parser.add_argument("--attention-rate", type=float, default=0.1,
                        help="fraction of the trials whose question says which button to press (default 0.1)")
    parser.add_argument("--min-image-px", type=int, default=MIN_IMAGE_PX,
                        help=f"least CSS px width of each image on the participant's screen (default {MIN_IMAGE_PX}; 0: any)")
    parser.add_argument("--screen-out-code", help="Prolific's code for participants whose screen is too small")
    parser.add_argument("--debrief", type=Path, help="text file shown with the completion code")
    parser.add_argument("--feedback-question", default=FEEDBACK_QUESTION,
                        help="asked with the completion code, answered optionally ('' : none; default: %(default)r)")
    args = parser.parse_args(argv)
    methods = list(dict.fromkeys(m.strip() for m in args.methods.split(",") if m.strip()))
    images_dir = args.images_dir or Path("runs", "study", args.study)
    try:
        if len(methods) < 2:
            raise StudyError(f"--methods needs at least two methods, comma-separated (got {args.methods!r})")
        if CATCH in methods:
            raise StudyError(f"{CATCH!r} is reserved for catch images: leave it out of --methods")
        for label, path in (("consent", args.consent), ("debrief", args.debrief)):
            if path is not None and not path.is_file():
                raise StudyError(f"no {label} file at {path}: write the text in a file")
        questions = parse(args.questions or ["overall"])
        contents, styles = image_files(args.contents), image_files(args.styles)
        with Store(args.db) as store:
            store.create_study(args.study, args.consent.read_text(encoding="utf-8"), args.n_trials,
                               args.catch_rate, images_dir, args.completion_code, args.title, args.no_consent_code,
                               args.require_prolific, args.max_participants, questions=questions,
                               show_references=not args.no_references, practice_trials=args.practice_trials,
                               attention_rate=args.attention_rate, min_image_px=args.min_image_px,
                               screen_out_code=args.screen_out_code,
                               debrief=args.debrief.read_text(encoding="utf-8") if args.debrief else None,
                               feedback_question=args.feedback_question or None)
            images_dir.mkdir(parents=True, exist_ok=True)
            expected = [(c, s, m) for c in contents for s in styles for m in methods]
            todo = sum(not (images_dir / output_name(*x)).is_file() and not (images_dir / stimulus_name(*x)).is_file()
                       for x in expected)
            if todo:
                print(f"rendering {todo} of {len(expected)} images into {images_dir}")
                render(args.contents, args.styles, methods, args.size, images_dir, args.device, args.weights_dir)
            new, missing = register(store, args.study, contents, styles, methods, images_dir, args.size)
            total = len(store.stimuli(args.study))
            settings = store.study(args.study)
    except (StudyError, QuestionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if len(missing) == len(expected):
        print("error: no image was rendered; see the messages of model.stylize above", file=sys.stderr)
        return 2
    for name in missing:
        print(f"warning: {name} was not rendered (an unreadable input?); it is left out", file=sys.stderr)
    print(f"study {args.study}: {total} stimuli registered ({new} new, catch images included) in {images_dir}")
    design = Design.of_study(settings, len(methods))
    print(f"power: {power_summary(design, EFFECT, recommended_participants(design))} (spread and ties assumed; "
          f"after a pilot: python -m study.power --db DB --study {args.study})")
    print(summary(args.url, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
