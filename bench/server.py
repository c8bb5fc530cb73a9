"""The real app (`python app.py`) launched on a free 127.0.0.1 port, for tests and the load checks,
and a study vote posted to it as the page posts one."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from demo.study_trial import ROUTE
from deploy.process import answers, stop

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # every launched app listens on the loopback interface only
# the app's settings read from the environment (demo/app.py): a launched app never inherits them from
# the caller, so that e.g. a DATABASE_URL set in CI cannot send test votes to that database
SETTINGS_ENV = ("WEIGHTS_DIR", "DEVICE", "DATA_DIR", "DATABASE_URL", "MAX_SIZE", "MAX_JOBS", "HOST", "PORT",
                "ADMIN_PASSWORD", "VOTE_INTERVAL_MS", "VOTES_PER_MINUTE", "ENROLMENTS_PER_HOUR", "STUDY_ONLY",
                "STUDY_SALT", "TRUSTED_PROXIES", "QUEUE_SIZE", "QUEUE_PER_CLIENT", "MAX_UPLOAD_MB", "UPLOAD_QUOTA_MB",
                "STORAGE_QUOTA_MB", "CLIENT_WRITE_MB", "WARM_UP", "WITH_STUDY", "COUNTED_VOTES_PER_DAY")


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_until_up(url, deadline):
    """Poll the app every 0.25 s until it answers or the monotonic `deadline` passes."""
    while time.monotonic() < deadline:
        if answers(url):
            return True
        time.sleep(0.25)
    return False


class App:
    """`python app.py ARGS` on a free 127.0.0.1 port with `data_dir`; start() again after kill() reuses
    the port and the data folder."""

    def __init__(self, data_dir, *args, env=None):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}/"
        self.args = ["--host", HOST, "--port", str(self.port), "--data-dir", str(self.data_dir), *args]
        # no warm-up of the example pairs unless asked for (env WARM_UP=1): its background stylisations
        # would compete with the test for the cores and write files while a test counts them
        self.env = {**{k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}, "WARM_UP": "0", **(env or {})}
        self.log = self.data_dir / "server.log"
        self.process = None

    def start(self, timeout=180):
        with open(self.log, "a") as log:
            self.process = subprocess.Popen([sys.executable, "app.py", *self.args], cwd=ROOT, env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not answers(self.url):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the app did not start; its log ends:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.25)
        return self

    def kill(self):
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self):
        stop(self.process)

    def cpu_seconds(self):
        """CPU time (user + system) the server process has used."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_mib(self, field_name="VmRSS"):
        """The server process's VmRSS (resident now) or VmHWM (peak resident) in MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no {field_name} in /proc/{self.process.pid}/status")


def post_vote(url, ticket, choice, client_ms=500, headers=None):
    """A study vote posted as the study page's script posts it (demo.study_vote) to the app at `url`
    -> (HTTP status, JSON answer)."""
    body = json.dumps({"ticket": ticket, "choice": choice, "client_ms": client_ms}).encode()
    request = urllib.request.Request(url + ROUTE, body, {"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
