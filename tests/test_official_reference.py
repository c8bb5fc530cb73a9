"""Provenance of tests/data's reference tensors: the official StyA2K code reproduces them, and our A2K
matches it on cases it makes anew. Needs a checkout of the official repository (see
tests/official_reference.py); skipped, with the reason, without one."""
import os

import pytest
import torch

from model.a2k import A2K, REGION_SIZE
from model.stya2k import Transform

from .conftest import DATA, close
from .official_reference import COMMIT, ENV, TOLERANCE, errors, import_official, make

pytestmark = pytest.mark.skipif(
    not os.environ.get(ENV),
    reason=f"{ENV} is not set: point it at a checkout of github.com/LearningHx/StyA2K at commit {COMMIT}",
)


@pytest.fixture(scope="module")
def official():
    return import_official(os.environ[ENV])


@pytest.fixture(scope="module")
def new_cases(official):
    return make(official, seed=1)


def test_official_code_reproduces_the_stored_tensors(official):
    rows = errors(official, torch.load(DATA / "a2k_cases.pt"), torch.load(DATA / "transform_case.pt"))
    assert len(rows) == 13
    assert [label for label, error in rows if error > TOLERANCE] == []


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "reference"])
@torch.no_grad()
def test_our_a2k_matches_the_official_code_on_new_cases(new_cases, lean):
    cases, transform = new_cases
    for case in cases:
        m = A2K(case["in_planes"], REGION_SIZE[case["layer"]], lean=lean)
        m.load_state_dict(case["state_dict"])
        da, pa = m.attention(case["content"], case["style"])
        assert close(da, case["da"]) and close(pa, case["pa"])
        assert close(m(case["content"], case["style"]), case["out"])
    t = Transform(transform["in_planes"], lean=lean)
    t.load_state_dict(transform["state_dict"])
    assert close(t(*(transform[k] for k in ("content4_1", "style4_1", "content5_1", "style5_1"))), transform["out"])
