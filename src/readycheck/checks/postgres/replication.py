"""postgres.replication: replicas connected and caught up, a standby receiving and replaying,
and no forgotten replication slot filling the disk with WAL.

On a primary, ``pg_stat_replication`` lists the connected standbys: each expected one must
be streaming, its ``replay_lag`` and its byte lag
(``pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)``) within budget. On a standby,
``pg_stat_wal_receiver`` must show a streaming receiver, and replay must not be behind
what it received for longer than the budget (an idle primary sends nothing to replay: a
standby that replayed all it received is not behind, however old its last transaction).
On either, a slot that nothing consumes (``active`` false) keeps every WAL segment from its
``restart_lsn`` on: past a budget, that is a full disk in waiting.

Everything is read in one snapshot per view, so a replica that disconnects while the check
runs is reported as not connected rather than half-read. The details of other sessions'
replication are visible to superusers and members of ``pg_read_all_stats`` (``pg_monitor``
includes it); a role without them gets an ERROR that says so, never a guess.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from readycheck.checks.postgres import PostgresParams
from readycheck.checks.postgres.session import with_session
from readycheck.registry import check
from readycheck.results import Outcome
from readycheck.units import Duration, Size, counted, format_bytes, format_duration_ms

if TYPE_CHECKING:
    from readycheck.checks.postgres.session import Row, Session
    from readycheck.context import Context

# A standby over its lag budget is given the budget itself (at least this long, and no
# longer than the check's own time allows) to replay what it had already received: one
# that replays it in that time keeps up, which tells a first transaction after an idle
# spell, or a burst on a busy machine, from a standby that falls behind.
REPLAY_GRACE_SECONDS = 2.0
_GRACE_MARGIN_SECONDS = 1.0


class ReplicationParams(PostgresParams):
    role: Literal["auto", "primary", "standby"] = Field(
        "auto",
        description="What the server must be: `primary`, `standby`, or `auto` (check it as "
        "whichever it is, from pg_is_in_recovery()).",
    )
    replicas: list[str] = Field(
        default_factory=list,
        description="On a primary: the application_name of each standby that must be "
        "connected and streaming (a standby's cluster_name, or application_name in its "
        "primary_conninfo).",
    )
    min_replicas: int = Field(
        1,
        ge=0,
        description="On a primary: how many standbys must be streaming, named or not "
        "(pg_basebackup sessions do not count).",
    )
    max_replay_lag: Duration = Field(
        Duration("30s"),
        description="On a primary, each standby's replay_lag; on a standby, how long replay "
        "has been behind what it received.",
    )
    max_lag_bytes: Size = Field(
        Size("64MB"),
        description="On a primary, WAL a standby has not replayed yet; on a standby, WAL "
        "received and not replayed yet.",
    )
    max_inactive_slot_wal: Size | None = Field(
        Size("1GB"),
        description="FAIL when a replication slot nothing consumes keeps more WAL than this "
        "(`null`: slots are not checked).",
    )


@check("postgres.replication", params=ReplicationParams, category="database")
async def replication(p: ReplicationParams, ctx: Context) -> Outcome:
    """Check replicas connected and within lag budgets, a standby's receiver, idle slots."""
    return await with_session(p, ctx, lambda session: _evaluate(p, session, ctx.remaining))


@dataclass
class Findings:
    evidence: list[str]
    problems: list[str]
    metrics: dict[str, float]
    remedies: list[str]


async def _evaluate(
    p: ReplicationParams, session: Session, remaining: Callable[[], float]
) -> Outcome:
    in_recovery, privileged, user = await session.fetchone(
        "SELECT pg_is_in_recovery(), pg_has_role(current_user, 'pg_read_all_stats', 'USAGE'),"
        " current_user"
    )
    role = "standby" if in_recovery else "primary"
    if p.role != "auto" and p.role != role:
        return Outcome.failed(
            f"the server is a {role}, not the {p.role} this check expects",
            evidence=[f"pg_is_in_recovery() = {'true' if in_recovery else 'false'}"],
            remediation=f"Point the DSN at the {p.role}, or set role: {role}.",
        )
    needs_stats = role == "standby" or bool(p.replicas) or p.min_replicas > 0
    if needs_stats and not privileged:
        return Outcome.errored(
            f"role {user} may not read other sessions' replication state",
            remediation=f"GRANT pg_monitor TO {user}; (it includes pg_read_all_stats), or "
            "use a monitoring role that has it.",
        )
    found = Findings([f"role: {role}"], [], {}, [])
    if role == "primary":
        await _primary(p, session, found)
    else:
        await _standby(p, session, found, remaining)
    if p.max_inactive_slot_wal is not None:
        await _slots(p.max_inactive_slot_wal, role, session, found)
    if found.problems:
        return Outcome.failed(
            "; ".join(found.problems[:3]) + ("; …" if len(found.problems) > 3 else ""),
            evidence=[*found.problems, *found.evidence],
            metrics=found.metrics,
            remediation=" ".join(dict.fromkeys(found.remedies)) or None,
        )
    if role == "primary":
        count = int(found.metrics.get("streaming", 0))
        summary = f"{counted(count, 'standby', 'standbys')} streaming within budget"
    else:
        summary = "standby receiving and replaying within budget"
    return Outcome.passed(summary, evidence=found.evidence, metrics=found.metrics)


