"""The shared view in memory: a chain of small steps is caught whoever sends each step."""

from __future__ import annotations

import numpy as np

from bento_invguard import Profile
from bento_invguard.context import QueryContext
from bento_invguard.monitor import run_without_io
from bento_invguard.reference import Thresholds
from bento_invguard.view import MemoryViewStore
from bento_invguard.view.entries import SILENT

from .conftest import X_TEST, Clock, ask, chain, open_view, predicted


def test_a_chain_is_probing_from_the_cluster_size_th_step_whoever_sends_it(
    thresholds: Thresholds, profile: Profile, clock: Clock
) -> None:
    """Twenty steps of 0.25, each sent with a new key (key rotation): every query with
    cluster_size earlier steps in the view is probing, the first cluster_size are not."""
    view = open_view(thresholds, profile, clock)
    verdicts = [
        bool(ask(view, f"key-{i}", row[None, :])[0].probing[0]) for i, row in enumerate(chain(20))
    ]
    c = thresholds.cluster_size
    assert [False] * c + [True] * (20 - c) == verdicts


def test_the_verdict_names_the_keys_and_is_on_the_context(
    thresholds: Thresholds, profile: Profile, clock: Clock
) -> None:
    """A probing query's decision says how many keys its cluster came from."""
    view = open_view(thresholds, profile, clock)
    rows = chain(thresholds.cluster_size + 1)
    for i, row in enumerate(rows[:-1]):
        ask(view, f"key-{i}", row[None, :])
    ctx = QueryContext(endpoint="predict", principal="last", tier_name="public")
    judgement = run_without_io(view.judge(ctx, rows[-1:]))
    assert thresholds.cluster_size + 1 == judgement.principals
    assert [("view", "probing")] == [(d.control, d.outcome) for d in ctx.decisions]


def test_natural_held_out_digits_are_never_probing(
    thresholds: Thresholds, profile: Profile, clock: Clock
) -> None:
    """All 450 held-out digits, one request each from 20 keys, then again in batches of 10:
    none is probing, each is answered its own class, and the batches are exact repeats."""
    view = open_view(thresholds, profile, clock)
    for i in range(len(X_TEST)):
        judgement, answers = ask(view, f"user-{i % 20}", X_TEST[i : i + 1])
        assert (False, predicted(X_TEST[i : i + 1])) == (
            bool(judgement.probing[0]),
            answers.tolist(),
        )
    for start in range(0, len(X_TEST), 10):
        batch = X_TEST[start : start + 10]
        judgement, answers = ask(view, "user-0", batch)
        assert [False] * len(batch) == judgement.probing.tolist()
        assert [True] * len(batch) == judgement.repeat.tolist()
        assert predicted(batch) == answers.tolist()


def test_exact_repeats_never_count_and_are_kept_once(
    thresholds: Thresholds, profile: Profile, clock: Clock
) -> None:
    """The same query sent 10 times by 10 keys is kept once and counts as one neighbour:
    a near query after them has 1 neighbour, not 10, and is not probing."""
    view = open_view(thresholds, profile, clock)
    first, near = chain(2)
    for i in range(10):
        judgement, _ = ask(view, f"key-{i}", first[None, :])
        assert (i > 0, False) == (bool(judgement.repeat[0]), bool(judgement.probing[0]))
    store = view.store
    assert isinstance(store, MemoryViewStore)
    assert 1 == store.current  # kept once
    judgement, _ = ask(view, "other", near[None, :])
    assert (1, False) == (int(judgement.neighbours[0]), bool(judgement.probing[0]))
    assert 2 == store.current


