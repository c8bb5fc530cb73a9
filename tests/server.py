"""Launch the real app (python app.py) on a free local port for a test, and stop it afterwards."""
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python app.py --port P --data-dir D ...` in a subprocess; url once it answers."""

    def __init__(self, data_dir, *args, env=None, timeout=120):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = open(Path(data_dir) / "server.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(self.port), "--data-dir", str(data_dir), *args],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(self.url, timeout=2)
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the app did not start: {(Path(data_dir) / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
