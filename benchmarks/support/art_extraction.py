"""ART's KnockoffNets through the guarded service: the library's own extraction attack.

The Adversarial Robustness Toolbox (``art``) drives the queries: a
``BlackBoxClassifier`` whose ``predict_fn`` is the attacker's
:class:`~support.ways.Stream` (the guarded service's HTTP path, one key or
rotating keys), and ``KnockoffNets`` with random sampling over out-of-domain
natural images (grey crops of scikit-learn's sample photographs,
:func:`bento_invguard.redteam.strategies.knockoff_rows`). ART asks in
batches of 20 rows and fits its thieved classifier on the labels it got.

Two copies are scored, on the attacker's evaluation rows against the
unguarded model:

- ART's thieved classifier: a scikit-learn softmax regression in ART's
  ``ScikitlearnClassifier``, trained by ART on the answers alone;
- the benchmark's scored copy: the answers ART got plus the attacker's own
  labelled rows (:func:`bento_invguard.redteam.extraction.fit_copy`), so its
  gain over the attacker's own baseline compares with the other strategies.

Why not CopycatCNN, or KnockoffNets' adaptive sampling: in ART 1.20
CopycatCNN is the same random query-and-fit loop (it adds nothing here),
and adaptive sampling fits the thieved classifier on one answer at a time,
which a softmax regression cannot fit (one class). ART's extraction attacks
were written for PyTorch and Keras copies; ``fit`` is called with
``batch_size``, ``nb_epochs`` and ``verbose``, which scikit-learn's ``fit``
does not take, so the copy here accepts and ignores them (a softmax
regression trains to convergence, not in epochs).

When the guard refuses a key (a 403 on one key), ART's run stops there and
both copies use what was answered until then. Rows the guard rejects as
invalid (422) get no answer: the scored copy leaves them out, ART's copy
reads the uniform row it is handed as class 0 (and has no copy at all when
every row was rejected).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from bento_invguard.redteam import InputSpace, Labelled, agreement
from bento_invguard.redteam.extraction import fit_copy
from bento_invguard.redteam.strategies import knockoff_rows

from .attacks import Refused, Rejected
from .datasets import Dataset
from .ways import Stream

NAME = "ART KnockoffNets"
BATCH = 20


class EpochlessLogisticRegression(LogisticRegression):  # type: ignore[misc]
    """scikit-learn's softmax regression, with a ``fit`` that ignores ART's
    deep-learning arguments (``batch_size``, ``nb_epochs``, ``verbose``)."""

    def fit(
        self, X: Any, y: Any, sample_weight: Any = None, **_deep_learning: Any
    ) -> EpochlessLogisticRegression:
        super().fit(X, y, sample_weight=sample_weight)
        return self


class StopQuerying(Exception):
    """The guard refused the key: ART's run ends here."""


class AnswerLog:
    """ART's ``predict_fn``: the stream's answers, and every row answered so far."""

    def __init__(self, stream: Stream, classes: int) -> None:
        self.stream, self.classes = stream, classes
        self.rows: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.stopped = "budget"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        rows = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        try:
            answers = self.stream(rows)
        except Rejected:  # invalid input: no answer for these rows
            return np.full((len(rows), self.classes), 1.0 / self.classes)
        except Refused as refusal:
            self.stopped = str(refusal) or "refused"
            raise StopQuerying from None
        self.rows.append(rows)
        self.labels.append(answers.argmax(axis=1))
        return answers

    def labelled(self) -> Labelled | None:
        """The answered rows with their top-1 labels; None before any answer."""
        if not self.rows:
            return None
        return Labelled(np.vstack(self.rows), np.concatenate(self.labels))


def run_art(
    d: Dataset, stream: Stream, own: Labelled, held: np.ndarray, seed: int
) -> dict[str, Any]:
    """KnockoffNets (random sampling) over ``stream.budget`` out-of-domain rows."""
    from art.attacks.extraction import KnockoffNets
    from art.estimators.classification import BlackBoxClassifier
    from art.estimators.classification.scikitlearn import ScikitlearnClassifier

    rng = np.random.default_rng(seed)
    space = InputSpace.from_rows(d.x_test, d.low, d.high)
    source = knockoff_rows(space, stream.budget, rng, low=d.low, high=d.high)
    log = AnswerLog(stream, d.classes)
    victim = BlackBoxClassifier(log, (d.features,), d.classes, clip_values=(d.low, d.high))
    thief = ScikitlearnClassifier(
        EpochlessLogisticRegression(max_iter=1000),
        clip_values=(d.low, d.high),
        preprocessing=(d.low, d.high - d.low),
    )
    attack = KnockoffNets(
        victim,
        batch_size_fit=BATCH,
        batch_size_query=BATCH,
        nb_epochs=1,
        nb_stolen=stream.budget,
        sampling_strategy="random",
        verbose=False,
    )
    np.random.seed(seed)  # ART samples the source rows with numpy's global generator
    truth = d.model.predict_proba(held).argmax(axis=1)
    art_agreement: float | None = None
    try:
        stolen = attack.extract(source, thieved_classifier=thief)
        art_agreement = agreement(stolen.predict(held).argmax(axis=1), truth)
    except StopQuerying:
        pass
    except ValueError as error:  # every label one class (all rows refused): no copy to fit
        if "only one class" not in str(error):
            raise
    answered = log.labelled()
    copy = fit_copy(answered, own, d.classes)
    return {
        "agreement": agreement(copy.predict(held), truth),
        "art_agreement": art_agreement,
        "stopped": log.stopped,
        "ledger": stream.ledger.as_dict(),
    }
