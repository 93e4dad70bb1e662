"""Policies that travel inside a BentoML model: attach, then load with digest checks."""

from .attach import Attachment, attach
from .load import load_attached_policy
from .manifest import ATTACH_DIR, MANIFEST_FILE, METADATA_KEY, POLICY_FILE, PROFILE_FILE, Manifest

__all__ = [
    "ATTACH_DIR",
    "MANIFEST_FILE",
    "METADATA_KEY",
    "POLICY_FILE",
    "PROFILE_FILE",
    "Attachment",
    "Manifest",
    "attach",
    "load_attached_policy",
]
