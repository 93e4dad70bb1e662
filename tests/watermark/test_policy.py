"""The tier's watermark section: validated, off by default, secrets from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from bento_invguard import Policy
from bento_invguard.errors import GuardConfigError, PolicyError
from bento_invguard.policy import policy_from_mapping
from bento_invguard.watermark import Watermarks, evidence_path, expand_secret, watermark_hook


def tiers(watermark: object) -> dict[str, object]:
    return {"tiers": {"public": {"output": "label", "watermark": watermark}}}


def test_off_by_default() -> None:
    """A policy without a watermark section gives no hook at all."""
    policy = Policy(tiers={"public": {}})
    assert policy.tiers["public"].watermark is None
    assert watermark_hook(policy) is None


@pytest.mark.parametrize(
    ("watermark", "field"),
    [
        ({"rate": 0, "secret": "s"}, "rate"),
        ({"rate": 0.06, "secret": "s"}, "rate"),
        ({"rate": 0.005, "secret": "  "}, "secret"),
        ({"rate": 0.005}, "secret"),
        ({"rate": 0.005, "secret": "s", "colour": "red"}, "colour"),
    ],
)
def test_bad_sections_fail_naming_the_field(watermark: dict[str, object], field: str) -> None:
    """rate must be in (0, 0.05], the secret non-empty; the message names the field."""
    with pytest.raises(PolicyError, match=rf"tiers\.public\.watermark\.{field}"):
        policy_from_mapping(tiers(watermark))


def test_secret_comes_from_the_environment_and_never_shows() -> None:
    """${VAR} is expanded at startup; an unset variable fails naming the tier."""
    policy = policy_from_mapping(tiers({"rate": 0.005, "secret": "${WM_SECRET}"}))
    assert "WM_SECRET" not in repr(policy.tiers["public"])
    assert b"xyz" == expand_secret("${WM_SECRET}", "public", {"WM_SECRET": "xyz"})
    with pytest.raises(GuardConfigError, match=r"tiers\.public\.watermark\.secret.*WM_SECRET"):
        Watermarks.from_policy(policy, environ={})
    with pytest.raises(GuardConfigError, match="empty"):
        expand_secret("${WM_SECRET}", "public", {"WM_SECRET": ""})
    marks = Watermarks.from_policy(policy, environ={"WM_SECRET": "xyz"})
    assert marks is not None and {"public"} == set(marks.by_tier)


def test_evidence_path_fills_tier_and_worker(tmp_path: Path) -> None:
    """Relative paths resolve beside the policy; {tier} and {worker} are filled in."""
    policy = policy_from_mapping(
        tiers({"rate": 0.01, "secret": "s", "evidence": "wm/{tier}.{worker}.jsonl"})
    )
    spec = policy.tiers["public"].watermark
    assert spec is not None
    assert tmp_path / "wm" / "public.0.jsonl" == evidence_path(spec, "public", tmp_path)
