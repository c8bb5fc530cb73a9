"""The questions a study asks about a pair of stylisations: built-in ones and a study's own wording.

A study asks one or more questions; each trial asks one of them (Store.new_participant spreads them
evenly over a participant's counted trials), and each vote is stored with the key of its question.
A question is (key, wording); studies.questions holds the list, NULL for a study from before schema
version 8, which asked the overall question.
"""
import re

BUILT_IN = {
    "overall": "Which picture is better overall?",
    "content": "Which picture keeps the content of the photo better?",
    "style": "Which picture carries the style of the painting better?",
}
DEFAULT = (("overall", BUILT_IN["overall"]),)
KEY = re.compile(r"[a-z][a-z0-9_]{0,31}")
MAX_WORDING = 200


class QuestionError(ValueError):
    """A question that cannot be asked; the message says how to write it."""


def parse(specs):
    """[(key, wording)] from specs: a built-in key ("overall", "content", "style") or "key=your wording"."""
    questions = []
    for spec in specs:
        key, sep, wording = spec.partition("=")
        key, wording = key.strip(), wording.strip()
        if not sep:
            if key not in BUILT_IN:
                raise QuestionError(f"unknown question {key!r}: use one of {', '.join(BUILT_IN)}, or key=your wording")
            wording = BUILT_IN[key]
        questions.append((key, wording))
    return checked(questions)


def checked(questions):
    """The questions as a list of [key, wording] (JSON's shape); QuestionError for an empty list, a bad or
    repeated key, or an empty or over-long wording."""
    out = [[str(k), str(w)] for k, w in questions]
    if not out:
        raise QuestionError("a study asks at least one question")
    for key, wording in out:
        if not KEY.fullmatch(key):
            raise QuestionError(f"question key {key!r}: use 1-32 lower-case letters, digits or '_', starting with a letter")
        if not wording or len(wording) > MAX_WORDING:
            raise QuestionError(f"the wording of question {key!r} must have 1-{MAX_WORDING} characters")
    keys = [k for k, _ in out]
    if len(set(keys)) != len(keys):
        raise QuestionError(f"question keys repeat: {', '.join(keys)}")
    return out


def of_study(settings):
    """The study's questions as {key: wording}, in order (Store.study's dict)."""
    return dict(settings.get("questions") or DEFAULT)
