"""The browser demo: Battle (two anonymous models, one vote, then the names), the Leaderboard of battle
votes, Compare (two named methods side by side, with votes) and the Attention explorer; the live results
of a study at /results; the blind preference study for participants at /study on a study-only server.

    python app.py [--weights-dir DIR] [--device cpu|cuda] [--data-dir data] [--database URL]
                  [--max-size PX] [--max-jobs N] [--host 127.0.0.1] [--port 7860]
                  [--vote-interval-ms 300] [--votes-per-minute 600] [--enrolments-per-hour 20]
                  [--counted-votes-per-day 50] [--study-only | --with-study]
                  [--trusted-proxies ADDRESSES] [--queue-size 64] [--queue-per-client 4]
                  [--max-upload-mb 25] [--upload-quota-mb 2048] [--storage-quota-mb 4096]
                  [--client-write-mb 512]

Each flag also reads an environment variable of the same name (WEIGHTS_DIR, DEVICE, ..., STUDY_ONLY=1).
--study-only serves /study and /results and nothing that makes or names images: run studies that way.
The demo serves no /study (NO_STUDY_HERE says why) unless --with-study asks for it, to try a study out.
The results page needs the environment variable ADMIN_PASSWORD (no flag: it would show in `ps`), of
at least 12 characters. At start the sample study (studies/sample) is registered in the database if it
is not there yet."""
import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves this machine

import gradio as gr  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from model.methods import check_device  # noqa: E402
from study.store import StudyError, data_dir  # noqa: E402

from .arena import DEVICE_GROUP, Arena, Settings  # noqa: E402
from .battle import build_battle_tab  # noqa: E402
from .browser_key import BrowserKey  # noqa: E402
from .budget import WriteBudget  # noqa: E402
from .compare import build_compare_tab  # noqa: E402
from .csp import ContentSecurityPolicy  # noqa: E402
from .explorer import build_explorer_tab  # noqa: E402
from .gallery import credits_markdown  # noqa: E402
from .leaderboard import Leaderboard, build_leaderboard_tab  # noqa: E402
from .limits import VoteLimits  # noqa: E402
from .no_fetch import NoFetch  # noqa: E402
from .results_page import MIN_PASSWORD, build_results_page  # noqa: E402
from .security import BUDGET_WINDOW_S, CACHE_CLEANUP, Admission, Blocks, HttpGuard, trusted_proxies  # noqa: E402
from .serving import serve  # noqa: E402
from .session import session_state  # noqa: E402
from .study_images import StudyImages  # noqa: E402
from .study_page import build_study_page, register_sample  # noqa: E402
from .study_vote import StudyVotes  # noqa: E402
from .warmup import start_warmup  # noqa: E402

INTRO = """# StyA2K Arena
**All-to-key attention** (StyA2K, Zhu et al., ICCV 2023) next to **all-to-all attention** (SANet, AdaAttN).
The default pair runs offline with no checkpoint: the same VGG encoder, AdaIN decoder and keys, differing only in
the attention. Battle two anonymous models on your photo and painting, see the leaderboard, or compare named methods."""


STUDY_ONLY_HOME = "This server runs a study. Open it from the link you were given."
NO_STUDY_HERE = ("This demo server serves no study at /study: its Compare tab would let a participant name a "
                 "study's pictures by running the same photo and painting. Run a study on a study-only server "
                 "(python app.py --study-only; README, Preference study), or start this one with --with-study "
                 "to try a study out.")


def no_study_route():
    """GET /study on a demo server without the study: 404 with NO_STUDY_HERE."""
    return Route("/study", lambda request: PlainTextResponse(NO_STUDY_HERE, 404), methods=["GET"])


