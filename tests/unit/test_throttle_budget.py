"""storage.retry's budget under throttling (docs/scale.md change 1), without processes:
`within` keeps a phase's deadline hard even for a throttled request's 10x budget."""

from __future__ import annotations

from node_agent.storage.retry import THROTTLED_FACTOR, policy, throttled_answer


def test_within_a_deadline_every_budget_ends_in_time() -> None:
    p = policy(60)
    assert p.throttled_factor == THROTTLED_FACTOR == 10
    roomy = p.within(300)  # job release: 300 s for all its log uploads
    assert roomy.budget_s == 60 and roomy.budget_s * roomy.throttled_factor == 300
    tight = p.within(30)
    assert tight.budget_s == 30 and tight.throttled_factor == 1
    spent = p.within(-1)
    assert spent.budget_s == 0 and spent.throttled_factor == 1
    assert p.within(10_000) == p


def test_only_server_busy_and_429_are_throttling() -> None:
    assert throttled_answer(503, "ServerBusy") and throttled_answer(429, None)
    assert not throttled_answer(503, None) and not throttled_answer(503, "InternalError")
    assert not throttled_answer(500, "ServerBusy") and not throttled_answer(None, None)
