"""The one retry policy of every storage call (tenacity does the looping).

The rule: at least `attempts` tries; after that, keep trying while the first failure is
younger than `budget_s` (the spec's policies.storage_retry_s); delays double from
`first_delay_s` up to `max_delay_s` (8 s), each scaled by a random 0.5-1.5 so parallel
requests do not retry in step. A refusal (an error whose `transient` is False: not found,
access denied) gets `attempts` tries only: waiting will not change it.

Under a throttling account (docs/scale.md, "What node_agent should change", change 1) two
refinements keep one unlucky request from failing a job prep while the account serves the
herd at its full rate: with a shared `Liveness` (one per fetch), the budget runs from the
later of the request's first failure and the last success of any request sharing it; and a
`throttled` error (503 ServerBusy, 429) gets `THROTTLED_FACTOR` x the budget. Outage
detection is unchanged: no answer, or other 5xx with nothing getting through, fails after
the budget.

No retry is nested in another: the Azure SDK clients made by storage.blob run with
`retry_total=0`, since every BlobStore method and every upload is wrapped by this policy;
the REST path (storage.rest) uses urllib3 with `retries=False` under this policy too.
Changing how storage calls are retried is a change here (and only here).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol, TypeVar

from node_agent.errors import StorageError

if TYPE_CHECKING:
    import tenacity

T = TypeVar("T")
DEFAULT_BUDGET_S = 60.0  # policies.storage_retry_s when there is no spec (sync CLI)
# A 503 ServerBusy or 429 means the account is up and over a scalability target ("Operations
# per second is over the account limit.", "Egress is over the account limit."); Azure's
# advice is to back off and retry, not to give up
# (https://learn.microsoft.com/en-us/azure/storage/common/scalability-targets-standard-account,
# https://learn.microsoft.com/en-us/rest/api/storageservices/common-rest-api-error-codes).
# bench/bench_scale.py: with the plain budget 16 of 32 job preps failed while the account
# served its full rate; with this factor and Liveness, 32 of 32 (docs/scale.md).
THROTTLED_FACTOR = 10.0


class _HasBudget(Protocol):
    @property
    def storage_retry_s(self) -> float: ...


def is_transient(err: BaseException) -> bool:
    """Worth retrying for the whole budget (unreachable, throttled, 5xx); errors without a
    `transient` flag count as transient."""
    return bool(getattr(err, "transient", True))


def is_throttled(err: BaseException) -> bool:
    """The account's own throttling (see `throttled_answer`): its budget is 10x."""
    return bool(getattr(err, "throttled", False))


def throttled_answer(status: int | None, code: object) -> bool:
    """A 429, or a 503 whose x-ms-error-code is ServerBusy: storage is up and says slow
    down (a plain 503 or other 5xx may be an outage)."""
    code = getattr(code, "value", code)  # the SDK's StorageErrorCode is a str Enum
    return status == 429 or (status == 503 and code == "ServerBusy")


class Liveness:
    """When a request sharing it last succeeded (one per fetch, shared by its threads). A
    policy holding one measures a request's budget from the later of its first failure and
    that moment: while the fetch's other requests get through, one unlucky request keeps
    waiting; once nothing has got through for the budget, it gives up."""

    def __init__(self) -> None:
        self.last = float("-inf")  # a float store is atomic: no lock needed

    def ok(self) -> None:
        self.last = time.monotonic()


