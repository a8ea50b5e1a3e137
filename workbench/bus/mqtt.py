"""MQTT publisher (paho-mqtt): QoS 1, waits for the broker's PUBACK.

Examples
--------
>>> MqttPublisher("127.0.0.1", 1883).address
'mqtt://127.0.0.1:1883'
"""

from __future__ import annotations

import uuid
from typing import Any

from workbench.bus.base import Publisher
from workbench.errors import ConfigError

__all__ = ["MqttPublisher"]


class MqttPublisher(Publisher):
    """Publish to an MQTT broker.

    Parameters
    ----------
    host, port
        The broker.
    qos
        0, 1 (default: at least once) or 2.
    timeout
        Seconds to wait for the connection and for each acknowledgement.
    client_id
        MQTT client id (a random one by default).
    **kwargs
        ``backoff`` and ``clock``, see :class:`~workbench.bus.base.Publisher`.
    """

    scheme = "mqtt"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        qos: int = 1,
        timeout: float = 5.0,
        client_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        if qos not in (0, 1, 2):
            raise ConfigError(f"mqtt publisher: qos must be 0, 1 or 2, not {qos!r}")
        super().__init__(**kwargs)
        self.host, self.port, self.qos, self.timeout = host, port, qos, timeout
        self.client_id = client_id or f"workbench-{uuid.uuid4().hex[:12]}"
        self._client: Any = None

    @property
    def address(self) -> str:  # noqa: D102
        return f"mqtt://{self.host}:{self.port}"

    def _connect(self) -> None:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id)
        client.connect(self.host, self.port, keepalive=30)
        client.loop_start()
        self._client = client

    def _send(self, topic: str, payload: bytes) -> None:
        info = self._client.publish(topic, payload, qos=self.qos)
        if info.rc != 0:
            raise ConnectionError(f"publish returned rc={info.rc}")
        info.wait_for_publish(timeout=self.timeout)
        if not info.is_published():
            raise TimeoutError(f"no acknowledgement within {self.timeout} s")

    def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.disconnect()
            finally:
                client.loop_stop()