def test_a_repeat_of_a_silenced_query_gets_the_same_silent_answer(
    thresholds: Thresholds, profile: Profile, clock: Clock
) -> None:
    """Probing steps are answered the class of the cluster's first query, flagged SILENT;
    sending a silenced step again (whatever the model says now) gets that answer again,
    while a repeat of a query answered normally gets the model's answer."""
    view = open_view(thresholds, profile, clock)
    c = thresholds.cluster_size
    rows = chain(c + 3)
    answers = [int(ask(view, f"key-{i}", row[None, :], [i])[1][0]) for i, row in enumerate(rows)]
    assert list(range(c)) + [0 | SILENT] * 3 == answers
    judgement, again = ask(view, "retry", rows[-1:], [7])
    assert (True, False, [0 | SILENT]) == (
        bool(judgement.repeat[0]),
        bool(judgement.probing[0]),
        again.tolist(),
    )
    _, normal = ask(view, "retry", rows[1:2], [7])
    assert [7] == normal.tolist()


def test_without_silent_answers_every_row_gets_its_own_class(
    thresholds: Thresholds, profile: Profile, clock: Clock
) -> None:
    """``answers(..., silent=False)`` (on_detect: refuse) never copies a class."""
    view = open_view(thresholds, profile, clock)
    rows = chain(thresholds.cluster_size + 2)
    judgement, _ = ask(view, "key", rows)
    assert judgement.any_probing
    assert [3] * len(rows) == judgement.answers([3] * len(rows), False).tolist()


def test_rows_of_one_request_count_each_other(
    thresholds: Thresholds, profile: Profile, clock: Clock
) -> None:
    """A whole chain in one request on an empty view: the rows with cluster_size earlier
    rows are probing and get the first row's class silently; a repeat inside the request of
    a silenced row copies its silent answer, a repeat of an answered row keeps its own."""
    view = open_view(thresholds, profile, clock)
    c = thresholds.cluster_size
    rows = chain(c + 3)
    batch = np.vstack([rows, rows[:1], rows[c : c + 1]])
    classes = list(range(len(batch)))
    judgement, answers = ask(view, "batcher", batch, classes)
    assert [False] * c + [True] * 3 + [False, False] == judgement.probing.tolist()
    assert [False] * (c + 3) + [True, True] == judgement.repeat.tolist()
    assert list(range(c)) + [0 | SILENT] * 3 + [c + 3, 0 | SILENT] == answers.tolist()
    store = view.store
    assert isinstance(store, MemoryViewStore)
    assert c + 3 == store.current  # the repeats are not kept


def test_the_view_is_a_bounded_ring(thresholds: Thresholds, profile: Profile, clock: Clock) -> None:
    """A view of 64 queries forgets a chain's start once 64 other queries came after it;
    with room left it still remembers it."""
    c = thresholds.cluster_size
    rows = chain(c + 1)
    others = X_TEST[1:65]
    for size, expected in ((64, False), (128, True)):
        view = open_view(thresholds, profile, clock, size=size)
        for i, row in enumerate(rows[:c]):
            ask(view, f"key-{i}", row[None, :])
        for i in range(64):
            ask(view, "user", others[i : i + 1])
        judgement, _ = ask(view, "last", rows[c:])
        assert expected == bool(judgement.probing[0]), size
        store = view.store
        assert isinstance(store, MemoryViewStore)
        assert size == len(store.ring)


def test_old_queries_expire_after_the_ttl(thresholds: Thresholds, profile: Profile) -> None:
    """A chain's earlier steps count for ``ttl`` seconds, not one second more."""
    c = thresholds.cluster_size
    rows = chain(c + 1)
    for wait, expected in ((60, True), (61, False)):
        clock = Clock()
        view = open_view(thresholds, profile, clock, ttl=60)
        for i, row in enumerate(rows[:c]):
            ask(view, f"key-{i}", row[None, :])
        clock.now += wait
        judgement, _ = ask(view, "late", rows[c:])
        assert expected == bool(judgement.probing[0]), wait


def test_wide_steps_are_not_a_cluster(
    thresholds: Thresholds, profile: Profile, clock: Clock
) -> None:
    """Steps wider than the radius (in L2) leave no neighbours: nothing is probing."""
    view = open_view(thresholds, profile, clock)
    rows = chain(12, step=3 * thresholds.radius)
    judgements = [ask(view, f"key-{i}", row[None, :])[0] for i, row in enumerate(rows)]
    assert [0] * 12 == [int(j.neighbours[0]) for j in judgements]
