"""Inversion from labels alone: where, around a neutral input, does the model say "class c"?

Reverse correlation ("classification images", Ahumada 1996; Mangini and
Biederman 2004): random probes around a class-neutral start, labelled by
the endpoint; the average of the probes labelled ``c`` is the attacker's
picture of class ``c``. Each probe lands on one side or another of the
model's decision boundaries, so the labels map the boundaries around the
start; for a model that is roughly linear there, the average probe of a
class moves along the direction that separates it from the others, the
template the model learnt. Only the top-1 answer (argmax) is used, so
truncating scores to labels, top-k or rounded values changes nothing.

Every probe informs every class at once: the budget is not split per class.
A class the endpoint never answered keeps the neutral start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .client import Oracle, Stopped
from .common import AttackResult, InputSpace, ask_or_skip


@dataclass(frozen=True)
class ProbeSettings:
    """Probes ``start + scale * spread * N(0, 1)``, ``batch`` rows per request."""

    scale: float = 2.0
    batch: int = 20
    seed: int = 0


def reverse_correlation(
    oracle: Oracle,
    space: InputSpace,
    targets: list[int],
    settings: ProbeSettings | None = None,
) -> AttackResult:
    """Reconstruct one input per target class from the labels of random probes."""
    cfg = settings or ProbeSettings()
    result = AttackResult("label-only", targets=list(targets))
    rng = np.random.default_rng(cfg.seed)
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    free = space.free
    try:
        while oracle.remaining > 0:
            n = min(cfg.batch, oracle.remaining)
            noise = rng.standard_normal((n, space.features)) * space.spread
            noise[:, ~free] = 0.0
            probes = space.clip(space.start + cfg.scale * noise)
            answers = ask_or_skip(oracle, probes, result)
            if answers is None:
                continue
            for label, row in zip(answers.argmax(axis=1), probes, strict=True):
                c = int(label)
                sums[c] = sums.get(c, 0.0) + row
                counts[c] = counts.get(c, 0) + 1
        result.stopped = "budget"
    except Stopped as stop:
        result.stopped = stop.reason
    reconstructions = np.tile(space.start, (len(targets), 1))
    for i, target in enumerate(targets):
        if counts.get(target):
            reconstructions[i] = sums[target] / counts[target]
        else:
            result.note(f"class {target} was never answered: its reconstruction is the start")
    result.reconstructions = reconstructions
    result.details["answers_per_class"] = {str(c): counts[c] for c in sorted(counts)}
    return result
