"""The log of refused requests: one line on stderr each, saying what was asked and why, never who asked."""
import sys


def log_refusal(what, reason):
    """One line on stderr per refused request: what was asked and why, never who asked."""
    print(f"refused {what}: {' '.join(str(reason).split())[:300]}", file=sys.stderr, flush=True)
