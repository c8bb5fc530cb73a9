"""`python app.py` refuses bad settings at startup, from flags and from environment variables alike,
with a message that says what to use instead (and no traceback)."""
import os
import subprocess
import sys

import pytest

from bench.server import ROOT, SETTINGS_ENV
from model.methods import check_device


def start(tmp_path, *args, env=None):
    """Run the app until it exits (these settings make it exit at once); (exit code, stderr)."""
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
    run = subprocess.run([sys.executable, "app.py", "--port", "0", "--data-dir", str(tmp_path), *args],
                         cwd=ROOT, env={**clean, **(env or {})}, capture_output=True, text=True, timeout=120)
    return run.returncode, run.stderr


@pytest.mark.parametrize("args,env,message", [
    (["--device", "cuda:7"], None, "CUDA GPU"),
    ([], {"DEVICE": "banana"}, "is not a device"),
    ([], {"MAX_JOBS": "many"}, "invalid int value: 'many'"),
    ([], {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"}, "cannot open the study database"),
], ids=["device-flag", "device-env", "int-env", "database-env"])
def test_bad_settings_stop_the_app_with_a_message(tmp_path, args, env, message):
    code, stderr = start(tmp_path, *args, env=env)
    assert code != 0 and message in stderr and "Traceback" not in stderr


def test_check_device():
    assert check_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="is not a device"):
        check_device("gpu0")
