"""The benign crowd: many principals sending natural held-out queries through the guard.

Each principal (tiers ``public`` and ``trusted`` alternate) sends its own
sequence of queries: natural held-out rows in a fresh shuffle, singles and
small batches of 2-8 rows, and about 5 % exact retries of one of its earlier
queries. Two paces, interleaving all principals: ``steady`` (round robin, one
query each in turn) and ``bursty`` (a principal sends 20-50 queries in a row,
then another principal, at random, until all are done).

A principal is *hit* when any of its requests is refused or any of its rows
is answered unlike the unguarded model (silenced or degraded).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from .datasets import LinearSoftmax
from .service import KeyRing, Oracle, bare_answer

PACES = ("steady", "bursty")
RETRY_SHARE = 0.05


@dataclass
class Principal:
    """One benign caller: its key, tier and queries (lists of held-out row indices)."""

    key: str
    tier: str
    queries: list[list[int]]


def crowd(ring: KeyRing, pool_size: int, principals: int, per: int, seed: int) -> list[Principal]:
    """``principals`` callers, ``per`` queries each, over a pool of ``pool_size`` rows."""
    rng = np.random.default_rng(seed)
    out = []
    for p in range(principals):
        tier = ("public", "trusted")[p % 2]
        order = list(rng.permutation(pool_size))
        queries: list[list[int]] = []
        while len(queries) < per:
            if queries and rng.random() < RETRY_SHARE:
                queries.append(list(queries[int(rng.integers(len(queries)))]))
                continue
            n = 1 if rng.random() < 0.7 else int(rng.integers(2, 9))
            if len(order) < n:
                order += list(rng.permutation(pool_size))
            queries.append([int(i) for i in order[:n]])
            del order[:n]
        out.append(Principal(ring.take(tier), tier, queries))
    return out


def schedule(people: list[Principal], pace: str, seed: int) -> list[tuple[int, int]]:
    """(principal, query number) in sending order for ``pace``."""
    if pace == "steady":
        per = max(len(p.queries) for p in people)
        return [
            (p, q) for q in range(per) for p in range(len(people)) if q < len(people[p].queries)
        ]
    rng = np.random.default_rng(seed)
    sent = [0] * len(people)
    order: list[tuple[int, int]] = []
    while True:
        left = [p for p in range(len(people)) if sent[p] < len(people[p].queries)]
        if not left:
            return order
        p = int(rng.choice(left))
        n = min(int(rng.integers(20, 51)), len(people[p].queries) - sent[p])
        order += [(p, sent[p] + i) for i in range(n)]
        sent[p] += n


def run_crowd(
    oracle: Oracle,
    model: LinearSoftmax,
    pool: np.ndarray,
    people: list[Principal],
    pace: str,
    seed: int,
) -> dict[str, object]:
    """Send the crowd's queries at ``pace``; what the guard did to them."""
    refused: Counter[str] = Counter()
    queries = rows = altered_rows = 0
    hit = [False] * len(people)
    for p, q in schedule(people, pace, seed):
        person = people[p]
        x = pool[person.queries[q]]
        reply = oracle.ask(person.key, x)
        queries += 1
        rows += len(x)
        if reply.status != 200 or reply.answer is None:
            refused[reply.reason] += 1
            hit[p] = True
            continue
        expected = bare_answer(model, x, person.tier)
        same = np.isclose(reply.answer, expected, rtol=1e-6, atol=1e-9).all(axis=1)
        if not same.all():
            altered_rows += int((~same).sum())
            hit[p] = True
    refused_queries = sum(refused.values())
    return {
        "pace": pace,
        "principals": len(people),
        "queries_each": len(people[0].queries) if people else 0,
        "queries": queries,
        "rows": rows,
        "principals_hit": int(sum(hit)),
        "refused_queries": refused_queries,
        "refused_by_reason": dict(refused),
        "refused_share": refused_queries / max(queries, 1),
        "altered_rows": altered_rows,
    }
