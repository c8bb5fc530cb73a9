"""Stopping a child process: the app's workers, nginx, the launched apps of the tests."""
import subprocess


def stop(process, timeout_s=15):
    """SIGTERM, then SIGKILL if it has not exited after timeout_s; nothing for None or an exited process."""
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout_s)
