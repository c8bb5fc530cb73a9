"""`python app.py` refuses bad settings at startup, from flags and from environment variables alike,
with a message that says what to use instead (and no traceback); so do the model commands' --device."""
import os
import subprocess
import sys

import pytest

from bench.server import ROOT, SETTINGS_ENV
from model import evaluate, speed, stylize, train
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


@pytest.mark.parametrize("command,args", [
    (stylize, ["--content", "c", "--style", "s", "--method", "adain", "--out", "o"]),
    (evaluate, ["--contents", "c", "--styles", "s", "--methods", "adain", "--out", "o"]),
    (train, ["--method", "sanet", "--contents", "c", "--styles", "s", "--out", "o", "--steps", "1"]),
    (speed, []),
], ids=["stylize", "evaluate", "train", "speed"])
@pytest.mark.parametrize("device,message", [("banana", "is not a device"), ("cuda:7", "CUDA GPU")])
def test_model_commands_refuse_a_bad_device(command, args, device, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        command.main([*args, "--device", device])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
