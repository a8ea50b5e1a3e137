"""MQTT source (paho-mqtt ≥ 2, MQTT 5): QoS 1, a persistent session, acks after the checkpoint.

The client connects with a fixed client id, ``clean_start=False`` and a session
expiry, so the broker keeps the subscription and queues QoS 1 messages while the
pipeline is down, and delivers them after a restart. Messages are acknowledged
(PUBACK) manually, only once a checkpoint covering their batch is durable; the
broker re-sends unacknowledged ones on the next connection (duplicates are
dropped by ``dedupe``).

The broker sends at most ``max_inflight`` unacknowledged messages at a time
(Mosquitto's default ``max_inflight_messages`` is 20, and the client's MQTT 5
Receive Maximum is set to the same number), so the source asks the pipeline for a
checkpoint when that many are unacknowledged or the stream goes quiet. Raise both
on the broker and here for throughput.

Loss the broker causes is reported, since it cannot always be prevented: a broker
drops QoS 1 messages for a disconnected session once its queue is full (Mosquitto's
``max_queued_messages``, default 1000) or when it restarts without ``persistence``.
The source subscribes to Mosquitto's ``$SYS/broker/publish/messages/dropped`` counter
and, with ``seq_field``, checks a per-publisher sequence number in every message (the
publisher is the message's topic, or the value of ``publisher_field``). Either kind
of loss turns ``health()["status"]`` red with the counts in ``health()["lost"]``; the
counts are checkpointed, so drops that happened while the pipeline was down (the
counter grew, the sequence jumped) are counted after the restart.
:func:`check_broker` reads a broker's settings that prevent loss.

Examples
--------
>>> from workbench.sources.factory import from_url
>>> src = from_url("mqtt://127.0.0.1:1883/plant/#?client_id=doc&qos=1")
>>> src.topic, src.client_id, src.qos, src.host, src.port
('plant/#', 'doc', 1, '127.0.0.1', 1883)
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections import deque
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError, SourceError
from workbench.sources.broker import BrokerSource, Message
from workbench.sources.urls import ParsedUrl, parse_for

__all__ = ["DROPPED_TOPIC", "MqttSource", "check_broker"]

log = logging.getLogger(__name__)

#: Mosquitto's count of messages it dropped (queue limits, inflight limits), broker-wide
DROPPED_TOPIC = "$SYS/broker/publish/messages/dropped"
_MAX_PUBLISHERS = 100_000  # sequence numbers are tracked for this many publishers at most


class _Loss:
    """Loss the broker caused: its ``$SYS`` dropped counter and gaps in publishers' sequence numbers."""

    def __init__(self, seq_field: str | None, publisher_field: str | None) -> None:
        self.seq = re.compile(rb'"%s"\s*:\s*(\d+)' % re.escape(seq_field.encode())) if seq_field else None
        self.publisher = (
            re.compile(rb'"%s"\s*:\s*"([^"]*)"' % re.escape(publisher_field.encode())) if publisher_field else None
        )
        self.last: dict[bytes | str, int] = {}
        self.gaps = 0
        self.broker_dropped = 0
        self.counter: int | None = None  # the broker's dropped counter when last seen

    def message(self, topic: str, payload: bytes) -> None:
        if self.seq is None or not (m := self.seq.search(payload)):
            return
        who: bytes | str = topic
        if self.publisher is not None and (p := self.publisher.search(payload)):
            who = p.group(1)
        n, before = int(m.group(1)), self.last.get(who)
        if before is not None and n <= before:
            return  # a re-delivery, or a restarted publisher's numbering (counted from its next gap)
        if before is not None and n > before + 1:
            self.gaps += n - before - 1
            log.warning("mqtt: publisher %r skipped %d sequence numbers (%d → %d)", who, n - before - 1, before, n)
        if before is None and len(self.last) >= _MAX_PUBLISHERS:
            self.last.pop(next(iter(self.last)))
        self.last[who] = n

    def dropped_counter(self, payload: bytes) -> None:
        try:
            value = int(payload.strip() or b"0")
        except ValueError:
            return
        if self.counter is not None:
            grew = value - self.counter if value >= self.counter else value  # lower: the broker restarted
            if grew > 0:
                self.broker_dropped += grew
                log.warning("mqtt: the broker dropped %d messages (its $SYS counter, all clients)", grew)
        self.counter = value

    def snapshot(self) -> dict[str, Any]:
        return {
            "gaps": self.gaps,
            "broker_dropped": self.broker_dropped,
            "counter": self.counter,
            "last": {k.decode() if isinstance(k, bytes) else k: v for k, v in self.last.items()},
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.gaps, self.broker_dropped = int(state.get("gaps", 0)), int(state.get("broker_dropped", 0))
        self.counter = state.get("counter")
        as_bytes = self.publisher is not None
        self.last = {(k.encode() if as_bytes else k): int(v) for k, v in state.get("last", {}).items()}


class MqttSource(BrokerSource):
    """Subscribe to an MQTT topic filter (wildcards ``+`` and ``#`` allowed).

    Parameters
    ----------
    url
        ``mqtt://[user:password@]host[:port]/topic/filter`` (port 1883 by default).
    client_id
        Fixed client id: the broker keeps the session under it (default
        ``workbench-<topic>``). Two pipelines must not share one.
    qos
        1 (at least once; the default) or 0 (at most once: no session, no redelivery).
    session_expiry
        Seconds the broker keeps the session while disconnected.
    max_inflight
        Unacknowledged messages the broker may send at once (MQTT 5 Receive Maximum).
    keepalive
        Seconds between pings.
    connect_timeout
        Seconds to wait for the broker's CONNACK / SUBACK.
    broker_drops
        Watch the broker's ``$SYS`` dropped-message counter (Mosquitto; QoS 1 sessions).
    seq_field
        A JSON field holding each publisher's message sequence number: a gap is loss.
    publisher_field
        The JSON field naming the publisher of ``seq_field`` (default: the message topic).
    **kwargs
        :class:`~workbench.sources.broker.BrokerSource` options (``max_rows``, ``max_delay`` …).
    """

    _transient = (OSError, ConnectionError)
    checkpoint_when_idle = True

    def __init__(
        self,
        url: str | ParsedUrl,
        *,
        client_id: str | None = None,
        qos: int = 1,
        session_expiry: int = 86_400,
        max_inflight: int = 20,
        keepalive: int = 30,
        connect_timeout: float = 5.0,
        broker_drops: bool = True,
        seq_field: str | None = None,
        publisher_field: str | None = None,
        **kwargs: Any,
    ) -> None:
        u = parse_for(url, "mqtt")
        if not u.path:
            raise ConfigError(f"mqtt source {u.url!r}: no topic; use mqtt://host:port/topic/#")
        if qos not in (0, 1):
            raise ConfigError(f"mqtt source {u.url!r}: qos must be 0 or 1, not {qos}")
        if max_inflight < 1 or max_inflight > 65_535:
            raise ConfigError(f"mqtt source {u.url!r}: max_inflight must be in 1..65535, not {max_inflight}")
        kwargs.setdefault("max_unacked", max_inflight)
        kwargs.setdefault("name", "mqtt")
        super().__init__(u.url, **kwargs)
        self.host, self.port = u.host or "127.0.0.1", u.port or 1883
        self.topic = u.path
        self.username, self.password = u.username, u.password
        safe = "".join(ch if ch.isalnum() else "-" for ch in self.topic).strip("-")
        self.client_id = client_id or f"workbench-{safe}"[:64]
        self.qos = qos
        self.session_expiry = session_expiry
        self.max_inflight = max_inflight
        self.keepalive = keepalive
        self.connect_timeout = connect_timeout
        self._client: Any = None
        self._generation = 0
        self._inbox: list[Message] = []
        self._acks: deque[list[Any]] = deque()
        self._state: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.broker_drops = broker_drops and qos == 1
        self.loss = _Loss(seq_field, publisher_field)

    # -- connection ----------------------------------------------------------------------
    def _connect(self) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self._generation += 1
        gen = self._generation
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=self.qos == 1,
        )
        if self.username:
            client.username_pw_set(self.username, self.password)
        state: dict[str, Any] = {"connack": None, "suback": None, "down": None}
        inbox = self._inbox

        def on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
            state["connack"] = reason

        def on_subscribe(_c: Any, _u: Any, _mid: Any, reasons: Any, _p: Any) -> None:
            state["suback"] = list(reasons)

        def on_disconnect(_c: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
            state["down"] = reason

        loss = self.loss

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            if msg.topic == DROPPED_TOPIC:
                loss.dropped_counter(msg.payload)
                return
            loss.message(msg.topic, msg.payload)
            inbox.append((msg.payload, (gen, msg.mid, msg.qos)))

        client.on_connect, client.on_subscribe = on_connect, on_subscribe
        client.on_disconnect, client.on_message = on_disconnect, on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry if self.qos == 1 else 0
        props.ReceiveMaximum = self.max_inflight
        self._client, self._state = client, state
        client.connect(self.host, self.port, self.keepalive, clean_start=self.qos == 0, properties=props)
        self._wait(lambda: state["connack"] is not None, "CONNACK")
        if state["connack"].is_failure:
            raise SourceError(f"mqtt source {self.url!r}: the broker refused the connection: {state['connack']}")
        topics = [(self.topic, self.qos), *([(DROPPED_TOPIC, 0)] if self.broker_drops else [])]
        client.subscribe(topics)
        self._wait(lambda: state["suback"] is not None, "SUBACK")
        bad = [r for r in state["suback"][:1] if r.is_failure]  # $SYS may be refused (an ACL): not needed
        if bad:
            raise SourceError(f"mqtt source {self.url!r}: subscription to {self.topic!r} refused: {bad[0]}")

    def _wait(self, done: Any, what: str) -> None:
        end = self.clock.monotonic() + self.connect_timeout
        while not done():
            rc = self._client.loop(0.05)
            if done():
                return
            if rc != 0 or self._state["down"] is not None:
                raise ConnectionError(f"connection closed before {what} ({self._state['down']})")
            if self.clock.monotonic() > end:
                raise TimeoutError(f"no {what} from {self.host}:{self.port} within {self.connect_timeout} s")

    def _send_acks(self, client: Any) -> None:
        while self._acks:  # acks are sent from the thread driving the client
            for gen, mid, qos in self._acks.popleft():
                if gen == self._generation and qos == 1:
                    client.ack(mid, qos)

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                self._send_acks(client)
                client.loop(0.01)
                client.disconnect()
                client.loop(0.01)
        self._inbox.clear()  # unacknowledged: the broker sends them again

    # -- messages ------------------------------------------------------------------------
    def _receive(self, n: int, timeout: float) -> list[Message]:
        client = self._client
        self._send_acks(client)
        rc = client.loop(timeout)
        for _ in range(10_000):
            if rc != 0 or len(self._inbox) >= n:
                break
            before = len(self._inbox)
            rc = client.loop(0)
            if len(self._inbox) == before:
                break
        if rc != 0 or self._state["down"] is not None:
            raise ConnectionError(f"mqtt connection lost (rc={rc}, {self._state['down']})")
        out = self._inbox[:n]
        del self._inbox[:n]
        return out

    def _ack(self, tokens: list[Any]) -> None:
        self._acks.append(tokens)

    def health(self) -> dict[str, Any]:
        """The broker source's health, plus ``lost`` (broker drops, sequence gaps) and ``status``.

        ``status`` is ``red`` once any loss was seen, else ``green``.
        """
        lost = {"broker_dropped": self.loss.broker_dropped, "sequence_gaps": self.loss.gaps}
        return {
            **super().health(),
            "topic": self.topic,
            "client_id": self.client_id,
            "lost": lost,
            "status": "red" if any(lost.values()) else "green",
        }

    def snapshot(self) -> dict[str, Any]:
        """The offset and the loss counters (drops while the pipeline is down are counted after it)."""
        return {**super().snapshot(), "loss": self.loss.snapshot()}

    def restore(self, state: dict[str, Any]) -> None:
        """Restore :meth:`snapshot`."""
        super().restore(state)
        self.loss.restore(state.get("loss", {}))


def check_broker(conf: str | Path) -> list[str]:
    """Problems with a Mosquitto configuration file that let the broker drop messages ([] when none).

    Checks ``persistence`` (queued QoS 1 messages survive a broker restart) and
    ``max_queued_messages`` (0 = unlimited, or enough for the outage you plan for:
    at least 100,000 here), and that ``$SYS`` is published (``sys_interval`` > 0) so
    drops are seen.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> conf = pathlib.Path(tempfile.mkdtemp()) / "mosquitto.conf"
    >>> _ = conf.write_text("listener 1883\\npersistence true\\nmax_queued_messages 0\\n")
    >>> check_broker(conf)
    []
    >>> _ = conf.write_text("listener 1883\\n")
    >>> [p.split(":")[0] for p in check_broker(conf)]
    ['persistence', 'max_queued_messages']
    """
    path = Path(conf)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"mosquitto config {str(path)!r}: cannot be read ({exc.strerror or exc})") from None
    settings: dict[str, str] = {}
    for raw in lines:
        words = raw.split("#", 1)[0].split()
        if len(words) >= 2:
            settings[words[0]] = words[1]
    problems = []
    if settings.get("persistence", "false").lower() not in ("true", "1", "yes"):
        problems.append(
            "persistence: off (the default): queued messages are lost when the broker restarts; set 'persistence true'"
        )
    queued = settings.get("max_queued_messages", "1000")
    if not queued.isdigit() or (int(queued) != 0 and int(queued) < 100_000):
        problems.append(
            f"max_queued_messages: {queued} (default 1000): a pipeline down for {queued} messages loses the rest; "
            "set 'max_queued_messages 0' (no limit, bounded by max_queued_bytes) or a number sized for your outages"
        )
    if settings.get("sys_interval", "10") == "0":
        problems.append("sys_interval: 0: $SYS counters are off, so drops cannot be seen; set 'sys_interval 10'")
    return problems
