"""A black-box oracle over HTTP: send rows with a key, keep a record of every answer.

The :class:`Oracle` posts ``{field: rows}`` to one endpoint and returns the
answers as an ``(n, classes)`` array. It records every exchange (status,
reason, ``Retry-After``) and the moments a defence showed itself: the row at
which the key was first rate limited, degraded (soft scores turned into
one-hot labels) or blocked. It stops the attack (:class:`Stopped`) when the
key is blocked or refused, when its row budget is spent, or when the service
asks it to wait longer than it is willing to; a request refused on its own
(e.g. ``invalid_input``) raises :class:`Rejected` and the attack may go on.

Rows are counted as *queries*: a request of 20 rows is 20 queries, as the
guard counts them for rate limits and the monitor. "At row N" means the
N-th row sent, the refused request's rows included. The budget caps the
rows answered or refused; rows refused with 429 ``rate_limited`` (sent
again after ``Retry-After``) are counted as sent but not against the budget,
so a rate limit slows an attack down rather than shrinking it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np

from .exchange import (
    FATAL_REASONS,
    Exchange,
    OracleStats,
    Rejected,
    Stopped,
    one_hot_rows,
    reason_of,
    retry_after_seconds,
)

__all__ = ["Exchange", "Oracle", "OracleStats", "Rejected", "Stopped", "one_hot_rows"]

#: One-hot streak lengths (rows) at which the oracle re-asks its canary row.
_CANARY_CHECKS = (8, 32, 128, 512)
#: Seconds each rate-limit retry counts (and waits) at least, whatever ``Retry-After`` says.
_MIN_WAIT = 0.1
#: Rate-limit retries of one request before the oracle stops.
_MAX_RETRIES = 20


class Oracle:
    """The endpoint as an attacker sees it: ``ask(rows) -> answers``, within a row budget.

    ``client`` is any ``httpx.Client`` (tests pass one with a mock transport);
    by default one is created for ``url`` and closed by :meth:`close`.
    Rate limits: a 429 whose ``Retry-After`` is at most ``max_wait`` seconds
    (and keeps the total under ``max_wait_total``) is waited out and the
    request sent again; the refused rows still count as sent. Each wait is
    at least 0.1 s, and one request is sent at most 21 times.
    """

    def __init__(
        self,
        url: str,
        *,
        key: str | None = None,
        budget: int,
        field: str = "x",
        shape: tuple[int, ...] = (),
        scores_field: str | None = None,
        client: httpx.Client | None = None,
        timeout: float = 10.0,
        max_wait: float = 5.0,
        max_wait_total: float = 60.0,
        on_exchange: Callable[[Oracle], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if budget < 0:
            raise ValueError("budget must be >= 0")
        self.url = url
        self.budget = budget
        self.field = field
        self.shape = tuple(shape)
        self.scores_field = scores_field
        self.max_wait = max_wait
        self.max_wait_total = max_wait_total
        self.on_exchange = on_exchange
        self._sleep = sleep
        self._own_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout)
        self._headers = {"content-type": "application/json"}
        if key:
            self._headers["authorization"] = f"Bearer {key}"
        self.stats = OracleStats()
        self.log: list[Exchange] = []
        self.classes: int | None = None
        self.stopped: Stopped | None = None
        self._canary: np.ndarray | None = None  # a row once answered with soft scores
        self._streak_start: int | None = None
        self._streak = 0
        self._checks_done = 0

    # ------------------------------------------------------------------ public

    @property
    def spent(self) -> int:
        """Rows counted against the budget: sent, except those refused as rate limited."""
        return self.stats.sent - self.stats.rejected["rate_limited"]

    @property
    def remaining(self) -> int:
        """Rows the budget still allows."""
        return max(0, self.budget - self.spent)

    def ask(self, rows: np.ndarray) -> np.ndarray:
        """Answers ``(n, classes)`` for ``rows`` ``(n, features)``.

        Raises :class:`Stopped` (budget, block, refusal, unreachable) or
        :class:`Rejected` (this request only).
        """
        if self.stopped is not None:
            raise self.stopped
        rows = np.asarray(rows, dtype=np.float64)
        rows = rows.reshape(len(rows), -1)
        if len(rows) == 0:
            raise ValueError("no rows to send")
        answers = self._send_waiting(rows)
        self._note_answers(rows, answers)
        return answers

    def close(self) -> None:
        """Close the HTTP client if the oracle created it."""
        if self._own_client:
            self._client.close()

    def __enter__(self) -> Oracle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sending

    def _send_waiting(self, rows: np.ndarray) -> np.ndarray:
        refused = 0
        while True:
            try:
                return self._send(rows)
            except Rejected as refusal:
                if refusal.reason != "rate_limited":
                    raise
                refused += 1
                wait = self.log[-1].retry_after
                if wait is None or wait > self.max_wait:
                    raise self._halt(Stopped("rate_limited", f"asked to wait {wait} s")) from None
                if refused > _MAX_RETRIES:
                    raise self._halt(
                        Stopped("rate_limited", f"refused {refused} times in a row")
                    ) from None
                # Retry-After: 0 must not retry for free: each retry counts (and waits)
                # at least _MIN_WAIT, so max_wait_total bounds the retries too.
                wait = max(wait, _MIN_WAIT)
                if self.stats.waited_s + wait > self.max_wait_total:
                    raise self._halt(Stopped("rate_limited", "waited too long in total")) from None
                self.stats.waited_s += wait
                self._sleep(wait)

    def _send(self, rows: np.ndarray, *, canary: bool = False) -> np.ndarray:
        n = len(rows)
        if n > self.remaining:
            raise self._halt(Stopped("budget", f"{self.spent} of {self.budget} rows spent"))
        first = self.stats.sent + 1
        payload = rows.reshape((n, *self.shape)) if self.shape else rows
        body = {self.field: payload.tolist()}
        self.stats.sent += n
        self.stats.requests += 1
        try:
            response = self._client.post(
                self.url, content=json.dumps(body, allow_nan=False), headers=self._headers
            )
        except httpx.TransportError as exc:
            self._record(Exchange(first, n, 0, "unreachable", detail=str(exc), canary=canary))
            raise self._halt(Stopped("unreachable", f"{type(exc).__name__}: {exc}")) from None
        if response.status_code == 200:
            answers = self._parse(response, n)
            self._record(Exchange(first, n, 200, "ok", canary=canary))
            self.stats.answered += n
            return answers
        reason, detail = reason_of(response)
        retry_after = retry_after_seconds(response.headers.get("retry-after"))
        # The counts first: whoever watches the exchange (a progress bar) reads them.
        self.stats.rejected[reason] += n
        at = self.stats.sent  # the refused request's rows included
        if reason == "rate_limited" and self.stats.first_rate_limited_at is None:
            self.stats.first_rate_limited_at = at
        if reason == "blocked" and self.stats.blocked_at is None:
            self.stats.blocked_at = at
        self._record(Exchange(first, n, response.status_code, reason, retry_after, detail, canary))
        if reason in FATAL_REASONS:
            raise self._halt(Stopped(reason, detail))
        raise Rejected(reason, detail)

    def _parse(self, response: httpx.Response, n: int) -> np.ndarray:
        try:
            data: Any = response.json()
            if self.scores_field is not None:
                data = data[self.scores_field]
            answers = np.asarray(data, dtype=np.float64)
        except (ValueError, KeyError, TypeError) as exc:
            raise self._halt(
                Stopped("unexpected_answer", f"cannot read the answer: {exc}")
            ) from None
        if answers.ndim == 1 and n == 1:
            answers = answers[np.newaxis]
        if answers.ndim != 2 or len(answers) != n or answers.shape[1] < 2:
            raise self._halt(
                Stopped(
                    "unexpected_answer",
                    f"expected scores of shape ({n}, classes), got {answers.shape}",
                )
            )
        if self.classes is None:
            self.classes = int(answers.shape[1])
        return answers

    def _record(self, exchange: Exchange) -> None:
        self.log.append(exchange)
        if self.on_exchange is not None:
            self.on_exchange(self)

    def _halt(self, stop: Stopped) -> Stopped:
        """Remember the first reason to stop; every later ask raises it again."""
        if self.stopped is None:
            self.stopped = stop
        return self.stopped

    # ------------------------------------------------------------------ degrade

    def _note_answers(self, rows: np.ndarray, answers: np.ndarray) -> None:
        """Count soft and one-hot rows; confirm a switch to labels with a canary row.

        A row that once got soft scores is asked again when one-hot answers
        pile up after soft ones: answers are deterministic, so a one-hot
        answer to the same row means the service degraded this key.
        """
        hot = one_hot_rows(answers)
        self.stats.one_hot_rows += int(hot.sum())
        self.stats.soft_rows += int((~hot).sum())
        if (~hot).any():
            if self._canary is None:
                i = int(np.flatnonzero(~hot)[0])
                self._canary = rows[i : i + 1].copy()
            self._streak, self._streak_start = 0, None
            last_soft = int(np.flatnonzero(~hot)[-1])
            tail = len(hot) - 1 - last_soft
            if tail:
                self._streak = tail
                self._streak_start = self.stats.sent - tail + 1
            return
        if self._canary is None or self.stats.degraded_at is not None:
            return
        if self._streak_start is None:
            self._streak_start = self.stats.sent - len(hot) + 1
        self._streak += len(hot)
        due = _CANARY_CHECKS[min(self._checks_done, len(_CANARY_CHECKS) - 1)]
        if self._streak >= due and self._checks_done < len(_CANARY_CHECKS):
            self._checks_done += 1
            self._check_canary()

    def _check_canary(self) -> None:
        """Re-ask the canary row (one query); a refusal here only ends the check.

        A block or another stop is remembered by the oracle and raised by the
        next ``ask``: the answers of the current request are still returned.
        """
        if self._canary is None or self.remaining < 1:
            return
        try:
            answer = self._send(self._canary, canary=True)
        except (Rejected, Stopped):
            return
        if bool(one_hot_rows(answer)[0]):
            self.stats.degraded_at = self._streak_start