@dataclass(frozen=True)
class RetryPolicy:
    """At least `attempts` tries, and more while the first failure (or, with a `liveness`,
    the later of it and the last success sharing it) is younger than `budget_s` (the spec's
    policies.storage_retry_s; x10 for a throttled error), with doubling delays up to 8 s."""

    attempts: int = 4
    first_delay_s: float = 1.0
    budget_s: float = 0.0
    max_delay_s: float = 8.0
    jitter: bool = True
    liveness: Liveness | None = field(default=None, compare=False)
    throttled_factor: float = THROTTLED_FACTOR

    def within(self, seconds: float) -> RetryPolicy:
        """This policy with every budget, a throttled one included, ending within
        `seconds` (a phase's deadline: job release's log uploads)."""
        budget = max(0.0, min(self.budget_s, seconds))
        factor = min(self.throttled_factor, seconds / budget) if budget > 0 else 1.0
        return replace(self, budget_s=budget, throttled_factor=max(1.0, factor))

    def with_liveness(self) -> RetryPolicy:
        """This policy with a fresh Liveness, for the requests of one fetch."""
        return replace(self, liveness=Liveness())

    def once(self) -> RetryPolicy:
        """One try, no waiting (doctor's cheap probe)."""
        return replace(self, attempts=1, budget_s=0.0)

    def delay(self, attempt: int) -> float:
        """The wait after failed try number `attempt` (1-based)."""
        base = min(self.max_delay_s, self.first_delay_s * 2 ** min(attempt - 1, 16))
        return base * (0.5 + random.random()) if self.jitter else base

    def call(
        self,
        fn: Callable[[], T],
        *,
        retry_on: type[BaseException] | tuple[type[BaseException], ...] = StorageError,
        only_transient: bool = False,
        on_retry: Callable[[BaseException, int, float], None] | None = None,
        gave_up: Callable[[BaseException, int, float], BaseException] | None = None,
    ) -> T:
        """`fn()` under the policy. Exceptions of `retry_on` are retried (with
        `only_transient`, only those whose `transient` is true); others go through at once.
        When the tries are spent, `gave_up(last error, tries, seconds since the first
        failure)` is raised (default: the last error, saying how long it tried).
        `on_retry(error, tries so far, delay)` is called before each wait.

        The first try runs bare: a request that succeeds (nearly all of them) costs no
        tenacity machinery, not even its import; the first failure is handed to tenacity
        as its try number 1."""

        def retryable(e: BaseException) -> bool:
            return isinstance(e, retry_on) and (is_transient(e) or not only_transient)

        try:
            return self._ok(fn())
        except retry_on as e:
            if not retryable(e):
                raise
            first: list[BaseException] = [e]

        import tenacity

        def attempt() -> T:
            if first:
                raise first.pop()  # the bare try's failure, as tenacity's first try
            return self._ok(fn())

        budget = _Budget(self)

        def before_sleep(rs: tenacity.RetryCallState) -> None:
            if on_retry is not None and rs.outcome is not None and rs.next_action is not None:
                err = rs.outcome.exception()
                if err is not None:
                    on_retry(err, rs.attempt_number, rs.next_action.sleep)

        retrying = tenacity.Retrying(
            stop=budget.stop,
            wait=lambda rs: self.delay(rs.attempt_number),
            retry=tenacity.retry_if_exception(retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except retry_on as e:
            if not budget.stopped:  # not retried at all: as it was raised
                raise
            raise (gave_up or _spent)(e, budget.tries, budget.waited()) from None

    def _ok(self, result: T) -> T:
        if self.liveness is not None:
            self.liveness.ok()
        return result


class _Budget:
    """tenacity's stop condition for one call: it is asked right after each retryable
    failure, so its first call marks the first failure."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.first: float | None = None
        self.tries = 0
        self.stopped = False

    def waited(self) -> float:
        return 0.0 if self.first is None else time.monotonic() - self.first

    def stop(self, rs: tenacity.RetryCallState) -> bool:
        now = time.monotonic()
        self.first = now if self.first is None else self.first
        self.tries = rs.attempt_number
        err = rs.outcome.exception() if rs.outcome is not None else None
        budget = self.policy.budget_s if err is not None and is_transient(err) else 0.0
        if err is not None and is_throttled(err):
            budget *= self.policy.throttled_factor
        since = self.first
        if self.policy.liveness is not None:
            since = max(since, self.policy.liveness.last)
        self.stopped = rs.attempt_number >= self.policy.attempts and now - since >= budget
        return self.stopped


def _spent(err: BaseException, tries: int, seconds: float) -> BaseException:
    if isinstance(err, StorageError) and tries > 1:
        return StorageError(
            f"{err} ({tries} attempts over {seconds:.0f} s)", transient=err.transient
        )
    return err


def policy(source: _HasBudget | float | None = None) -> RetryPolicy:
    """The storage retry policy of a spec's `policies` (or of a budget in seconds; None:
    the 60 s default)."""
    if source is None:
        budget = DEFAULT_BUDGET_S
    elif isinstance(source, (int, float)):
        budget = float(source)
    else:
        budget = float(source.storage_retry_s)
    return RetryPolicy(budget_s=budget)


DEFAULT_POLICY = RetryPolicy()