def build(arena, votes):
    """The app's pages; with arena.settings.study_only the home page says only where the study is.
    votes: the study's demo.study_vote.StudyVotes, None for a demo server without the study page."""
    study_only = arena.settings.study_only
    with Blocks(title="Study" if study_only else "StyA2K Arena", delete_cache=CACHE_CLEANUP) as app:
        gr.Navbar(visible="hidden")  # the study and results pages are reached by their links only
        if study_only:
            gr.Markdown(STUDY_ONLY_HOME)
        else:
            gr.Markdown(INTRO)
            session = session_state(app, arena.store)
            board = Leaderboard(arena.store, arena.label, arena.settings.size_cap, arena.settings.counted_votes_per_day)
            with gr.Tabs(overflow_behavior="wrap"):  # every tab in view on a phone, no "..." menu
                with gr.Tab("Battle", elem_id="battle-tab"):
                    battle_inputs = build_battle_tab(arena, session)
                with gr.Tab("Leaderboard", elem_id="leaderboard-tab") as leaderboard_tab:
                    show_board, board_inputs, board_outputs = build_leaderboard_tab(board, session)
                leaderboard_tab.select(show_board, board_inputs, board_outputs, api_name="leaderboard")
                with gr.Tab("Compare", elem_id="compare-tab"):
                    compare_inputs = build_compare_tab(arena, session)
                with gr.Tab("Attention explorer"):
                    build_explorer_tab(arena, [compare_inputs, battle_inputs])
            with gr.Accordion("Example image credits", open=False):
                gr.Markdown(credits_markdown())
    if votes is not None:
        with app.route("Study", "/study", show_in_navbar=False):
            build_study_page(arena, app, votes)
    with app.route("Results", "/results", show_in_navbar=False):
        build_results_page(arena)
    return app


