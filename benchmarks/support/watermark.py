"""The serving-time watermark, measured: is a stolen copy shown, and are honest models not?

For a data set (``digits`` or ``mnist``, :mod:`support.datasets`) and each
number of stolen answers:

1. an attacker queries the served model through a watermarked ``label`` tier
   with natural inputs: the training split, then jittered twins of it
   (Gaussian noise of 3 % of the input range) once the split is used up;
2. it trains copies on the answers: a 1-nearest-neighbour memoriser and an
   MLP (scikit-learn, trained to fit its data);
3. ``verify_copy`` asks each copy the kept inputs (at most 500) and gives
   the p-value; the target is ``p <= 1e-6``;
4. 20 models trained on the true labels (other seeds and architectures,
   never having queried the service) are asked the same kept inputs; the
   target is ``p >= 0.01`` for all of them;
5. the share of the attacker's answers that were changed (the kept inputs);
   on the held-out split, the share of answers the watermark changed
   (target ``<= 0.5 %``) and top-1 agreement with the unwatermarked model
   (target ``>= 99.5 %``).

``watermark_table(load("digits"))`` returns one row per (answers, model).
The benchmark script that prints it is not part of this module.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bento_invguard.context import QueryContext
from bento_invguard.watermark import EvidenceWriter, Watermark, read_evidence, verify_copy

from .datasets import NAMES, Dataset, load
from .watermark_share import interval, tradeoff
from .watermark_share import markdown as trade_markdown

RATE = 0.005
ANSWERS = (2000, 5000)
MAX_QUERIES = 500
COPY_ALPHA = 1e-6
INDEPENDENT_FLOOR = 0.01
CHANGED_CEILING = 0.005
AGREEMENT_FLOOR = 0.995
JITTER = 0.03
SECRET = b"benchmark-watermark-secret"

Model = Callable[[np.ndarray], np.ndarray]


def attacker_queries(d: Dataset, n: int, seed: int = 0) -> np.ndarray:
    """``n`` natural queries: the training split, then jittered twins of its rows."""
    rng = np.random.default_rng(seed)
    x = d.x_train[rng.permutation(len(d.x_train))]
    if n <= len(x):
        return np.asarray(x[:n], dtype=np.float64)
    extra = x[rng.integers(0, len(x), n - len(x))]
    noise = rng.normal(0.0, JITTER * (d.high - d.low), extra.shape)
    return np.vstack([x, np.clip(extra + noise, d.low, d.high)])


def watermarked_labels(d: Dataset, rows: np.ndarray, mark: Watermark, principal: str) -> np.ndarray:
    """The labels a ``label`` tier answers ``rows`` with (argmax of the marked scores)."""
    ctx = QueryContext(endpoint="predict", principal=principal, tier_name=mark.tier)
    ctx.input = rows
    labels: np.ndarray = mark.apply(ctx, d.model.predict_proba(rows)).argmax(axis=1)
    return labels


def copies(x: np.ndarray, y: np.ndarray, scale: float) -> dict[str, Model]:
    """The attacker's copies, trained on its queries and our answers."""
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier

    knn = KNeighborsClassifier(n_neighbors=1).fit(x / scale, y)
    mlp = MLPClassifier(hidden_layer_sizes=(512,), alpha=1e-5, max_iter=400, random_state=0)
    mlp.fit(x / scale, y)
    return {
        "copy: 1-NN": lambda rows: knn.predict(rows / scale),
        "copy: MLP 512": lambda rows: mlp.predict(rows / scale),
    }


