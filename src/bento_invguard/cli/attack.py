"""``invguard attack URL --attack ...``: a black-box red-team run against a live endpoint."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from ..redteam.client import Oracle
from ..redteam.images import parse_image_shape
from ..redteam.progress import Progress
from ..redteam.reference import Reference
from ..redteam.report import render, write_image, write_json
from ..redteam.runner import ATTACKS, Plan, run
from ..redteam.strategies import STRATEGIES
from .errors import EXIT_OK, EXIT_PROBLEMS, CliError

KEY_ENV = "INVGUARD_ATTACK_KEY"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "attack",
        help="red-team a live endpoint: inversion, label-only inversion or extraction",
        description=(
            "Attack URL (POST {FIELD: [[...], ...]}) with only the answers it gives, and "
            "report the queries sent and refused, when the key was rate limited, degraded "
            "to labels or blocked, and a leakage score judged by a model trained on "
            "--reference (x/y rows disjoint from the model's training data) that the "
            "attacker never queried; for extraction, the copy's gain in agreement over a "
            "copy of the attacker's own labelled rows. Exit codes: 0 the attack ran, 1 the "
            "endpoint never answered or the leakage passed --fail-above, 2 bad arguments "
            "or files. "
            "Attack only services you are allowed to test."
        ),
    )
    parser.add_argument(
        "url", metavar="URL", help="the endpoint, e.g. http://127.0.0.1:3000/predict"
    )
    parser.add_argument(
        "--key", default=None, help=f"API key, sent as a Bearer token (default: ${KEY_ENV})"
    )
    parser.add_argument("--attack", required=True, choices=ATTACKS, help="which attack")
    parser.add_argument(
        "--budget", type=int, default=2000, help="rows (queries) to send at most (default: 2000)"
    )
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="natural",
        help="extraction: where the queries come from: natural public rows, uniform draws, "
        "blends of public rows, Jacobian augmentation, out-of-domain photographs "
        "(default: natural)",
    )
    parser.add_argument(
        "--target-class", type=int, default=None, help="invert this class only (default: all)"
    )
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        help=".npz with x (rows) and y (labels): public data, not the model's training data; "
        "trains the judge and gives the attacker's pool",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for ATTACK.json and ATTACK.png"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--field", default="x", help="input field of the request (default: x)")
    parser.add_argument(
        "--shape", default=None, help="per-row input shape, e.g. 64 or 8,8 (default: reference's)"
    )
    parser.add_argument("--min", type=float, default=None, help="lowest valid input value")
    parser.add_argument("--max", type=float, default=None, help="highest valid input value")
    parser.add_argument(
        "--image", default=None, metavar="HxW", help="inputs are HxW images: write a PNG grid"
    )
    parser.add_argument("--batch", type=int, default=20, help="rows per request (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--scores-field", default=None, help="field of a JSON object answer holding the scores"
    )
    parser.add_argument(
        "--eval-key",
        default=None,
        help="extraction: key that labels the held-out rows (default: --key)",
    )
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per request (default: 10)"
    )
    parser.add_argument(
        "--max-wait",
        type=float,
        default=5.0,
        help="longest Retry-After to wait out; longer stops the run (default: 5)",
    )
    parser.add_argument(
        "--max-wait-total",
        type=float,
        default=60.0,
        help="seconds of rate-limit waiting in all (default: 60)",
    )
    parser.add_argument(
        "--fail-above",
        type=float,
        default=None,
        help="exit 1 when the leakage score (extraction: the gain) is above this (0..1), "
        "e.g. for CI",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run_attack)


def run_attack(args: argparse.Namespace) -> int:
    reference = _reference(args.reference)
    plan = _plan(args, reference)
    image_shape = _image_shape(args.image, plan, reference)
    out = _out_dir(args.out)
    bar = Progress(plan.budget, enabled=False if args.quiet else None)

    def progress(oracle: Oracle) -> None:
        s = oracle.stats
        note = f"answered {s.answered}, refused {sum(s.rejected.values())}"
        if s.rejected["rate_limited"]:
            note += f" ({s.rejected['rate_limited']} rate limited, sent again)"
        if oracle.stopped is not None:
            note += f", stopped: {oracle.stopped.reason}"
        bar.update(oracle.spent, note, force=oracle.stopped is not None)

    try:
        report, result = run(plan, reference, on_exchange=progress)
    finally:
        bar.close()
    if out is not None:
        if image_shape is not None and result.reconstructions is not None:
            path = out / f"{plan.attack}.png"
            write_image(
                path, result.reconstructions, shape=image_shape, low=plan.low, high=plan.high
            )
            report["image"] = str(path)
        report_file = out / f"{plan.attack}.json"  # beside {attack}.png: one per attack
        report["report_file"] = str(report_file)
        write_json(report_file, report)
    print(json.dumps(report, indent=1) if args.json else render(report))
    return _exit_code(report, args.fail_above)


def _exit_code(report: dict[str, Any], fail_above: float | None) -> int:
    if report["queries"]["answered"] == 0:
        # Whatever stopped the run (refusals, 400s of a wrong --field, a server error,
        # the budget spent on refused rows), nothing was learnt: not a "no leak".
        detail = report.get("stop_detail") or ""
        rejected = report["queries"].get("rejected") or {}
        refused = ", ".join(f"{reason} x{rows}" for reason, rows in rejected.items())
        print(
            f"invguard attack: error: the endpoint never answered: {report['stopped']}"
            + (f" ({detail})" if detail else "")
            + (f"; rows refused: {refused}" if refused else ""),
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    leakage = report.get("leakage")
    if fail_above is not None and leakage is not None and leakage["score"] > fail_above:
        return EXIT_PROBLEMS
    return EXIT_OK


def _reference(path: Path | None) -> Reference | None:
    if path is None:
        return None
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    try:
        return Reference.load(path)
    except (ValueError, OSError) as exc:
        raise CliError(f"{path}: {exc}") from None


def _plan(args: argparse.Namespace, reference: Reference | None) -> Plan:
    if not args.url.startswith(("http://", "https://")):
        raise CliError(f"{args.url!r} is not an http:// or https:// URL")
    try:
        host = httpx.URL(args.url).host
    except httpx.InvalidURL as exc:
        raise CliError(f"{args.url!r} is not a valid URL: {exc}") from None
    if not host:
        raise CliError(f"{args.url!r} has no host")
    if args.budget < 1:
        raise CliError("--budget must be >= 1")
    if not 1 <= args.batch <= 1024:
        raise CliError("--batch must be between 1 and 1024")
    if args.target_class is not None and args.target_class < 0:
        raise CliError("--target-class must be >= 0")
    if args.target_class is not None and args.attack == "extraction":
        raise CliError("--target-class applies to inversion and label-only only")
    if args.strategy != "natural" and args.attack != "extraction":
        raise CliError("--strategy applies to extraction only")
    if args.strategy == "blend" and reference is None:
        raise CliError("--strategy blend needs --reference (the public rows it blends)")
    if (
        reference is not None
        and args.target_class is not None
        and args.target_class > int(reference.y.max())
    ):
        raise CliError(f"--target-class {args.target_class}: the reference has no such class")
    for name in ("timeout", "max_wait", "max_wait_total"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value >= 0) or (name == "timeout" and value == 0):
            raise CliError(f"--{name.replace('_', '-')} must be a positive number")
    if args.fail_above is not None and not 0 <= args.fail_above <= 1:
        raise CliError("--fail-above must be between 0 and 1")
    shape = _shape(args.shape, reference)
    low, high = _range(args.min, args.max, reference)
    key = args.key if args.key is not None else os.environ.get(KEY_ENV)
    return Plan(
        attack=args.attack,
        url=args.url,
        key=key or None,
        budget=args.budget,
        targets=(args.target_class,) if args.target_class is not None else None,
        field=args.field,
        shape=shape,
        low=low,
        high=high,
        batch=args.batch,
        seed=args.seed,
        scores_field=args.scores_field,
        timeout=args.timeout,
        max_wait=args.max_wait,
        max_wait_total=args.max_wait_total,
        eval_key=args.eval_key,
        strategy=args.strategy,
    )


def _shape(text: str | None, reference: Reference | None) -> tuple[int, ...]:
    if text is None:
        if reference is None:
            raise CliError("--shape is needed without --reference (e.g. --shape 64)")
        return (reference.x.shape[1],)
    try:
        shape = tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError:
        raise CliError(f"--shape {text!r}: expected integers such as 64 or 8,8") from None
    if not shape or any(d < 1 for d in shape):
        raise CliError(f"--shape {text!r}: every dimension must be >= 1")
    if reference is not None and int(np.prod(shape)) != reference.x.shape[1]:
        raise CliError(
            f"--shape {text} has {int(np.prod(shape))} values per row; "
            f"the reference rows have {reference.x.shape[1]}"
        )
    return shape


def _range(
    low: float | None, high: float | None, reference: Reference | None
) -> tuple[float, float]:
    if reference is not None:
        low = float(reference.x.min()) if low is None else low
        high = float(reference.x.max()) if high is None else high
    if low is None or high is None:
        raise CliError("--min and --max are needed without --reference")
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high:
        raise CliError(f"--min ({low}) must be a number below --max ({high})")
    return low, high


def _image_shape(
    text: str | None, plan: Plan, reference: Reference | None
) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        shape = parse_image_shape(text)
    except ValueError as exc:
        raise CliError(f"--image: {exc}") from None
    features = reference.x.shape[1] if reference is not None else int(np.prod(plan.shape))
    if shape[0] * shape[1] != features:
        raise CliError(f"--image {text} has {shape[0] * shape[1]} pixels; rows have {features}")
    return shape


def _out_dir(path: Path | None) -> Path | None:
    if path is None:
        return None
    if path.exists() and not path.is_dir():
        raise CliError(f"--out {path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"--out {path}: cannot create: {exc.strerror}") from None
    return path
