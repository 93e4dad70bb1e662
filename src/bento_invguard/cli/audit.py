"""``invguard audit TARGET``: the ML03 controls of every API, what is missing, the risk."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .audit_controls import Control, controls
from .audit_findings import Finding, findings
from .audit_risk import RiskSummary, risk_summary
from .audit_target import AuditedApi, AuditTarget, load_target
from .errors import EXIT_OK, EXIT_PROBLEMS, CliError


@dataclass(frozen=True)
class AuditReport:
    target: AuditTarget
    controls: dict[str, list[Control]]  # API name -> its controls
    findings: list[Finding]
    risk: RiskSummary

    @property
    def has_high(self) -> bool:
        return any(f.severity == "high" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data: what ``--json`` prints."""
        return {
            "target": {"kind": self.target.kind, "name": self.target.name},
            "apis": [_api_dict(api, self.controls[api.name]) for api in self.target.apis],
            "findings": [asdict(f) for f in self.findings],
            "risk": {
                "exploitability": asdict(self.risk.exploitability),
                "detectability": asdict(self.risk.detectability),
                "technical_impact": asdict(self.risk.technical_impact),
                "overall": self.risk.overall,
            },
            "not_audited": [f"dependency service {d}" for d in self.target.dependencies],
        }


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "audit",
        help="report the ML03 controls of a service, bento or policy, and what is missing",
        description=(
            "For each API of TARGET: which OWASP ML03 controls are on (access control, "
            "input validation, output truncation, rate limits, monitoring), findings of "
            "what is missing, and a risk rating. TARGET is a service import string "
            "(service:MyService), a bento tag or folder, or a policy file (.yaml, .yml, "
            ".json). Exits 1 if there is a high-severity finding."
        ),
    )
    parser.add_argument("target", help="service:Class, bento tag, bento folder or policy file")
    parser.add_argument(
        "--working-dir",
        type=Path,
        default=Path("."),
        help="folder to import the service from (default: the current folder)",
    )
    parser.add_argument(
        "--classes",
        type=int,
        default=None,
        help="how many classes the model scores: a top_k tier with k at or above it "
        "shows every score and is reported so",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.classes is not None and args.classes < 2:
        raise CliError(f"--classes: {args.classes}; a classifier has at least 2 classes")
    report = audit(load_target(args.target, args.working_dir.resolve()), classes=args.classes)
    print(json.dumps(report.to_dict(), indent=2) if args.json else render_text(report))
    return EXIT_PROBLEMS if report.has_high else EXIT_OK


def audit(target: AuditTarget, classes: int | None = None) -> AuditReport:
    return AuditReport(
        target=target,
        controls={api.name: controls(api) for api in target.apis},
        findings=findings(target.apis, classes),
        risk=risk_summary(target.apis),
    )


def render_text(report: AuditReport) -> str:
    target = report.target
    lines = [f"invguard audit: {target.kind} {target.name}"]
    for api in target.apis:
        lines += ["", f"API {api.name}  ({api.route}; guarded by {api.guarded_by})"]
        lines += [
            f"  {c.name:<18} {c.status:<15} {c.detail}".rstrip() for c in report.controls[api.name]
        ]
    lines += ["", "Findings"]
    lines += [
        f"  {f.severity.upper():<9} [{', '.join(f.apis)}] {f.control}: {f.message}"
        for f in report.findings
    ] or ["  none"]
    lines += ["", "Risk (OWASP ML03 factors)"]
    risk = report.risk
    for factor, rating in (
        ("exploitability", risk.exploitability),
        ("detectability", risk.detectability),
        ("technical impact", risk.technical_impact),
    ):
        lines.append(f"  {factor:<17} {rating.level:<9} {rating.reason}")
    lines.append(f"  {'overall':<17} {risk.overall}")
    lines += [f"note: dependency service {d} is not audited" for d in target.dependencies]
    return "\n".join(lines)


def _api_dict(api: AuditedApi, api_controls: list[Control]) -> dict[str, Any]:
    return {
        "name": api.name,
        "route": api.route,
        "guarded_by": api.guarded_by,
        "controls": {
            c.name.replace(" ", "_"): {"status": c.status, "detail": c.detail} for c in api_controls
        },
    }