def independent_models(d: Dataset, count: int = 20) -> dict[str, Model]:
    """``count`` models trained on true labels, never having queried the service."""
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.tree import DecisionTreeClassifier

    scale = d.high - d.low
    makers: list[tuple[str, Callable[[int], Any]]] = [
        ("MLP 128", lambda s: MLPClassifier((128,), max_iter=200, random_state=s)),
        ("random forest", lambda s: RandomForestClassifier(60, random_state=s)),
        ("extra trees", lambda s: ExtraTreesClassifier(60, random_state=s)),
        ("logistic", lambda s: LogisticRegression(C=0.05 * (s + 1), max_iter=300)),
        ("k-NN", lambda s: KNeighborsClassifier(n_neighbors=1 + 2 * s)),
        ("decision tree", lambda s: DecisionTreeClassifier(random_state=s)),
        ("naive Bayes", lambda s: GaussianNB()),
    ]
    models: dict[str, Model] = {}
    rng = np.random.default_rng(1)
    seed = 0
    while len(models) < count:
        for name, make in makers:
            if len(models) >= count:
                break
            keep = rng.random(len(d.x_train)) < 0.8  # each its own 80 % of the split
            clf = make(seed).fit(d.x_train[keep] / scale, d.y_train[keep])
            models[f"independent: {name} #{seed}"] = _predictor(clf, scale)
        seed += 1
    return models


def _predictor(clf: Any, scale: float) -> Model:
    return lambda rows: np.asarray(clf.predict(rows / scale))


def held_out_effect(d: Dataset, mark: Watermark) -> tuple[float, float]:
    """(share of held-out answers changed, top-1 agreement with the unwatermarked model)."""
    rows = np.asarray(d.x_test, dtype=np.float64)
    served = watermarked_labels(d, rows, mark, "benign")
    plain = d.model.predict_proba(rows).argmax(axis=1)
    agreement = float((served == plain).mean())
    return 1.0 - agreement, agreement


def watermark_table(
    d: Dataset,
    *,
    answers: Sequence[int] = ANSWERS,
    rate: float = RATE,
    independents: int = 20,
    max_queries: int = MAX_QUERIES,
) -> list[dict[str, Any]]:
    """One row per (stolen answers, suspect model): kept inputs tested, matches, p-value,
    and whether the target holds; the held-out effect of the watermark on every row."""
    rows: list[dict[str, Any]] = []
    with warnings.catch_warnings():  # MLPs stopped at max_iter fit well enough here
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=RuntimeWarning)
        from sklearn.exceptions import ConvergenceWarning

        warnings.simplefilter("ignore", category=ConvergenceWarning)
        _measure(d, rows, answers, rate, independents, max_queries)
    return rows


def _measure(
    d: Dataset,
    rows: list[dict[str, Any]],
    answers: Sequence[int],
    rate: float,
    independents: int,
    max_queries: int,
) -> None:
    honest = independent_models(d, independents)
    with tempfile.TemporaryDirectory(prefix="invguard-wm-bench-") as tmp:
        for n in answers:
            path = Path(tmp) / f"{d.name}-{n}.jsonl"
            mark = Watermark(SECRET, rate=rate, tier="public", writer=EvidenceWriter(path))
            changed, agreement = held_out_effect(
                d, Watermark(SECRET, rate=rate, tier="public", writer=None)
            )
            queries = attacker_queries(d, n)
            labels = watermarked_labels(d, queries, mark, "thief")
            kept = list(read_evidence([path])) if path.exists() else []
            suspects = {**copies(queries, labels, d.high - d.low), **honest}
            for name, model in suspects.items():
                verdict = verify_copy(kept, model, max_queries=max_queries, alpha=COPY_ALPHA)
                is_copy = name.startswith("copy")
                rows.append(
                    {
                        "data": d.name,
                        "answers": n,
                        "rate": rate,
                        "suspect": name,
                        "kept": len(kept),
                        "stream_changed": round(len(kept) / n, 4),
                        "tested": verdict.tested,
                        "matches": verdict.matches,
                        "p0": round(verdict.p0, 4),
                        "p_value": verdict.p_value,
                        "target": "p <= 1e-6" if is_copy else "p >= 0.01",
                        "met": (verdict.p_value <= COPY_ALPHA)
                        if is_copy
                        else (verdict.p_value >= INDEPENDENT_FLOOR),
                        "held_out_changed": round(changed, 4),
                        "held_out_rows": len(d.x_test),
                        "held_out_agreement": round(agreement, 4),
                        "held_out_met": changed <= CHANGED_CEILING and agreement >= AGREEMENT_FLOOR,
                    }
                )


