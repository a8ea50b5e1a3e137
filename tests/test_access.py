"""Roles, the audit log, credentials, limits and the served alert state, without a server."""

from __future__ import annotations

import json
import time

import panel as pn
import pytest

from workbench.config import Settings
from workbench.errors import AccessError, ConfigError
from workbench.security.audit import AuditLog
from workbench.security.credentials import Credentials
from workbench.security.limits import Lockout, RateLimiter
from workbench.security.roles import ACTIONS, Guard, User, allowed, authorize


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_each_action_needs_its_role_and_a_refusal_is_audited(action, tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    for role in ("viewer", "operator", "admin"):
        user = User(f"u-{role}", role)
        if allowed(role, action):
            authorize(user, action, audit=audit)
        else:
            with pytest.raises(AccessError, match=f"may not {action}"):
                authorize(user, action, what="x", audit=audit, client="10.1.2.3")
    refused = [r for r in audit.read() if r["outcome"] == "refused"]
    assert all(r["action"] == action and r["client"] == "10.1.2.3" for r in refused)
    assert {r["role"] for r in refused} == {r for r in ("viewer", "operator") if not allowed(r, action)}
    with pytest.raises(AccessError, match="nobody is signed in"):
        authorize(None, action)


def test_a_guard_audits_before_and_after_and_a_failure(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    guard = Guard(User("ops", "operator"), audit)
    state = {"v": 1}
    guard.run("tune", lambda: state.update(v=2), what="score_robust_z", before=dict(state), after=lambda: dict(state))
    with pytest.raises(ZeroDivisionError):
        guard.run("tune", lambda: 1 / 0, what="score_robust_z", before=dict(state))
    rows = audit.read()
    assert [(r["seq"], r["outcome"], r["before"], r["after"]) for r in rows] == [
        (1, "ok", {"v": 1}, {"v": 2}),
        (2, "failed", {"v": 2}, None),
    ]
    assert (tmp_path / "audit.jsonl").stat().st_mode & 0o777 == 0o600


def test_the_audit_log_goes_to_the_lake_once_per_record(tmp_path):
    from workbench.storage.lake import Lake

    audit, lake = AuditLog(tmp_path / "audit.jsonl"), Lake(tmp_path / "lake")
    for i in range(3):
        audit.record(User("ana", "admin"), "export", what=f"view {i}", after={"bytes": i})
    assert audit.to_lake(lake) == 3 and audit.to_lake(lake) == 0
    audit.record(None, "login", who="eve", outcome="refused")
    assert audit.to_lake(lake) == 1
    rows = lake.query("select seq, who, action, outcome, after from audit order by seq").rows()
    assert rows[0] == (1, "ana", "export", "ok", '{"bytes": 0}') and rows[-1][1:4] == ("eve", "login", "refused")


def test_credentials_hold_hashes_refuse_plain_text_and_open_files(tmp_path):
    path = tmp_path / "users.json"
    creds = Credentials(path)
    creds.add("ana", "admin", "a-long-password")
    assert "a-long-password" not in path.read_text()
    started = time.perf_counter()
    assert creds.verify("ana", "a-long-password") == User("ana", "admin")
    assert creds.verify("nobody", "a-long-password") is None
    assert time.perf_counter() - started > 0.005  # an unknown user costs a hash too
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Credentials(path).users()
    path.chmod(0o600)
    path.write_text(json.dumps({"version": 1, "users": {"bob": {"role": "admin", "hash": "hunter2"}}}))
    with pytest.raises(ConfigError, match="not plain text"):
        Credentials(path).users()
    with pytest.raises(ConfigError, match="role: expected one of"):
        creds.add("eve", "root", "a-long-password")


def test_limits_are_bounded_and_sliding():
    now = [0.0]
    limiter = RateLimiter(2, per_s=10, max_keys=3, clock=lambda: now[0])
    assert [limiter.hit("a") for _ in range(3)] == [True, True, False]
    assert limiter.retry_after("a") == 11
    for k in "bcde":
        limiter.hit(k)
    assert len(limiter._hits) == 3  # the oldest keys are forgotten
    now[0] = 10.5
    lock = Lockout(3, window_s=60, lock_s=120, clock=lambda: now[0])
    assert [lock.failed("x") for _ in range(3)] == [False, False, True] and lock.locked("x")
    assert not lock.locked("y")


def test_next_and_claims():
    from workbench.apps.access import safe_next
    from workbench.security.roles import role_from_claims

    for bad in ("//evil.example", "///evil.example", "https://evil.example", "/\\evil", "javascript:x", "/%2f%2fe"):
        assert safe_next(bad) == "/monitor", bad
    assert safe_next("/monitor?refresh=2") == "/monitor?refresh=2"
    mapping = {"claim": "groups", "roles": {"sre": "operator", "leads": "admin"}}
    assert role_from_claims({"groups": ["sre", "leads"]}, mapping) == "admin"
    assert role_from_claims({"groups": ["staff"]}, mapping) == "viewer"


def test_the_served_alert_state_survives_a_restart(tmp_path, monkeypatch):
    from workbench.apps import live

    monkeypatch.setenv("WORKBENCH_CHECKPOINT_KEY", "ef" * 32)
    settings = Settings.from_env(
        {"WORKBENCH_HOSTS": "3", "WORKBENCH_RATE": "30", "WORKBENCH_CHECKPOINTS": str(tmp_path / "ck")}
    )
    first = live.live_pipeline(settings)
    try:
        manager = first.pipeline.outputs["alerts"].manager
        silence = manager.silence(['host="web-1"'], duration="2h", by="ops", comment="maintenance")
        assert live.save_alert_state(first) and not live.save_alert_state(first)  # once per change
    finally:
        first.pipeline.stop()
        first.pipeline.close()
        pn.state.cache.pop("workbench.live", None)
    second = live.live_pipeline(settings)
    try:
        restored = second.pipeline.outputs["alerts"].manager
        assert restored is not manager
        assert [(s.silence_id, s.created_by, s.comment) for s in restored.silences()] == [
            (silence.silence_id, "ops", "maintenance")
        ]
    finally:
        second.pipeline.stop()
        second.pipeline.close()
        pn.state.cache.pop("workbench.live", None)
