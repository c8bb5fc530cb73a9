"""Shared contracts that have one home: the app's environment settings (a launched app never inherits
them from the caller: every setting that app.py, demo/ and study/ read is stripped by
bench.server.App) and the vote vocabulary with its button labels."""
import ast
from pathlib import Path

from bench.server import SETTINGS_ENV, App
from demo.choices import CHOICE_LABELS
from model import files
from study import prepare
from study.schema import CHOICES

ROOT = Path(__file__).resolve().parents[1]


def environment_names(path):
    """String literals passed first to env(...), os.environ.get(...) or os.getenv(...) in a file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = ast.unparse(node.func)
            if func in ("env", "os.environ.get", "os.getenv", "environ.get"):
                names.add(node.args[0].value)
    return names


def test_every_app_setting_read_from_the_environment_is_stripped():
    files = [ROOT / "app.py", *(ROOT / "demo").glob("*.py"), *(ROOT / "study").glob("*.py")]
    read = set().union(*(environment_names(p) for p in files))
    read.discard("GRADIO_ANALYTICS_ENABLED")  # set by the app itself, not a setting
    assert {"DATABASE_URL", "ADMIN_PASSWORD"} <= read
    assert read <= set(SETTINGS_ENV)


def test_launched_app_does_not_inherit_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://someone@elsewhere/production")
    monkeypatch.setenv("ADMIN_PASSWORD", "inherited-password")
    app = App(tmp_path, env={"VOTE_INTERVAL_MS": "0"})
    assert "DATABASE_URL" not in app.env and "ADMIN_PASSWORD" not in app.env
    assert app.env["VOTE_INTERVAL_MS"] == "0" and app.env["PATH"]


def test_vote_labels_are_keyed_on_the_vote_vocabulary():
    assert tuple(CHOICE_LABELS) == CHOICES


def test_study_prepare_names_and_lists_files_as_the_model_cli_writes_them(tmp_path):
    """study/ never imports model/, so study.prepare keeps its own copy of model.files' contract."""
    assert prepare.IMAGE_SUFFIXES == files.IMAGE_SUFFIXES
    assert prepare.output_name("a/photo.jpg", "b/paint.png", "adain") == files.output_name("a/photo.jpg", "b/paint.png", "adain")
    for name in ("b.PNG", "a.jpg", "notes.txt", "c.webp"):
        (tmp_path / name).write_bytes(b"x")
    assert prepare.image_files(tmp_path) == files.image_files(tmp_path)
    assert prepare.sha256_file(tmp_path / "a.jpg") == files.sha256_file(tmp_path / "a.jpg")
