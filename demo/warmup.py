"""At start, a background thread encodes the gallery paintings into the feature cache (a comparison
with one of them encodes only the photo) and stylises the example pairs with every method that can run,
at the default settings of the Battle and Compare tabs, so that a first visitor's click on an example
pair is answered from the result cache. It also logs what the operator may add (missing weight files)."""
import sys
import threading
import time

from .budget import Hold
from .gallery import EXAMPLES
from .upload import read_input, shrink

# (photo, painting) offered as example pairs in the Battle and Compare tabs
PAIRS = (("contents/photo_chelsea.jpg", "styles/gogh_cafe_terrace_night.jpg"),
         ("contents/animal_red_panda.jpg", "styles/hokusai_great_wave_off_kanagawa.jpg"),
         ("contents/place_eiffelTower.jpg", "styles/kandinsky_composition_viii.jpg"))
DEFAULTS = {"alpha": 1.0, "preserve_color": False}


def pair_paths():
    return [[str(EXAMPLES / c), str(EXAMPLES / s)] for c, s in PAIRS]


def missing_methods_text(arena):
    """For the operator's log: the methods that cannot run and the files each needs."""
    lines = [f"  {s.name} ({s.label}): " + "; ".join(f"{wf.path} ({wf.source})" for wf in s.missing)
             for s in arena.status.values() if not s.available]
    where = arena.settings.weights_dir or "a folder given with --weights-dir"
    return f"methods that need weight files in {where}:\n" + "\n".join(lines) if lines else ""


def precompute(arena):
    """Encode the gallery paintings, then stylise every example pair with every runnable method at the
    default size; returns (paintings encoded, seconds)."""
    start = time.perf_counter()
    paintings = arena.encode_gallery() if arena.runnable() else 0
    own = Hold()  # the server's own writes: charged to no visitor
    for content_path, style_path in pair_paths():
        content, style = (arena.images.put(shrink(read_input(p), arena.settings.size_cap), own)
                          for p in (content_path, style_path))
        for method in arena.runnable():
            arena.stylize(content, style, method, arena.settings.default_size, hold=own, **DEFAULTS)
    return paintings, time.perf_counter() - start


def start_warmup(arena):
    """Run `precompute` in a daemon thread; arena.warm is set when it is done (a line goes to the log)."""
    missing = missing_methods_text(arena)
    if missing:
        print(missing, file=sys.stderr, flush=True)

    def run():
        try:
            paintings, seconds = precompute(arena)
            print(f"warm-up: {paintings} gallery paintings encoded, {len(PAIRS)} example pairs x "
                  f"{len(arena.runnable())} methods ready in {seconds:.1f} s",
                  file=sys.stderr, flush=True)
        except Exception as exc:  # the app serves on without the precomputed results
            print(f"warm-up failed: {exc!r}", file=sys.stderr, flush=True)
        arena.warm.set()

    threading.Thread(target=run, name="warmup", daemon=True).start()
