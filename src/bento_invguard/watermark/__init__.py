"""Serving-time watermark: mark a keyed-hash-chosen fraction of answers, keep those
inputs, and later show that a suspect model learned the marks (DAWN, Szyller et al. 2021).

>>> from bento_invguard.watermark import binomial_tail
>>> binomial_tail(9, 10, 1 / 9) < 1e-6
True
"""

from .evidence import Evidence, EvidenceWriter, read_evidence
from .keyed import canonical_bytes, is_chosen, mark_label, marked_row, row_digest
from .marker import Watermark, Watermarks, evidence_path, expand_secret, watermark_hook
from .suspect import SuspectError, function_predictor, url_predictor
from .verify import (
    DEFAULT_ALPHA,
    DEFAULT_MAX_QUERIES,
    Predictor,
    Verdict,
    binomial_tail,
    predicted_labels,
    verify_copy,
)

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_MAX_QUERIES",
    "Evidence",
    "EvidenceWriter",
    "Predictor",
    "SuspectError",
    "Verdict",
    "Watermark",
    "Watermarks",
    "binomial_tail",
    "canonical_bytes",
    "evidence_path",
    "expand_secret",
    "function_predictor",
    "is_chosen",
    "mark_label",
    "marked_row",
    "predicted_labels",
    "read_evidence",
    "row_digest",
    "url_predictor",
    "verify_copy",
    "watermark_hook",
]
