"""A pytest plugin for bench.mutation's mutmut runs (pyproject.toml's [tool.mutmut] loads it with -p): the tests
of each mutant run fastest first, by the durations mutmut measured (mutants/mutmut-stats.json, in the working
directory of its runs), so that a killed mutant usually fails on a fast test before the slow ones run. mutmut
orders them so itself only when it forks each run from its own process, where caches that the measuring run
filled (the store's compiled queries, the networks) would hide the mutants of the code that fills them."""
import json
from pathlib import Path

STATS = Path("mutmut-stats.json")


def pytest_collection_modifyitems(items):
    if STATS.exists():
        seconds = json.loads(STATS.read_text())["duration_by_test"]
        items.sort(key=lambda item: seconds.get(item.nodeid, 0.0))
