"""The monitor's section of the policy: what counts as probing and what is done about it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Thresholds(_Strict):
    """Risk levels (0..1) at which each action starts."""

    flag: float = Field(default=0.5, ge=0, le=1)
    degrade: float = Field(default=0.7, ge=0, le=1)
    block: float = Field(default=0.75, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if not self.flag <= self.degrade <= self.block:
            raise ValueError("thresholds must satisfy flag <= degrade <= block")
        return self


class Actions(_Strict):
    """Each escalation step can be turned off."""

    flag: bool = True
    degrade: bool = True
    block: bool = True


class MonitorPolicy(_Strict):
    """Per-principal detection of inversion and extraction probing. On by default."""

    enabled: bool = True
    window: int = Field(default=64, ge=8, le=4096, description="Recent queries kept per principal.")
    min_queries: int = Field(
        default=12, ge=1, description="Queries a principal makes before any action is taken."
    )
    max_distance: int = Field(
        default=8,
        ge=0,
        le=32,
        description="Hamming distance (of 64 bits) that makes a near-duplicate.",
    )
    boundary_margin: float = Field(
        default=0.25,
        gt=0,
        description="Top-1 minus top-2 score below which a query hugs the decision boundary.",
    )
    benign_boundary_rate: float = Field(
        default=0.15,
        ge=0,
        lt=1,
        description="Share of boundary-hugging queries that benign traffic shows.",
    )
    benign_off_data_rate: float = Field(
        default=0.05,
        ge=0,
        lt=1,
        description="Share of rows in requests the reference profile refused that benign "
        "traffic shows; beyond it, such rows raise the off_data signal.",
    )
    burst_factor: float = Field(
        default=20.0, gt=1, description="Short-term rate over the principal's own long-term rate."
    )
    thresholds: Thresholds = Thresholds()
    actions: Actions = Actions()
    block_seconds: int = Field(default=900, ge=1, description="Cool-down of a block.")
    max_principals: int = Field(default=100_000, ge=1, description="Principals kept in memory.")
    state_ttl: int = Field(default=86_400, ge=60, description="Seconds an idle principal is kept.")
    distributed_min_principals: int = Field(
        default=0,
        ge=0,
        description="Principals sharing one tight near-duplicate cluster that raise the global "
        "signal; 0 (the default) turns it off: on natural inputs from many users it flags "
        "benign keys (docs/benchmarks.md, 'Query monitor').",
    )
    distributed_max_distance: int = Field(
        default=2,
        ge=0,
        le=32,
        description="Hamming distance for the global signal: tighter than max_distance, since "
        "different users' natural inputs are often near each other but rarely this near.",
    )
