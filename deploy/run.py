"""Start N app workers and nginx in front of them; stop them all on Ctrl-C or SIGTERM.

    python -m deploy.run [--workers 2] [--listen 0.0.0.0:8080] [--first-port 7861] [--gpus 0,1]
                         [--folder runs/deploy] [-- APP FLAGS]

Worker i is `python app.py --host 127.0.0.1 --port FIRST_PORT+i APP FLAGS` with this environment
(DATABASE_URL, DATA_DIR, ADMIN_PASSWORD, STUDY_SALT, ...: the same for every worker, so they share one
database and one data folder) and TRUSTED_PROXIES=127.0.0.1 (nginx's address). --gpus gives worker i
the i-th listed GPU (CUDA_VISIBLE_DEVICES, cycled). A worker that exits is started again; nginx sends
its participants to the others meanwhile (deploy.nginx). nginx's configuration and logs and the
workers' logs (worker<i>.log) go to --folder. nginx takes request bodies up to the environment's
MAX_UPLOAD_MB (default 25) plus 1 MB: set the upload limit there, not as a worker flag."""
import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .nginx import Nginx
from .process import answers, stop

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 600  # a worker loads its networks before it answers


class Worker:
    """`python app.py` on 127.0.0.1:`port` with `env`, logging to `log`."""

    def __init__(self, port, env, app_args, log):
        self.port, self.env, self.app_args, self.log = port, env, app_args, log
        self.process = None

    def start(self):
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(self.port), *self.app_args],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def stop(self):
        stop(self.process, timeout_s=30)


def parse(argv=None):
    parser = argparse.ArgumentParser(prog="python -m deploy.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="app processes (default 2)")
    parser.add_argument("--listen", default="0.0.0.0:8080", help="nginx's address:port (default 0.0.0.0:8080)")
    parser.add_argument("--first-port", type=int, default=7861, help="worker i listens on 127.0.0.1:FIRST_PORT+i")
    parser.add_argument("--gpus", default="", help="comma-separated CUDA device numbers, one per worker (cycled)")
    parser.add_argument("--folder", type=Path, default=ROOT / "runs" / "deploy", help="nginx's files and the logs")
    parser.add_argument("app_args", nargs="*", help="flags for every app worker (after --)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    return args


def main(argv=None):
    args = parse(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()]
    max_upload_mb = int(os.environ.get("MAX_UPLOAD_MB", "25"))
    workers = []
    for i in range(args.workers):
        env = {**os.environ, "TRUSTED_PROXIES": "127.0.0.1"}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[i % len(gpus)]
        workers.append(Worker(args.first_port + i, env, args.app_args, args.folder / f"worker{i}.log"))
    nginx = Nginx(args.folder, args.listen, [w.port for w in workers], max_upload_mb)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        for i, worker in enumerate(workers):
            while not answers(f"http://127.0.0.1:{worker.port}/"):
                if worker.process.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"worker {i} did not start; see {worker.log}")
                time.sleep(0.5)
        nginx.start()
        print(f"{len(workers)} workers behind nginx at http://{args.listen}/ (logs in {args.folder}); "
              "Ctrl-C stops them", flush=True)
        while nginx.process.poll() is None:
            for i, worker in enumerate(workers):
                if worker.process.poll() is not None:
                    print(f"worker {i} exited ({worker.process.returncode}): starting it again", flush=True)
                    worker.start()
            time.sleep(1)
        sys.exit(f"nginx exited; see {args.folder / 'error.log'}")
    except KeyboardInterrupt:
        pass
    finally:
        nginx.stop()
        for worker in workers:
            worker.stop()


if __name__ == "__main__":
    main()
