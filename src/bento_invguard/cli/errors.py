"""Exit codes of the invguard command, and the error that carries one."""

from __future__ import annotations

#: Success.
EXIT_OK = 0
#: The command ran, and what it checked failed or has problems.
EXIT_PROBLEMS = 1
#: Bad arguments, a missing or unreadable file, or a refusal (e.g. to overwrite).
EXIT_USAGE = 2


class CliError(Exception):
    """Stops a command: its message goes to stderr, its code is the exit status."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code
