"""N launched apps (bench.server.App) sharing one data folder and one database behind nginx with
sticky sessions (deploy.nginx), on 127.0.0.1: what tests/test_deploy.py fails over."""
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from deploy.nginx import Nginx

from .server import HOST, App, free_port, wait_until_up


class Cluster:
    """`n` workers on `database` with the data folder `data_dir` (each logs to worker<i>.log there),
    nginx in data_dir/nginx on a free port (`url`). env: settings for every worker."""

    def __init__(self, data_dir, n, database, env=None):
        data = Path(data_dir)
        self.workers = [App(data, "--database", database, env={**(env or {}), "TRUSTED_PROXIES": HOST}) for _ in range(n)]
        for i, worker in enumerate(self.workers):
            worker.log = data / f"worker{i}.log"
        port = free_port()
        self.url = f"http://{HOST}:{port}/"
        self.nginx = Nginx(data / "nginx", f"{HOST}:{port}", [w.port for w in self.workers])

    def start(self, timeout=180):
        """Start the workers at once (they migrate the database and register the sample study
        concurrently, as a deployment's do), then nginx."""
        try:
            with ThreadPoolExecutor(len(self.workers)) as pool:
                list(pool.map(lambda worker: worker.start(timeout), self.workers))
            self.nginx.start()
        except Exception:
            self.stop()
            raise
        if not wait_until_up(self.url, time.monotonic() + 30):
            self.stop()
            raise RuntimeError(f"nginx does not answer at {self.url}")
        return self

    def cpu_seconds(self):
        """CPU time (user + system) the workers have used, all together (nginx's not counted)."""
        return sum(worker.cpu_seconds() for worker in self.workers)

    def stop(self):
        self.nginx.stop()
        for worker in self.workers:
            worker.stop()
