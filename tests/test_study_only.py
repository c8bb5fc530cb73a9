"""The study-only server, set up as the README's "Preference study" section says: it serves /study
and /results and refuses everything that makes or names images; the section's study.prepare line,
run as written on two folders of images, adds a study that the running server serves at once."""
import json
import os
import re
import shlex
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
from gradio_client import Client
from PIL import Image

from bench.server import ROOT, App

STUDY_ONLY_ENDPOINTS = {"/study_open", "/study_recheck", "/study_agree", "/study_decline", "/study_start", "/results"}


def readme_study_lines():
    """The command lines of the README's "Preference study" section (indented code, one command a line)."""
    section = (ROOT / "README.md").read_text().split("## Preference study", 1)[1].split("\n## ", 1)[0]
    return [line.strip() for line in section.splitlines() if line.startswith("    ") and "python3 " in line]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Where the researcher stands: photos/, paintings/, consent.md, and the server's data/ folder."""
    root = tmp_path_factory.mktemp("researcher")
    rng = np.random.default_rng(0)
    for folder, names in (("photos", ["harbour.png", "garden.jpg"]), ("paintings", ["waves.png"])):
        (root / folder).mkdir()
        for name in names:
            Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(root / folder / name)
    (root / "consent.md").write_text("A study of pictures. Click **I agree** to take part.")
    return root


@pytest.fixture(scope="module")
def server(workdir):
    server_line, = [line for line in readme_study_lines() if "app.py" in line]
    env = dict(word.split("=", 1) for word in shlex.split(server_line) if re.fullmatch(r"[A-Z_]+=.*", word))
    assert env.get("STUDY_ONLY") == "1"
    (workdir / "data").mkdir()
    server = App(workdir / "data", env={**env, "ENROLMENTS_PER_HOUR": "0"}).start()
    yield server
    server.stop()


def test_the_study_only_server_refuses_compare_explorer_and_stylise(server):
    client = Client(server.url, verbose=False)
    endpoints = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert endpoints <= STUDY_ONLY_ENDPOINTS, endpoints
    for name in ("/stylize", "/metrics", "/vote_left"):
        with pytest.raises(ValueError, match="Cannot find a function"):
            client.predict(api_name=name)
    config = urllib.request.urlopen(server.url + "config").read().decode()
    assert not any(word in config for word in ("Compare", "Attention explorer", "Stylise", "a2k_free"))
    assert json.loads(config)["footer_links"] == []
    study = Client(server.url, verbose=False, httpx_kwargs={"params": {"page": "study"}})
    message, *_ = study.predict({}, None, api_name="/study_open")
    assert "does not say which study" in message  # no silent sample study here


def test_the_readme_prepare_line_adds_a_study_the_running_server_serves(server, workdir):
    prepare, = [line for line in readme_study_lines() if "study.prepare" in line]
    assert "--consent" in prepare
    result = subprocess.run(shlex.split(prepare.replace("python3", sys.executable, 1)), cwd=workdir,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "participant link: https://study.example.org/study?study=my-study" in result.stdout
    assert re.search(r"completion code: \w+", result.stdout) and "estimated time per participant" in result.stdout
    client = Client(server.url, verbose=False, httpx_kwargs={"params": {"page": "study", "study": "my-study"}})
    message, title, consent, *_ = client.predict({}, None, api_name="/study_open")
    assert "A study of pictures" in consent and title == "Picture study" and not message
    client.predict({}, api_name="/study_agree")
    *_, view, _ = client.predict(api_name="/study_start")
    assert view["progress"] == "Practice trial 1 of 1" and view["left"].startswith("study-image/")
    with urllib.request.urlopen(server.url + view["left"]) as response:
        head = response.read(16)
    assert head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8 "  # the served format (study.picture_files)
