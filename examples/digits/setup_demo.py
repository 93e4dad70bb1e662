"""Prepare `make demo`: train the model if needed, make one demo key per tier and an admin key.

Demo keys live in .demo-keys (git-ignored, readable by you only); the policy
only ever sees their digests, written to keys.yaml.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from train import main as train_main  # noqa: E402

from bento_invguard import generate_key, hash_key  # noqa: E402

TIERS = ("public", "partner", "trusted")
ADMIN = "admin"  # the admin key lists and clears monitor blocks; it calls no model API
RAW_KEYS = HERE / ".demo-keys"
KEY_FILE = HERE / "keys.yaml"
SAMPLE = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0,
          0, 4, 12, 0, 0, 8, 8, 0, 0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0,
          0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]  # fmt: skip


def demo_keys() -> dict[str, str]:
    """One raw key per tier and one admin key, made once and kept in .demo-keys."""
    keys: dict[str, str] = {}
    if RAW_KEYS.exists():
        keys = dict(json.loads(RAW_KEYS.read_text()))
        if all(name in keys for name in (*TIERS, ADMIN)):
            return keys
    keys = {name: keys.get(name) or generate_key() for name in (*TIERS, ADMIN)}
    RAW_KEYS.write_text(json.dumps(keys))
    os.chmod(RAW_KEYS, 0o600)
    return keys


def main() -> None:
    sys.argv = sys.argv[:1]
    train_main()
    keys = demo_keys()
    entries = [
        {"id": f"demo-{tier}", "sha256": hash_key(keys[tier]), "tier": tier} for tier in TIERS
    ]
    admin = [{"id": "demo-admin", "sha256": hash_key(keys[ADMIN])}]
    KEY_FILE.write_text(yaml.safe_dump({"keys": entries, "admin_keys": admin}, sort_keys=False))
    port = os.environ.get("PORT", "3000")
    body = json.dumps({"x": [SAMPLE]})
    print("\nDemo keys (stored as digests in examples/digits/keys.yaml):")
    for tier in TIERS:
        key = keys[tier]
        print(f"\n  {tier}:  {key}")
        print(
            f"  curl -s -X POST http://127.0.0.1:{port}/predict "
            f"-H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d '{body}'"
        )
    print(f"\n  no key:  curl -s -X POST http://127.0.0.1:{port}/predict -d '{body}'")
    print(f"\n  admin (list and clear monitor blocks):  {keys[ADMIN]}")
    print(
        f"  curl -s http://127.0.0.1:{port}/invguard/admin/blocks "
        f"-H 'Authorization: Bearer {keys[ADMIN]}'"
    )
    print(
        f"  curl -s -X DELETE http://127.0.0.1:{port}/invguard/admin/blocks/<principal> "
        f"-H 'Authorization: Bearer {keys[ADMIN]}'\n"
    )


if __name__ == "__main__":
    main()