def parse(argv=None):
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python app.py", description="StyA2K Arena demo")
    parser.add_argument("--weights-dir", default=env("WEIGHTS_DIR"), help="folder with official checkpoints")
    parser.add_argument("--device", default=env("DEVICE"), help="cpu, cuda, cuda:1 (default: cuda if present)")
    parser.add_argument("--data-dir", default=data_dir(), help="images, cache and database (env DATA_DIR; default data/)")
    parser.add_argument("--database", help="SQLAlchemy URL or SQLite file (env DATABASE_URL; default DATA_DIR/arena.db)")
    parser.add_argument("--max-size", type=int, default=env("MAX_SIZE"), help="largest output side, px")
    parser.add_argument("--max-jobs", type=int, default=env("MAX_JOBS", "1"), help="stylisations at once")
    parser.add_argument("--vote-interval-ms", type=int, default=env("VOTE_INTERVAL_MS", "300"),
                        help="least time between two study votes of one participant (0: no limit)")
    parser.add_argument("--votes-per-minute", type=int, default=env("VOTES_PER_MINUTE", "600"),
                        help="most study votes from one network address per minute (0: no limit)")
    parser.add_argument("--enrolments-per-hour", type=int, default=env("ENROLMENTS_PER_HOUR", "20"),
                        help="participants one network address may enrol in one study per hour (0: no limit)")
    parser.add_argument("--counted-votes-per-day", type=int, default=env("COUNTED_VOTES_PER_DAY", "50"),
                        help="battle votes per network address and UTC day that the leaderboard counts")
    pages = parser.add_mutually_exclusive_group()
    pages.add_argument("--study-only", action="store_true", default=env("STUDY_ONLY", "") not in ("", "0"),
                       help="serve the study (/study) and its results (/results) only")
    pages.add_argument("--with-study", action="store_true", default=env("WITH_STUDY", "") not in ("", "0"),
                       help="serve the study at /study beside the demo, to try it out (participants could name "
                            "its pictures with the Compare tab: run real studies with --study-only)")
    parser.add_argument("--warm-up", type=int, choices=(0, 1), default=env("WARM_UP", "1"),
                        help="1: at start, in the background, encode the gallery paintings into the feature cache and "
                             "stylise the example pairs with every method; 0: do not")
    parser.add_argument("--trusted-proxies", default=env("TRUSTED_PROXIES", ""),
                        help="comma-separated addresses or networks of your reverse proxies: only their "
                             "X-Forwarded-For is believed (default: none, the peer address is used)")
    parser.add_argument("--queue-size", type=int, default=env("QUEUE_SIZE", "64"),
                        help="most stylisations queued or running at once, from all clients")
    parser.add_argument("--queue-per-client", type=int, default=env("QUEUE_PER_CLIENT", "4"),
                        help="most stylisations queued or running at once from one network address")
    parser.add_argument("--max-upload-mb", type=int, default=env("MAX_UPLOAD_MB", "25"),
                        help="largest upload request, all its files together, MB")
    parser.add_argument("--upload-quota-mb", type=int, default=env("UPLOAD_QUOTA_MB", "2048"),
                        help="most MB uploaded in any 70 min, from all addresses (uploads are deleted after an hour)")
    parser.add_argument("--storage-quota-mb", type=int, default=env("STORAGE_QUOTA_MB", "4096"),
                        help="most MB of stored images and results in the data folder: the least recently used "
                             "are deleted to make room (never an image a vote refers to)")
    parser.add_argument("--client-write-mb", type=int, default=env("CLIENT_WRITE_MB", "512"),
                        help="most MB one network address may make the server write in any 70 min (uploads, "
                             "stored images and results); at most --upload-quota-mb less --max-upload-mb")
    parser.add_argument("--host", default=env("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=env("PORT", "7860"))
    args = parser.parse_args(argv)
    try:
        check_device(args.device)
    except ValueError as exc:
        parser.error(str(exc))
    if args.client_write_mb > args.upload_quota_mb - args.max_upload_mb:
        parser.error(f"--client-write-mb {args.client_write_mb} would let one address take the uploads of all: "
                     f"give at most --upload-quota-mb less --max-upload-mb ({args.upload_quota_mb - args.max_upload_mb})")
    return args


def main(argv=None):
    args = parse(argv)
    password = os.environ.get("ADMIN_PASSWORD") or None
    if password and len(password) < MIN_PASSWORD:
        sys.exit(f"ADMIN_PASSWORD has {len(password)} characters; use at least {MIN_PASSWORD} "
                 "(or leave it unset to disable the results page).")
    try:  # uvicorn reads it when the server starts: X-Forwarded-For is believed from these peers only
        os.environ["FORWARDED_ALLOW_IPS"] = trusted_proxies(args.trusted_proxies)
    except ValueError as exc:
        sys.exit(f"--trusted-proxies: {exc}")
    settings = Settings(args.weights_dir, args.device, args.data_dir, args.database,
                        int(args.max_size) if args.max_size else None, args.max_jobs, password,
                        args.vote_interval_ms, args.votes_per_minute, args.enrolments_per_hour, args.study_only,
                        args.storage_quota_mb, client_write_mb=args.client_write_mb, with_study=args.with_study,
                        counted_votes_per_day=args.counted_votes_per_day)
    try:
        arena = Arena(settings)
    except StudyError as exc:
        sys.exit(f"python app.py: error: {exc}")
    register_sample(arena.store)
    if settings.serves_study:
        images = StudyImages(arena.store, Path(args.data_dir) / "study-images")
        votes = StudyVotes(arena.store, images, VoteLimits(settings.vote_interval_ms, settings.votes_per_minute))
        routes = [images.route(), votes.route(), votes.feedback_route()]
    else:
        print(NO_STUDY_HERE, file=sys.stderr, flush=True)
        votes, routes = None, [no_study_route()]
    if args.warm_up and not args.study_only:
        start_warmup(arena)
    app = build(arena, votes).check_named()
    upload_limit = args.max_upload_mb * 2**20
    guard = Middleware(HttpGuard, upload_limit=upload_limit, uploads=WriteBudget(args.upload_quota_mb * 2**20, BUDGET_WINDOW_S),
                       clients=arena.writes)
    app.queue_with(Admission(DEVICE_GROUP, args.queue_size, args.queue_per_client))
    middleware = [Middleware(ContentSecurityPolicy), guard, Middleware(NoFetch), Middleware(BrowserKey)]  # outermost first
    # Gradio's app mounted on a bare FastAPI app, and served by demo.serving (Blocks.launch cannot set a header
    # timeout); no run history: its routes would have the server call the Hugging Face Hub for a client
    server = gr.mount_gradio_app(FastAPI(docs_url=None, redoc_url=None, openapi_url=None), app, "/",
                                 server_name=args.host, server_port=args.port, max_file_size=upload_limit,
                                 show_error=True, run_history=False, footer_links=[] if args.study_only else None,
                                 app_kwargs={"middleware": middleware, "routes": routes})
    serve(server, args.host, args.port)
