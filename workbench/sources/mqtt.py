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

Examples
--------
>>> from workbench.sources.factory import from_url
>>> src = from_url("mqtt://127.0.0.1:1883/plant/#?client_id=doc&qos=1")
>>> src.topic, src.client_id, src.qos, src.host, src.port
('plant/#', 'doc', 1, '127.0.0.1', 1883)
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from typing import Any

from workbench.errors import ConfigError, SourceError
from workbench.sources.broker import BrokerSource, Message
from workbench.sources.urls import ParsedUrl, parse_for

__all__ = ["MqttSource"]


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

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
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
        client.subscribe(self.topic, qos=self.qos)
        self._wait(lambda: state["suback"] is not None, "SUBACK")
        bad = [r for r in state["suback"] if r.is_failure]
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

    def health(self) -> dict[str, Any]:  # noqa: D102
        return {**super().health(), "topic": self.topic, "client_id": self.client_id}