@dataclass(frozen=True)
class Sender:
    name: str
    state: str
    client: str
    sync_state: str
    lag_bytes: int | None
    replay_lag_s: float | None

    @classmethod
    def of(cls, row: Row) -> Sender:
        name, state, client, sync_state, lag_bytes, replay_lag = row
        return cls(
            name or "(no application_name)",
            state or "unknown",
            client or "local socket",
            sync_state or "unknown",
            None if lag_bytes is None else int(lag_bytes),
            None if replay_lag is None else float(replay_lag),
        )

    def describe(self) -> str:
        if self.state != "streaming":
            return f"standby {self.name} ({self.client}): {self.state}"
        lag = (
            "caught up (no recent lag sample)"
            if self.replay_lag_s is None
            else f"replay lag {format_duration_ms(self.replay_lag_s * 1000)}"
        )
        behind = (
            ", replay position not reported yet"
            if self.lag_bytes is None
            else f", {format_bytes(self.lag_bytes)} of WAL behind"
        )
        return f"standby {self.name} ({self.client}, {self.sync_state}): streaming, {lag}{behind}"


async def _primary(p: ReplicationParams, session: Session, found: Findings) -> None:
    rows = await session.fetch(
        "SELECT application_name, state, host(client_addr), sync_state,"
        " pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn),"
        " extract(epoch FROM replay_lag)::float8"
        " FROM pg_stat_replication WHERE state IS DISTINCT FROM 'backup'"
        " ORDER BY application_name, client_addr"
    )
    senders = [Sender.of(row) for row in rows]
    found.evidence += [sender.describe() for sender in senders] or ["no standby is connected"]
    streaming = [sender for sender in senders if sender.state == "streaming"]
    found.metrics["streaming"] = float(len(streaming))
    for name in p.replicas:
        mine = [sender for sender in senders if sender.name == name]
        if not mine:
            found.problems.append(f"standby {name} is not connected")
        elif not any(sender.state == "streaming" for sender in mine):
            # Caught connecting (startup, catchup) or leaving (stopping) in the snapshot.
            found.problems.append(f"standby {name} is {mine[0].state}, not streaming")
        else:
            continue
        found.remedies.append(
            "Find out why the standby is not connected (its server log; "
            "primary_conninfo; pg_hba.conf on the primary) before deploying."
        )
    if len(streaming) < p.min_replicas:
        found.problems.append(
            f"{counted(len(streaming), 'standby')} streaming, at least {p.min_replicas} expected"
        )
    for sender in streaming:
        if sender.replay_lag_s is not None and sender.replay_lag_s > p.max_replay_lag.seconds:
            found.problems.append(
                f"standby {sender.name} replays {format_duration_ms(sender.replay_lag_s * 1000)} "
                f"behind (limit {p.max_replay_lag})"
            )
        if sender.lag_bytes is not None and sender.lag_bytes > p.max_lag_bytes.bytes:
            found.problems.append(
                f"standby {sender.name} is {format_bytes(sender.lag_bytes)} of WAL behind "
                f"(limit {p.max_lag_bytes})"
            )
    lags = [s.replay_lag_s for s in streaming if s.replay_lag_s is not None]
    behind = [s.lag_bytes for s in streaming if s.lag_bytes is not None]
    if lags:
        found.metrics["max_replay_lag_ms"] = round(max(lags) * 1000, 3)
    if behind:
        found.metrics["max_lag_bytes"] = float(max(behind))


