"""The MQTT publisher: the live view on an MQTT broker, with Home Assistant discovery, by barcode.

Theory of operation. Two threads, neither of which the recorder waits for:

* paho-mqtt's network thread (`loop_start`) connects, keeps the session alive and reconnects by
  itself (1 s, doubling to 30 s), forever. Its will is `<base>/status = offline` (retained), so
  a recorder that dies or loses its network shows as offline.
* the publisher thread (`MqttPublisher`) wakes every `--mqtt-interval` (and at once after a
  (re)connect, or when Home Assistant announces itself), takes one `LiveData.snapshot()` (the
  same view the status page renders, so identity and staleness are decided in one place:
  `recorder.live.latest`), with the day's running energy (`EnergyKeeper.today`: the energy
  recorder's own totals, made by the read loop, never computed here), and publishes what changed
  since its last pass: discovery configs of optimizers it has not described yet (or whose label
  or gateway changed), the state of each optimizer whose latest reading or energy today differs
  from what it published, availability that flipped, and the totals. `recorder.live.discovery`
  builds every topic and payload.

Best effort. Nothing is published while disconnected and nothing is queued for later: after a
(re)connect, or when Home Assistant publishes `online` on `<prefix>/status` (it restarted), the
publisher forgets what it sent and publishes everything again. The read loop, the outbox and
InfluxDB never wait for MQTT: the reader only updates the view, which this thread reads.

Availability. An optimizer is `online` while its latest reading is fresh (younger than
`--stale-after`), else `offline`. A barcode that leaves the view (its node was given another
optimizer: a replacement) goes `offline`; its discovery config is kept, so Home Assistant keeps
the old device, unavailable, with its history, until the user deletes it there (which also
clears the retained config). The publisher subscribes to `<base>/+/availability`, so a retained
`online` left by an earlier run for an optimizer that has not reported in this one is corrected
to `offline` (otherwise last evening's values would show as current all night).

Shutdown: a last pass, a few seconds for it to leave, then `<base>/status = offline` and a clean
disconnect. Credentials: the password goes to paho only; logs name the broker as
`mqtt://user@host:port`. paho's own logger is not enabled.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from recorder.config import redact
from recorder.live import discovery
from recorder.live.broker import MqttBroker
from recorder.live.discovery import OFFLINE, ONLINE, Group, Topics
from recorder.live.snapshot import LiveData

log = logging.getLogger(__name__)

KEEPALIVE = 30  # seconds; a dead connection is noticed within about 1.5 times this
RECONNECT_DELAY = (1, 30)  # seconds: first retry, longest wait
SHUTDOWN_GRACE = 5.0  # seconds for the last pass to leave
QOS_DISCOVERY = 1  # configs and availability: worth an acknowledgement
QOS_STATE = 0  # states: the next one follows within an interval


class MqttPublisher:
    """Publishes the live view to an MQTT broker; `start()` and `stop()`, nothing else blocks."""

    def __init__(
        self,
        broker: MqttBroker,
        data: LiveData,
        *,
        topic: str = "tigo",
        discovery_prefix: str = "homeassistant",
        interval: float = 10.0,
        version: str = "",
    ) -> None:
        self.broker = broker
        self.data = data
        self.topics = Topics(topic, discovery_prefix)
        self.interval = interval
        self.version = version
        self.connects = 0  # successful connections (1 + reconnects)
        self.passes = 0  # publishing passes completed
        self.discovery_rounds = 0  # passes that (re)published every discovery config
        self._client: mqtt.Client | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._refresh = threading.Event()  # forget what was sent: publish everything again
        self._lock = threading.Lock()
        self._claimed_online: set[str] = set()  # barcodes the broker says are online
        self._problem: str | None = None  # the last connection problem logged (logged once)
        # What this session has published (the publisher thread only):
        self._described: dict[str, tuple[str | None, int]] = {}  # barcode -> (name, gateway)
        self._groups: set[Group] = set()
        self._stated: dict[str, bytes] = {}  # barcode -> the state published
        # barcode -> (long address, last state): kept across refreshes, for barcodes that leave
        self._last_states: dict[str, tuple[bytes | None, dict[str, Any]]] = {}
        self._group_states: dict[Group, bytes] = {}
        self._availability: dict[str, str] = {}  # barcode -> online/offline
        self._pending: list[mqtt.MQTTMessageInfo] = []

    # ---- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"recorder-{socket.gethostname()[:32]}-{secrets.token_hex(3)}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        client.will_set(self.topics.status, OFFLINE, qos=1, retain=True)
        if self.broker.username is not None:
            password = self.broker.password.reveal() if self.broker.password is not None else None
            client.username_pw_set(self.broker.username, password)
        if self.broker.tls:
            client.tls_set()  # the system's certificate authorities; the host name is checked
        client.reconnect_delay_set(*RECONNECT_DELAY)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.connect_async(self.broker.host, self.broker.port, keepalive=KEEPALIVE)
        self._client = client
        log.info(
            "MQTT: publishing to %s every %g s under %s/ (Home Assistant discovery under %s/)",
            self.broker,
            self.interval,
            self.topics.base,
            self.topics.prefix,
        )
        client.loop_start()
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """A last pass, then offline and a clean disconnect (a few seconds at most)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=SHUTDOWN_GRACE + 5)
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # ---- paho's thread: only flags and small publishes ---------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._report(f"the broker at {self.broker} refused the connection: {reason}", logging.ERROR)
            return
        self.connects += 1
        client.publish(self.topics.status, ONLINE, qos=1, retain=True)
        client.subscribe([(self.topics.home_assistant_status, 1), (self.topics.availability_filter, 1)])
        self._problem = None
        log.info("MQTT: connected to %s%s", self.broker, "" if self.connects == 1 else " again")
        self._connected.set()
        self._refresh.set()
        self._wake.set()

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        self._report(
            f"cannot connect to {self.broker}; retrying every {RECONNECT_DELAY[1]} s at most "
            "(recording goes on)",
            logging.WARNING,
        )

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if was_connected and not self._stopping.is_set():
            self._report(
                f"lost the connection to {self.broker} ({reason}); reconnecting by itself "
                "(recording goes on)",
                logging.WARNING,
            )

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        payload = message.payload.decode("utf-8", "replace").strip()
        if message.topic == self.topics.home_assistant_status:
            if payload == ONLINE:
                log.info("MQTT: Home Assistant announced itself; publishing discovery again")
                self._refresh.set()
                self._wake.set()
            return
        barcode = self.topics.barcode_of_availability(message.topic)
        if barcode is not None and payload == ONLINE:
            with self._lock:
                self._claimed_online.add(barcode)

    def _report(self, problem: str, level: int) -> None:
        """Log a connection problem once, not at every retry."""
        problem = redact(problem)
        if problem != self._problem:
            self._problem = problem
            log.log(level, "MQTT: %s", problem)

    # ---- the publisher thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            stopping = self._stopping.is_set()
            if self._connected.is_set():
                try:
                    self.publish_once()
                except Exception:  # a bug here must not end publishing (nor touch recording)
                    log.exception("MQTT: could not publish; trying again in %g s", self.interval)
            if stopping:
                break
        self._finish()

    def publish_once(self) -> None:
        """One pass: whatever changed since the last one (everything after a refresh)."""
        client = self._client
        if client is None:
            return
        if self._refresh.is_set():
            self._refresh.clear()
            self._forget()
            self.discovery_rounds += 1
        snapshot = self.data.snapshot(energy=True)
        latest = snapshot.latest
        self._pending = [info for info in self._pending if not info.is_published()]
        publish = self._publisher(client)
        if latest.now is not None:  # before the first reading there is nothing to total
            totals_now = discovery.group_totals(latest.optimizers, snapshot.energy, snapshot.labels)
            for group, totals in totals_now.items():
                if group not in self._groups:
                    for topic, config in discovery.group_configs(group, self.topics, self.version):
                        publish(topic, discovery.encode(config), QOS_DISCOVERY)
                    self._groups.add(group)
                payload = discovery.encode(discovery.group_state(totals))
                if self._group_states.get(group) != payload:
                    publish(discovery.group_state_topic(group, self.topics), payload, QOS_STATE)
                    self._group_states[group] = payload
        shown: dict[str, str] = {}
        for optimizer in discovery.publishable(latest.optimizers):
            reading = optimizer.reading
            barcode = reading.barcode
            assert barcode is not None
            described = (optimizer.name, reading.gateway_id)
            if self._described.get(barcode) != described:
                for topic, config in discovery.optimizer_configs(optimizer, self.topics, self.version):
                    publish(topic, discovery.encode(config), QOS_DISCOVERY)
                self._described[barcode] = described
            document = discovery.optimizer_state(optimizer)
            self._last_states[barcode] = (reading.long_address, document)
            state = discovery.encode(document)
            if self._stated.get(barcode) != state:  # a newer reading, or more energy today
                publish(self.topics.state(barcode), state, QOS_STATE)
                self._stated[barcode] = state
            shown[barcode] = OFFLINE if optimizer.stale else ONLINE
        # Barcodes that left the view (replaced) keep their last reading; their energy today
        # still follows the day (and starts again at midnight) instead of freezing.
        for barcode, (address, document) in self._last_states.items():
            if barcode in shown or address is None:
                continue
            energy = snapshot.energy.by_address.get(address, 0.0) if snapshot.energy else None
            document = {**document, "energy_today": discovery.energy_value(energy)}
            state = discovery.encode(document)
            if self._stated.get(barcode) != state:
                publish(self.topics.state(barcode), state, QOS_STATE)
                self._stated[barcode] = state
        with self._lock:
            claimed, self._claimed_online = self._claimed_online, set()
        # Barcodes that left the view (replaced), or that an earlier run left online.
        for barcode in [*self._availability, *claimed]:
            shown.setdefault(barcode, OFFLINE)
        for barcode, availability in shown.items():
            if self._availability.get(barcode) != availability or (
                barcode in claimed and availability == OFFLINE
            ):
                publish(self.topics.availability(barcode), availability.encode(), QOS_DISCOVERY)
                self._availability[barcode] = availability
        self.passes += 1

    def _publisher(self, client: mqtt.Client) -> Callable[[str, bytes, int], None]:
        def publish(topic: str, payload: bytes, qos: int) -> None:
            info = client.publish(topic, payload, qos=qos, retain=True)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._pending.append(info)
            else:  # the connection dropped mid-pass: the reconnect publishes everything again
                self._refresh.set()

        return publish

    def _forget(self) -> None:
        self._described.clear()
        self._groups.clear()
        self._stated.clear()
        self._group_states.clear()
        self._availability.clear()
        self._pending.clear()

    def _finish(self) -> None:
        client = self._client
        if client is None or not self._connected.is_set():
            return
        _wait_published(self._pending, time.monotonic() + SHUTDOWN_GRACE)
        info = client.publish(self.topics.status, OFFLINE, qos=1, retain=True)
        _wait_published([info], time.monotonic() + 2.0)
        log.info("MQTT: published offline; disconnecting from %s", self.broker)


def _wait_published(infos: Iterable[mqtt.MQTTMessageInfo], deadline: float) -> None:
    for info in infos:
        while time.monotonic() < deadline:
            try:
                if info.is_published():
                    break
            except (RuntimeError, ValueError):  # never queued (the connection dropped)
                break
            time.sleep(0.02)
