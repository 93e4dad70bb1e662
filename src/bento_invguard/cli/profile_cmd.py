"""``invguard profile fit DATA -o PROFILE.json``: a reference profile from training data."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..reference import Profile
from .errors import EXIT_OK, CliError


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "profile",
        help="reference profiles of the training data",
        description="Reference profiles: per-feature bounds and a distance to the data, "
        "fitted on training data.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    fit = actions.add_parser(
        "fit",
        help="fit a profile on a .npy or .csv file of training rows",
        description=(
            "Fit bento_invguard.Profile on DATA, a .npy array (loaded without pickle) or a "
            "comma-separated .csv file (an optional header row is skipped), of shape "
            "(n_samples, *feature_shape), and save it as JSON."
        ),
    )
    fit.add_argument("data", type=Path, help="training rows: .npy or .csv")
    fit.add_argument("-o", "--output", required=True, type=Path, help="profile JSON to write")
    fit.add_argument(
        "--margin",
        type=float,
        default=0.05,
        help="widen each feature's bounds by this share of its spread (default: 0.05)",
    )
    fit.add_argument(
        "--max-outside",
        type=int,
        default=None,
        help="features a row may have outside the bounds and pass "
        "(default: learned from a 20%% holdout)",
    )
    fit.add_argument(
        "--components",
        type=int,
        default=None,
        help="principal components of the distance check (default: as many as explain 90%% "
        "of the variance)",
    )
    fit.add_argument(
        "--no-distance",
        action="store_true",
        help="bounds only: no check of a row's distance to the data",
    )
    fit.add_argument(
        "--target-fpr",
        type=float,
        default=1e-4,
        help="benign false positives per query the checks may make, as the policy's "
        "monitor.target_false_positive_rate (default: 1e-4): half to the distance limit, "
        "half to the shared view",
    )
    fit.add_argument(
        "--view-size",
        type=int,
        default=100_000,
        help="queries the shared view keeps, as the policy's monitor.view.size (default: 100000)",
    )
    fit.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if not args.margin >= 0:  # also refuses nan
        raise CliError("--margin must be a number >= 0")
    if args.max_outside is not None and args.max_outside < 0:
        raise CliError("--max-outside must be >= 0")
    if args.components is not None and args.components < 1:
        raise CliError("--components must be >= 1")
    if not 0 < args.target_fpr < 0.5:
        raise CliError("--target-fpr must be between 0 and 0.5")
    if args.view_size < 64:
        raise CliError("--view-size must be >= 64")
    data = load_rows(args.data)
    try:
        profile = Profile.fit(
            data,
            margin=args.margin,
            max_outside=args.max_outside,
            distance=not args.no_distance,
            n_components=args.components,
            target_false_positive_rate=args.target_fpr / 2,
        )
    except ValueError as exc:
        raise CliError(f"{args.data}: {exc}") from None
    try:
        profile.save(args.output)
    except OSError as exc:
        raise CliError(f"{args.output}: cannot write: {exc.strerror}") from None
    distance = (
        f"distance limit {profile.distance_limit:.2f} over {len(profile.components)} components"
        if profile.distance_limit is not None and profile.components is not None
        else "no distance check"
    )
    print(
        f"fitted on {profile.n_samples} rows of shape {tuple(profile.feature_shape)}, "
        f"max_outside {profile.max_outside}, {distance}; saved to {args.output}"
    )
    for line in expected_rates(profile, args.target_fpr, args.view_size):
        print(line)
    return EXIT_OK


def expected_rates(profile: Profile, target: float, view_size: int) -> list[str]:
    """What the calibrated checks are expected to catch of natural queries, and what the
    held-out reference rows showed."""
    calibration = profile.calibration
    if calibration is None:
        return ["no calibration: too few rows to hold some out"]
    lines = [f"expected false positives per query, for a target of {target:g}:"]
    tail = calibration.distance
    if tail is not None and profile.distance_limit is not None:
        above = tail.held_out_above(profile.distance_limit)
        lines.append(
            f"  distance limit {profile.distance_limit:.2f}: {target / 2:g} "
            f"({above} of {tail.rows} held-out rows beyond it)"
        )
    neighbours = calibration.neighbours
    if neighbours is not None:
        found = neighbours.thresholds(target / 2, view_size)
        within = neighbours.held_out_within(found)
        lines.append(
            f"  shared view of {view_size} queries: radius {found.radius:.3g}, cluster size "
            f"{found.cluster_size}: {target / 2:g} ({within} of {neighbours.holdout_rows} "
            f"held-out rows with {found.cluster_size} neighbours within it)"
        )
    return lines


def load_rows(path: Path) -> np.ndarray:
    """Training rows from a .npy (never unpickled) or a .csv file."""
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".csv"):
        raise CliError(f"{path}: expected a .npy or .csv file")
    try:
        if suffix == ".npy":
            data = np.load(path, allow_pickle=False)
        else:
            data = np.loadtxt(path, delimiter=",", ndmin=2, skiprows=_header_rows(path))
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc}") from None
    except ValueError as exc:
        raise CliError(f"{path}: cannot load: {exc}") from None
    if not isinstance(data, np.ndarray) or data.dtype.kind not in "fiu":
        raise CliError(f"{path}: expected a numeric array, got {getattr(data, 'dtype', data)}")
    return data


def _header_rows(path: Path) -> int:
    """1 if the first line of a CSV holds a name rather than a number."""
    with path.open(encoding="utf-8") as stream:
        first = stream.readline()
    for field in first.split(","):
        try:
            float(field)
        except ValueError:
            return 1
    return 0
