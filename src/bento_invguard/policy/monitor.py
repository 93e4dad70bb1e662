"""The monitor's section of the policy: what counts as probing and what is done about it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

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


class ViewPolicy(_Strict):
    """The shared view of every caller's recent queries (bounded)."""

    size: int = Field(
        default=100_000,
        ge=64,
        le=50_000_000,
        description="Queries kept: 70 bytes each, plus 16 to 32 of hash tables.",
    )
    ttl: int = Field(default=3600, ge=1, description="Seconds a query is kept at most.")
    radius: float | None = Field(
        default=None,
        gt=0,
        description="Distance (L2, in input units) within which queries are near; default: "
        "calibrated from the reference profile, else 1 % of the input range's diagonal.",
    )
    cluster_size: int | None = Field(
        default=None,
        ge=1,
        description="Near earlier queries that make a query probing; default: calibrated "
        "from the reference profile, else 3.",
    )


class MonitorPolicy(_Strict):
    """Detection of inversion and extraction probing: per query, across every caller, and
    per principal. On by default."""

    enabled: bool = True
    on_detect: Literal["silent", "refuse"] = Field(
        default="silent",
        description="What a probing query gets: silent, the answer its cluster already got "
        "(no new information, and no refusal to learn from); refuse, 403 blocked.",
    )
    target_false_positive_rate: float = Field(
        default=1e-4,
        gt=0,
        lt=0.5,
        description="Benign queries per query that the calibrated checks may catch: half to "
        "the profile's distance limit, half to the shared view.",
    )
    view: ViewPolicy = ViewPolicy()
    window: int = Field(default=64, ge=8, le=4096, description="Recent queries kept per principal.")
    min_queries: int = Field(
        default=12, ge=1, description="Queries a principal makes before it can be escalated."
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
    distribution: Path | None = Field(
        default=None,
        description="A distribution reference (JSON, fitted with "
        "DistributionReference.fit on held-out natural rows the profile never saw; its "
        "limits follow target_false_positive_rate): turns on the test of whether a key's "
        "answered rows, alone and along the way all keys' rows together are off, are "
        "distributed like natural data. Off without one.",
    )
    thresholds: Thresholds = Thresholds()
    actions: Actions = Actions()
    block_seconds: int = Field(default=900, ge=1, description="Cool-down of a block.")
    max_principals: int = Field(default=100_000, ge=1, description="Principals kept in memory.")
    state_ttl: int = Field(default=86_400, ge=60, description="Seconds an idle principal is kept.")
