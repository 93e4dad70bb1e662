"""Policy section for a tier's serving-time watermark (off unless a tier names one).

>>> from bento_invguard.policy.watermark import WatermarkPolicy
>>> WatermarkPolicy(rate=0.005, secret="${INVGUARD_WATERMARK_SECRET}").rate
0.005
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

#: Where the kept inputs go when the policy names no path (one file per worker).
DEFAULT_EVIDENCE_PATH = "${BENTOML_HOME}/invguard/watermark/{tier}.{worker}.jsonl"


class WatermarkPolicy(BaseModel):
    """Change the answer to a keyed-hash-chosen fraction of inputs, and keep those inputs.

    A watermarked row is answered with another class than the model's top-1,
    chosen by the same keyed hash; a copy trained on the answers learns it,
    and ``invguard verify-copy`` later tests a suspect model on the kept
    inputs. The evidence file holds those raw inputs with the caller's id.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate: float = Field(
        gt=0,
        le=0.05,
        description="Fraction of inputs whose answer is changed (and kept), e.g. 0.005.",
    )
    secret: SecretStr = Field(
        description="Key of the hash that chooses the inputs and their labels; ${VAR} is "
        "expanded from the environment when the service starts.",
    )
    evidence: Path | None = Field(
        default=None,
        description="JSON-lines file of the watermarked inputs (raw rows, principal id, model "
        "version, label); relative paths resolve beside the policy, ${VAR} expands from the "
        "environment, {tier} and {worker} are filled in. Default: " + DEFAULT_EVIDENCE_PATH,
    )

    @field_validator("secret")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty (use ${VAR} to read it from the environment)")
        return value