def summary(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (data, answers): copies shown, independents cleared, the held-out effect."""
    out: list[dict[str, Any]] = []
    keys = sorted({(r["data"], r["answers"]) for r in rows})
    for data, n in keys:
        group = [r for r in rows if r["data"] == data and r["answers"] == n]
        cps = [r for r in group if r["suspect"].startswith("copy")]
        ind = [r for r in group if not r["suspect"].startswith("copy")]
        out.append(
            {
                "data": data,
                "answers": n,
                "kept": group[0]["kept"],
                "stream_changed": group[0]["stream_changed"],
                "copies": ", ".join(
                    f"{r['suspect'][6:]} {r['matches']}/{r['tested']} p={r['p_value']:.1e}"
                    for r in cps
                ),
                "copies_met": all(r["met"] for r in cps),
                "independents": len(ind),
                "independent_min_p": min(r["p_value"] for r in ind),
                "independents_met": all(r["met"] for r in ind),
                "stream_changed_ci95": _ci(group[0]["kept"], n),
                "held_out_changed": group[0]["held_out_changed"],
                "held_out_changed_ci95": _ci(
                    round(group[0]["held_out_changed"] * group[0]["held_out_rows"]),
                    group[0]["held_out_rows"],
                ),
                "held_out_rows": group[0]["held_out_rows"],
                "held_out_agreement": group[0]["held_out_agreement"],
                "held_out_met": group[0]["held_out_met"],
            }
        )
    return out


def _ci(changed: int, total: int) -> list[float]:
    return [round(v, 5) for v in interval(changed, total)]


def summary_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """One line per (data set, stolen answers) of :func:`summary`."""
    head = (
        "| data set | stolen answers | kept (changed, 95 % CI) | copies: matches, p "
        "| independents: min p | held-out changed (95 % CI) | held-out agreement |"
    )
    lines = [head, "|" + " --- |" * 7]
    for r in rows:
        lo, hi = r["stream_changed_ci95"]
        hlo, hhi = r["held_out_changed_ci95"]
        lines.append(
            f"| {r['data']} | {r['answers']:,} | {r['kept']} ({_pct(r['stream_changed'])}, "
            f"{_pct(lo)}-{_pct(hi)}) | {r['copies']} ({_met(r['copies_met'])}) "
            f"| {r['independents']}: {r['independent_min_p']:.2f} ({_met(r['independents_met'])}) "
            f"| {_pct(r['held_out_changed'])} of {r['held_out_rows']:,} ({_pct(hlo)}-{_pct(hhi)}) "
            f"| {_pct(r['held_out_agreement'])} ({_met(r['held_out_met'])}) |"
        )
    return "\n".join(lines)


def _pct(share: float) -> str:
    return f"{100 * share:.2f} %"


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def figures(quick: bool = False) -> tuple[str, dict[str, Any]]:
    """``efficacy.py --watermark``: digits and MNIST at the default rate, then the rate
    trade-off; ``quick``: 2,000 answers, 7 independents, two rates, 10 secrets."""
    answers = (2000,) if quick else ANSWERS
    out: dict[str, Any] = {"rate": RATE, "summary": [], "tradeoff": []}
    for name in NAMES:
        d = load(name)
        rows = watermark_table(d, answers=answers, independents=7 if quick else 20)
        out["summary"] += summary(rows)
        queries = attacker_queries(d, max(ANSWERS))
        out["tradeoff"] += (
            tradeoff(d, queries, rates=(0.004, RATE), secrets=10, stream=10_000)
            if quick
            else tradeoff(d, queries)
        )
    text = (
        f"Serving-time watermark, rate {RATE}:\n\n{summary_markdown(out['summary'])}\n\n"
        f"Rate trade-off (a 1-NN copy of the stolen answers; p <= {COPY_ALPHA:g}):\n\n"
        f"{trade_markdown(out['tradeoff'])}"
    )
    return text, out