async def _standby(
    p: ReplicationParams, session: Session, found: Findings, remaining: Callable[[], float]
) -> None:
    receivers = await session.fetch(
        "SELECT status, sender_host, sender_port,"
        " extract(epoch FROM now() - last_msg_receipt_time)::float8 FROM pg_stat_wal_receiver"
    )
    status, host, port, silent_s = receivers[0] if receivers else (None, None, None, None)
    received, received_not_replayed, replay_age_s, paused = await session.fetchone(
        "SELECT pg_last_wal_receive_lsn()::text,"
        " pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()),"
        " extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8,"
        " pg_is_wal_replay_paused()"
    )
    if status != "streaming":
        found.problems.append(
            "the WAL receiver is not running: the standby receives nothing from the primary"
            if status is None
            else f"the WAL receiver is {status}, not streaming"
        )
        found.remedies.append(
            "Check primary_conninfo and the primary's reachability from the standby (its "
            "server log says why the receiver stopped)."
        )
    else:
        heard = (
            f", last message {format_duration_ms(silent_s * 1000)} ago"
            if silent_s is not None
            else ""
        )
        found.evidence.append(f"receiving from {host}:{port}{heard}")
    pending = int(received_not_replayed or 0)
    # Nothing received is waiting: replay is not behind, however old the last transaction
    # replayed is (an idle primary sends nothing to replay).
    delay = 0.0 if pending <= 0 or replay_age_s is None else max(0.0, float(replay_age_s))
    found.metrics["replay_delay_ms"] = round(delay * 1000, 3)
    found.metrics["lag_bytes"] = float(max(0, pending))
    if pending <= 0:
        found.evidence.append("replay is caught up with all WAL received")
    else:
        found.evidence.append(
            f"{format_bytes(pending)} of WAL received and not replayed yet; the last "
            f"transaction replayed committed {format_duration_ms(delay * 1000)} ago"
        )
    if paused:
        found.problems.append("replay is paused (pg_wal_replay_pause())")
        found.remedies.append("Resume it with SELECT pg_wal_replay_resume().")
    over = delay > p.max_replay_lag.seconds or pending > p.max_lag_bytes.bytes
    if over and not paused and received is not None:
        # The delay is an upper bound: after an idle spell, the last transaction replayed is
        # old while the first new one is on its way. A standby that replays what it had
        # received within a moment is keeping up, whatever the bound said.
        grace = min(
            max(REPLAY_GRACE_SECONDS, p.max_replay_lag.seconds),
            max(0.0, remaining() - _GRACE_MARGIN_SECONDS),
        )
        caught_up_ms = await _replays_up_to(session, str(received), grace)
        if caught_up_ms is not None:
            found.evidence.append(
                f"replayed all it had received within {format_duration_ms(caught_up_ms)}: "
                "keeping up"
            )
            return
    if delay > p.max_replay_lag.seconds:
        found.problems.append(
            f"replay is {format_duration_ms(delay * 1000)} behind (limit {p.max_replay_lag})"
        )
    if pending > p.max_lag_bytes.bytes:
        found.problems.append(
            f"{format_bytes(pending)} of WAL received and not replayed (limit {p.max_lag_bytes})"
        )


async def _replays_up_to(session: Session, position: str, grace: float) -> float | None:
    """Milliseconds until replay passes ``position``, or None if not within ``grace``."""
    import asyncio
    import time

    started = time.monotonic()
    while time.monotonic() - started < grace:
        (done,) = await session.fetchone(
            "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (position,)
        )
        if done:
            return (time.monotonic() - started) * 1000.0
        await asyncio.sleep(0.1)
    return None


async def _slots(budget: Size, role: str, session: Session, found: Findings) -> None:
    position = "pg_current_wal_lsn()" if role == "primary" else "pg_last_wal_replay_lsn()"
    # wal_status is there from PostgreSQL 13 on: read through to_jsonb to stay version-proof.
    rows = await session.fetch(
        "SELECT slot_name::text, slot_type, active,"
        f" pg_wal_lsn_diff({position}, restart_lsn), to_jsonb(s) ->> 'wal_status'"
        " FROM pg_replication_slots s ORDER BY slot_name"
    )
    idle = [
        (name, kind, int(kept or 0), status)
        for name, kind, active, kept, status in rows
        if not active
    ]
    found.metrics["inactive_slots"] = float(len(idle))
    found.metrics["inactive_slot_wal_bytes"] = float(max((kept for *_, kept, _ in idle), default=0))
    for name, kind, kept, status in idle:
        found.evidence.append(
            f"{kind} slot {name}: inactive, keeps {format_bytes(kept)} of WAL"
            + (f" (wal_status {status})" if status else "")
        )
        if status == "lost":
            found.problems.append(
                f"{kind} slot {name} has lost WAL it needs (wal_status lost): its consumer "
                "cannot resume from it"
            )
        elif kept > budget.bytes:
            found.problems.append(
                f"inactive {kind} slot {name} keeps {format_bytes(kept)} of WAL (limit {budget})"
            )
        else:
            continue
        found.remedies.append(
            "Reconnect what consumes the slot, or drop it if nothing will "
            "(SELECT pg_drop_replication_slot('name')) before the disk fills."
        )
    active = len(rows) - len(idle)
    if rows:
        found.evidence.append(f"replication slots: {active} active, {len(idle)} inactive")
