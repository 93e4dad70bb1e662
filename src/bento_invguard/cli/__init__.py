"""The ``invguard`` command: init, keygen, check, profile fit, audit."""

from .main import main

__all__ = ["main"]
