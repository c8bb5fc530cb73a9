"""A pytest plugin for bench.mutation's mutmut runs (pyproject.toml's [tool.mutmut] loads it with -p).

- The tests of each mutant run fastest first, by the durations mutmut measured (mutants/mutmut-stats.json, in
  the working directory of its runs), so that a killed mutant usually fails on a fast test before the slow ones
  run; those that use a fixture set up once per module or session (a simulated study through the store: 2 to 6
  s, which mutmut's durations do not count) run after all the others. mutmut orders them by duration itself
  only when it forks each run from its own process, where caches that the measuring run filled (the store's
  compiled queries, the networks) would hide the mutants of the code that fills them.
- Each test starts with the store's query caches empty: mutmut maps a function to the tests that called it in
  one measuring run of them all, where a cached query would be built by the first test alone, so every other
  test that runs the query would be missing from the mutants of study.store._view_query."""
import json
from pathlib import Path

STATS = Path("mutmut-stats.json")


def pytest_collection_modifyitems(items):
    if STATS.exists():
        seconds = json.loads(STATS.read_text())["duration_by_test"]
        items.sort(key=lambda item: (shares_a_fixture(item), seconds.get(item.nodeid, 0.0)))


def shares_a_fixture(item):
    """Whether the test uses one of the tests' own fixtures of a scope wider than the test (pytest's, such as
    tmp_path_factory, cost nothing)."""
    return any(d.scope != "function" and d.func.__module__.startswith("tests")
               for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs)


def pytest_runtest_setup(item):
    from study import store

    store._remaining_query.cache_clear()
    store._trial_view_query.cache_clear()
