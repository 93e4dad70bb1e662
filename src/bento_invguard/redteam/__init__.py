"""Red team in the box: black-box inversion, label-only and extraction attacks over HTTP.

``invguard attack URL --key KEY --attack inversion|label-only|extraction``
runs one attack against a live endpoint with only the answers it gives, and
reports what the defences did (rate limits, degrading to labels, blocks) and
how much leaked, judged by a model the attacker never queried.
"""

from .client import Exchange, Oracle, OracleStats, Rejected, Stopped, one_hot_rows
from .common import AttackResult, InputSpace
from .extraction import ExtractionSettings, Labelled, Labeller, extract
from .inversion import NesSettings, invert
from .label_only import ProbeSettings, reverse_correlation
from .reference import Reference, Split
from .runner import ATTACKS, Plan, run
from .scoring import InversionLeakage, SoftmaxRegression, agreement, fit_judge, inversion_leakage
from .strategies import STRATEGIES, Strategy

__all__ = [
    "ATTACKS",
    "STRATEGIES",
    "AttackResult",
    "Exchange",
    "ExtractionSettings",
    "InputSpace",
    "InversionLeakage",
    "Labelled",
    "Labeller",
    "NesSettings",
    "Oracle",
    "OracleStats",
    "Plan",
    "ProbeSettings",
    "Reference",
    "Rejected",
    "SoftmaxRegression",
    "Split",
    "Stopped",
    "Strategy",
    "agreement",
    "extract",
    "fit_judge",
    "inversion_leakage",
    "invert",
    "one_hot_rows",
    "reverse_correlation",
    "run",
]
