"""Child processes: the app's workers, nginx, the launched apps of the tests; whether one answers, stopping it."""
import subprocess
import urllib.request


def answers(url, timeout=2):
    """Whether a GET of `url` succeeds within `timeout` seconds."""
    try:
        urllib.request.urlopen(url, timeout=timeout)
        return True
    except OSError:
        return False


def stop(process, timeout_s=15):
    """SIGTERM, then SIGKILL if it has not exited after timeout_s; nothing for None or an exited process."""
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_s)
