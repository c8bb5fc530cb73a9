"""study.power: the participants it asks for reach the power it promises in a direct simulation of the
same design (trial by trial, three method pairs, the analysis' sign-flip test and Holm), and its command
line, whose pilot estimates come from the participants the analysis keeps."""
import random
import re

import numpy as np
import pytest

from study.analysis import holm, sign_flip_p
from study.power import Design, main, minimum_detectable_effect, participants_needed
from study.store import CATCH, Store
from tests.study_fixtures import add_stimuli

DESIGN = Design(n_trials=20, catch_rate=0.1, n_methods=3, spread=0.2, tie_rate=0.05)
EFFECT = 0.65


def direct_power(n_people, n_studies=2000, seed=0):
    """Share of simulated studies whose Holm-adjusted p-value (over the 3 pairs) finds pair 0, where
    method_a wins EFFECT of the time; pairs 1 and 2 have no difference. Trial by trial: 18 method
    trials per participant in shuffled order, 6 per pair, each a tie with probability tie_rate, else
    a choice with the participant's own probability for that pair (Beta, sd DESIGN.spread)."""
    rng = np.random.default_rng(seed)
    means = np.array([EFFECT, 0.5, 0.5])
    nu = means * (1 - means) / DESIGN.spread**2 - 1
    p = rng.beta(means * nu, (1 - means) * nu, (n_studies, n_people, 3))  # each participant, each pair
    pair = rng.permuted(np.broadcast_to(np.arange(18) % 3, (n_studies, n_people, 18)), axis=-1)
    tie = rng.random(pair.shape) < DESIGN.tie_rate
    chose_a = rng.random(pair.shape) < np.take_along_axis(p, pair, axis=-1)
    wins = np.stack([((pair == k) & ~tie & chose_a).sum(-1) for k in range(3)])  # (pairs, studies, people)
    totals = np.stack([((pair == k) & ~tie).sum(-1) for k in range(3)])
    p_values = sign_flip_p(wins.reshape(-1, n_people), totals.reshape(-1, n_people), seed=seed + 1)
    p_values = p_values.reshape(3, n_studies).T
    return float(np.mean([holm(row)[0] <= 0.05 for row in p_values]))


def test_participants_needed_agree_with_a_direct_simulation():
    n, _ = participants_needed(DESIGN, EFFECT)
    below, above = direct_power(n - 3), direct_power(n + 3, seed=10)
    print(f"participants needed: {n}; direct simulation: power {below:.3f} at {n - 3}, {above:.3f} at {n + 3}")
    assert below < 0.8 < above
    effect, _ = minimum_detectable_effect(DESIGN, n)
    assert effect == pytest.approx(EFFECT, abs=0.015) and effect <= EFFECT + 0.005
    assert np.isnan(minimum_detectable_effect(DESIGN, 6)[0])  # 6 participants: least p 2/64 > 0.05 / 3


def test_power_command(tmp_path, capsys):
    assert main(["--effect", "0.6", "--methods", "3", "--spread", "0.1", "--sims", "300"]) == 0
    out = capsys.readouterr().out
    assert "participants give 80% power to detect a 60% vs 50% win rate at alpha 0.05 (Holm over 3 pairs" in out
    assert "between-participant sd 0.1 of the preference" in out and "spread given" in out

    path = tmp_path / "pilot.db"  # a pilot: 12 participants with their own preferences, one who fails a
    rng = np.random.default_rng(0)  # catch trial and one who stops after 3 trials, both tying every time
    with Store(path) as store:
        store.create_study("pilot", "I agree.", 13, 1 / 13)
        add_stimuli(store, "pilot")
        method = {s["output_sha256"]: s["method"] for s in store.stimuli("pilot")}
        for i in range(14):
            token, bias = store.new_participant("pilot", rng=random.Random(i)), rng.random()
            for trial in store.remaining_trials(token)[:3 if i == 13 else None]:
                left, right = method[trial["left"]], method[trial["right"]]
                if CATCH in (left, right):
                    choice = ("left" if left == CATCH else "right") if i == 12 else ("right" if left == CATCH else "left")
                elif i >= 12:
                    choice = "tie"
                else:
                    a_left = left < right
                    choice = "tie" if rng.random() < 0.1 else ("left" if (rng.random() < bias) == a_left else "right")
                store.record_vote(trial["token"], token, choice, 1500)
    assert main(["--db", str(path), "--study", "pilot", "--sims", "300"]) == 0
    out = capsys.readouterr().out
    assert "with 13 trials per participant (1 catch), 4 per method pair over 3 pair(s) of 3 methods" in out
    assert "from 12 analysed pilot participants' 144 method votes (2 excluded as study.analyze does)" in out
    assert "spread estimated" in out
    tie_rate = float(re.search(r"tie rate estimated (\S+),", out).group(1))
    assert tie_rate < 0.2  # the two who only tied are left out

    with pytest.raises(SystemExit):  # --db without --study
        main(["--db", str(path)])
    assert main(["--effect", "0.6", "--spread", "0.6"]) == 2
    assert "impossible around a win rate of 0.6" in capsys.readouterr().err
