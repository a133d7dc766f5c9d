"""The safety budget's every refusal, with plain numbers for time."""

from __future__ import annotations

from watchdog.actions.budget import Budget, Policy


def budget(max_recycles: int = 3, window: float = 600, cooldown: float = 120, min_healthy: int = 1) -> Budget:
    return Budget({"t": Policy(max_recycles, window, cooldown, min_healthy)})


def test_one_recycle_at_a_time_per_target() -> None:
    b = budget()
    assert b.grant("t", "w1", healthy_others=1, now=0)
    d = b.check("t", "w2", healthy_others=1, now=1)
    assert not d
    assert "already in progress" in d.reason
    b.release("t")
    assert b.check("t", "w2", healthy_others=1, now=2)


def test_max_recycles_per_sliding_window() -> None:
    b = budget(max_recycles=2, window=100, cooldown=0)
    for i, now in enumerate((0, 10)):
        assert b.grant("t", f"w{i}", healthy_others=1, now=now)
        b.release("t")
    d = b.check("t", "w9", healthy_others=1, now=50)
    assert not d
    assert d.reason == "2 recycles in the last 100 s already (max 2); the next is allowed in 50 s"
    assert b.check("t", "w9", healthy_others=1, now=100)  # the first one has left the window


def test_cooldown_per_worker() -> None:
    b = budget(cooldown=120)
    assert b.grant("t", "w1", healthy_others=1, now=0)
    b.release("t")
    d = b.check("t", "w1", healthy_others=1, now=60)
    assert not d
    assert "cooldown 120 s" in d.reason
    assert b.check("t", "w2", healthy_others=1, now=60)


def test_never_below_the_minimum_of_healthy_workers() -> None:
    b = budget(min_healthy=1)
    d = b.check("t", "w1", healthy_others=0, now=0)
    assert not d
    assert "likely downstream" in d.reason
    assert budget(min_healthy=0).check("t", "w1", healthy_others=0, now=0)


def test_a_refused_grant_reserves_nothing() -> None:
    b = budget(min_healthy=2)
    assert not b.grant("t", "w1", healthy_others=1, now=0)
    assert b.used("t", 0) == 0
    assert b.check("t", "w1", healthy_others=2, now=0)
