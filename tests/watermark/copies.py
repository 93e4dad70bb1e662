"""A digits service's watermarked answers, a copy trained on them, and independent models.

The attacker queries 3,000 digits (the 1,797 of scikit-learn and jittered
twins) and trains a 1-nearest-neighbour copy on the answers; independent
models are trained on the true labels and never see an answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from bento_invguard.context import QueryContext
from bento_invguard.watermark import EvidenceWriter, Watermark

SECRET = b"digits-test-secret"
RATE = 0.005
QUERIES = 3000

SUSPECT_MODULE = '''
import numpy as np

_DATA = np.load({path!r})


def copy(rows):
    """1-nearest neighbour over the stolen answers."""
    x, y = _DATA["copy_x"], _DATA["copy_y"]
    d = ((rows[:, None, :] - x[None, :, :]) ** 2).sum(axis=2)
    return y[d.argmin(axis=1)]


def independent(rows):
    """Softmax regression trained on true labels; it never saw an answer."""
    z = rows / 16.0 @ _DATA["ind_coef"].T + _DATA["ind_intercept"]
    return z
'''


@dataclass
class Theft:
    evidence: Path
    suspects: Path  # a folder with the module ``module_name``
    module_name: str
    marked: int


def steal(tmp_path: Path, module_name: str) -> Theft:
    """Serve digits through a watermark, train the copy, write both suspects to a module."""
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float64)
    served = LogisticRegression(max_iter=2000, C=0.5).fit(x[::2] / 16.0, y[::2])
    rng = np.random.default_rng(0)
    extra = x[rng.integers(0, len(x), QUERIES - len(x))]
    queries = np.vstack([x, np.clip(extra + rng.normal(0, 0.5, extra.shape), 0, 16)])
    evidence = tmp_path / "evidence.jsonl"
    mark = Watermark(SECRET, rate=RATE, tier="public", writer=EvidenceWriter(evidence))
    ctx = QueryContext(endpoint="predict", principal="thief", tier_name="public")
    ctx.input = queries
    answers = mark.apply(ctx, served.predict_proba(queries / 16.0)).argmax(axis=1)
    independent = LogisticRegression(max_iter=2000, C=0.1).fit(x[1::2] / 16.0, y[1::2])
    data = tmp_path / "suspects.npz"
    np.savez(
        data,
        copy_x=queries,
        copy_y=answers,
        ind_coef=independent.coef_,
        ind_intercept=independent.intercept_,
    )
    (tmp_path / f"{module_name}.py").write_text(SUSPECT_MODULE.format(path=str(data)))
    marked = len(evidence.read_text().splitlines())
    return Theft(evidence, tmp_path, module_name, marked)
