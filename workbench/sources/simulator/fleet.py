"""The simulated world: hosts, services, regions, users and addresses, and how they behave.

A :class:`Fleet` is built once from ``hosts`` and ``seed``. :meth:`Fleet.sample` turns
an array of event times into the columns of one schema, fully vectorised, with the
effects of the active :class:`~workbench.sources.simulator.incidents.Incident` values applied.

Examples
--------
>>> import numpy as np
>>> fleet = Fleet.build(12, seed=0)
>>> fleet.hosts[0]
'web-us-east-1-001'
>>> ts = np.arange(5, dtype=np.int64) + 1_704_067_200_000
>>> frame, keep = fleet.sample("server_metrics", ts, np.random.default_rng(0), [])
>>> frame.columns
['host', 'cpu', 'mem', 'latency_ms', 'status', 'service', 'region']
>>> bool(keep.all())
True
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from workbench.errors import ConfigError

if TYPE_CHECKING:
    from workbench.sources.simulator.incidents import Incident

__all__ = ["COUNTRIES", "REGIONS", "SERVICES", "Fleet"]

#: Regions and their offset from UTC in hours (drives the local daily cycle).
REGIONS: tuple[tuple[str, float], ...] = (
    ("eu-west-1", 0.0),
    ("us-east-1", -5.0),
    ("ap-south-1", 5.5),
    ("us-west-2", -8.0),
    ("eu-central-1", 1.0),
)
_REGION_SHARE = np.array([0.3, 0.3, 0.15, 0.15, 0.1])

#: Services, the host-name prefix of their tier, and their typical latency in ms.
SERVICES: tuple[tuple[str, str, float], ...] = (
    ("checkout", "web", 120.0),
    ("search", "search", 60.0),
    ("auth", "auth", 15.0),
    ("api", "api", 40.0),
    ("payments", "pay", 200.0),
    ("catalog", "web", 50.0),
)

#: Countries of users, with their share of traffic.
COUNTRIES: tuple[tuple[str, float], ...] = (
    ("US", 0.30),
    ("IN", 0.15),
    ("GB", 0.10),
    ("DE", 0.10),
    ("BR", 0.08),
    ("JP", 0.08),
    ("FR", 0.07),
    ("CA", 0.05),
    ("AU", 0.04),
    ("NL", 0.03),
)
_COUNTRY_CUM = np.cumsum([share for _, share in COUNTRIES])

#: The daily cycle by minute of the local day: peaks at 15:00, lowest at 03:00.
_DAY_WAVE = np.sin(2 * np.pi * (np.arange(1440) / 60 - 9) / 24)
_STATUS = np.array([200, 201, 204, 301, 304, 400, 401, 403, 404, 429, 500, 502, 503, 504])
_STATUS_CUM = np.cumsum(
    [0.952, 0.01, 0.005, 0.003, 0.007, 0.004, 0.004, 0.002, 0.006, 0.002, 0.0015, 0.001, 0.0015, 0.001]
)

_KINDS = ("page_view", "search", "login", "checkout", "logout", "error")
_KIND_CUM = np.cumsum([0.67, 0.14, 0.07, 0.05, 0.06, 0.01])
_KIND_MS = np.array([8000.0, 2500.0, 1500.0, 20000.0, 300.0, 400.0])  # median time spent
_ERROR = _KINDS.index("error")
_PATHS = pl.Series(
    [
        "/",
        "/product/",
        "/category/",
        "/search",
        "/login",
        "/logout",
        "/checkout/cart",
        "/checkout/shipping",
        "/checkout/payment",
        "/checkout/confirm",
    ]
)
_CATEGORIES = pl.Series(["shoes", "books", "garden", "toys", "audio", "kitchen", "sports"])

# Flow families: destination ports and their shares.
_EAST_WEST = ([5432, 6379, 443, 8080, 9092, 22], [0.25, 0.2, 0.25, 0.15, 0.1, 0.05])
_INBOUND = ([443, 80, 22], [0.7, 0.25, 0.05])
_EGRESS = ([443, 53, 123, 80], [0.7, 0.2, 0.05, 0.05])
_PROTOCOLS = ("tcp", "udp", "icmp")
_ACTIONS = ("accept", "reject")
_PUBLIC_OCTETS = np.array([23, 31, 45, 52, 66, 81, 93, 104, 151, 185, 203])


@dataclass(frozen=True, eq=False)
class Fleet:
    """Hosts with their service, region, address and baselines, plus users and outsiders.

    Build one with :meth:`Fleet.build`; the arrays are read-only.

    Parameters
    ----------
    hosts, services, regions, ips
        Per host: name (``web-eu-west-1-017``), service, region and internal address.
    external
        A pool of public addresses (clients, egress destinations, attackers).
    users
        Number of distinct users of ``user_events``.
    host_service, host_region, utc_offset, cpu_base, cpu_swing, mem_base, latency_base
        Per host: service and region index, UTC offset (minutes), CPU baseline and swing (%),
        memory baseline (%) and typical latency (ms).

    Examples
    --------
    >>> fleet = Fleet.build(300, seed=1)
    >>> len(fleet.hosts), len(set(fleet.ips)), fleet.users
    (300, 300, 60000)
    """

    hosts: tuple[str, ...]
    services: tuple[str, ...]
    regions: tuple[str, ...]
    ips: tuple[str, ...]
    external: tuple[str, ...]
    users: int
    host_service: np.ndarray
    host_region: np.ndarray
    utc_offset: np.ndarray
    cpu_base: np.ndarray
    cpu_swing: np.ndarray
    mem_base: np.ndarray
    latency_base: np.ndarray

    @classmethod
    def build(cls, hosts: int = 300, *, seed: int = 0) -> Fleet:
        """Lay out ``hosts`` hosts over services and regions, deterministically.

        Examples
        --------
        >>> Fleet.build(4, seed=0).services
        ('checkout', 'search', 'auth', 'api')
        """
        if hosts < 1:
            raise ConfigError(f"fleet: hosts must be >= 1, not {hosts}")
        rng = np.random.default_rng([seed, 0xF1EE7])
        service = np.arange(hosts) % len(SERVICES)
        region = rng.choice(len(REGIONS), size=hosts, p=_REGION_SHARE)
        names, ips = [], []
        per_tier: dict[tuple[str, int], int] = {}
        per_region: dict[int, int] = {}
        for svc, reg in zip(service.tolist(), region.tolist(), strict=True):
            prefix = SERVICES[svc][1]
            number = per_tier[prefix, reg] = per_tier.get((prefix, reg), 0) + 1
            names.append(f"{prefix}-{REGIONS[reg][0]}-{number:03d}")
            k = per_region[reg] = per_region.get(reg, -1) + 1
            ips.append(f"10.{reg}.{k // 250}.{k % 250 + 4}")
        outside = rng.integers(0, 256, size=(2000, 3))
        first = rng.choice(_PUBLIC_OCTETS, size=2000)
        external = tuple(f"{a}.{b}.{c}.{d % 254 + 1}" for a, (b, c, d) in zip(first, outside.tolist(), strict=True))
        arrays = {
            "host_service": service,
            "host_region": region,
            "utc_offset": np.array([round(REGIONS[r][1] * 60) for r in region]),
            "cpu_base": rng.uniform(15, 45, hosts),
            "cpu_swing": rng.uniform(5, 20, hosts),
            "mem_base": rng.uniform(35, 70, hosts),
            "latency_base": np.array([SERVICES[s][2] for s in service]) * rng.lognormal(0, 0.2, hosts),
        }
        for array in arrays.values():
            array.flags.writeable = False
        return cls(
            hosts=tuple(names),
            services=tuple(SERVICES[s][0] for s in service),
            regions=tuple(REGIONS[r][0] for r in region),
            ips=tuple(ips),
            external=tuple(dict.fromkeys(external)),
            users=200 * hosts,
            **arrays,
        )

    def entities(self, kind: str) -> tuple[str, ...]:
        """Names an incident can target: ``host``, ``service``, ``country``, ``src_ip``, ``dst_ip``.

        Examples
        --------
        >>> Fleet.build(3).entities("service")
        ('checkout', 'search', 'auth')
        """
        choices = {
            "host": self.hosts,
            "service": tuple(dict.fromkeys(self.services)),
            "country": tuple(name for name, _ in COUNTRIES),
            "src_ip": self.external,
            "dst_ip": self.ips,
        }
        if kind not in choices:
            raise ConfigError(f"fleet: unknown entity kind {kind!r}; known: {sorted(choices)}")
        return choices[kind]

    def sample(
        self, schema: str, ts: np.ndarray, rng: np.random.Generator, incidents: Sequence[Incident]
    ) -> tuple[pl.DataFrame, np.ndarray]:
        """Columns of ``schema`` (all but ``event_id`` and ``ts``) for events at ``ts`` (ms).

        Returns the frame and a ``keep`` mask: ``False`` where an incident suppressed
        the event (a silent host, dropped traffic).
        """
        samplers = {
            "server_metrics": _server_metrics,
            "user_events": _user_events,
            "network_flows": _network_flows,
        }
        if schema not in samplers:
            raise ConfigError(f"fleet: no model for schema {schema!r}; known: {sorted(samplers)}")
        return samplers[schema](self, ts, rng, incidents)


def _labels(names: Sequence[str], codes: np.ndarray) -> pl.Series:
    """``names[codes]`` as an Enum column: cheap to build, and encoded once per name."""
    return pl.Series(names, dtype=pl.Enum(names)).gather(codes)


def _window(ts: np.ndarray, incident: Incident) -> np.ndarray:
    return (ts >= incident.start_ms) & (ts < incident.end_ms)


def _pick(cum: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """Indices drawn with the probabilities whose cumulative sum is ``cum``."""
    return np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), len(cum) - 1)


def _server_metrics(
    fleet: Fleet, ts: np.ndarray, rng: np.random.Generator, incidents: Sequence[Incident]
) -> tuple[pl.DataFrame, np.ndarray]:
    n = len(ts)
    host = rng.integers(0, len(fleet.hosts), n)
    wave = _DAY_WAVE[(ts // 60_000 + fleet.utc_offset[host]) % 1440]
    cpu = fleet.cpu_base[host] + fleet.cpu_swing[host] * wave + rng.normal(0, 3, n)
    mem = fleet.mem_base[host] + 2 * wave + rng.normal(0, 1, n)
    load = 1 + np.clip(cpu - 60, 0, None) / 40
    latency = rng.standard_gamma(2.0, n) * (fleet.latency_base[host] / 2) * load
    tail = rng.random(n) < 0.01
    latency[tail] *= 1 + 5 * rng.pareto(1.5, int(tail.sum()))
    status = np.full(n, 200, dtype=np.int64)
    other = np.flatnonzero(rng.random(n) >= _STATUS_CUM[0])  # not 200
    status[other] = _STATUS[1:][_pick(_STATUS_CUM[1:] - _STATUS_CUM[0], rng, len(other))]
    keep = np.ones(n, dtype=bool)
    for inc in incidents:
        level = inc.magnitude or 0.0
        if inc.kind in ("latency_degradation", "error_burst"):
            hit = _window(ts, inc) & (fleet.host_service[host] == _service_index(inc.entity))
        else:
            hit = _window(ts, inc) & (host == fleet.hosts.index(inc.entity))
        count = int(hit.sum())
        if inc.kind == "cpu_saturation":
            cpu[hit] = rng.uniform(level, 100, count)
        elif inc.kind == "memory_leak":
            progress = (ts[hit] - inc.start_ms) / (inc.end_ms - inc.start_ms)
            mem[hit] = mem[hit] + (level - mem[hit]) * progress + rng.normal(0, 0.3, count)
        elif inc.kind == "latency_degradation":
            latency[hit] *= level
        elif inc.kind == "error_burst":
            status[hit & (rng.random(n) < level)] = 500
        elif inc.kind == "host_silent":
            keep &= ~hit
    service = fleet.host_service[host]
    frame = pl.DataFrame(
        {
            "host": _labels(fleet.hosts, host),
            "cpu": np.clip(cpu, 0, 100).round(2),
            "mem": np.clip(mem, 0, 100).round(2),
            "latency_ms": np.clip(latency, 0, 3_600_000).round(2),
            "status": status,
            "service": _labels([name for name, _, _ in SERVICES], service),
            "region": _labels([name for name, _ in REGIONS], fleet.host_region[host]),
        }
    )
    return frame, keep


def _service_index(name: str) -> int:
    return [svc for svc, _, _ in SERVICES].index(name)


def _user_events(
    fleet: Fleet, ts: np.ndarray, rng: np.random.Generator, incidents: Sequence[Incident]
) -> tuple[pl.DataFrame, np.ndarray]:
    n = len(ts)
    user = (fleet.users * rng.random(n) ** 2).astype(np.int64)  # a few users are very active
    # A user's country and session rhythm derive from the user id, so they are stable.
    country = np.searchsorted(_COUNTRY_CUM, (user * 0.6180339887498949) % 1.0, side="right")
    country = np.minimum(country, len(COUNTRIES) - 1)
    session_ms = (300 + (user * 7919) % 1500) * 1000
    session = (ts + (user * 104729) % session_ms) // session_ms
    kind = _pick(_KIND_CUM, rng, n)
    keep = np.ones(n, dtype=bool)
    for inc in incidents:
        level = inc.magnitude or 0.0
        hit = _window(ts, inc) & (country == [c for c, _ in COUNTRIES].index(inc.entity))
        hit &= rng.random(n) < level
        if inc.kind == "error_burst":
            kind[hit] = _ERROR
        elif inc.kind == "traffic_drop":
            keep &= ~hit
    page = _pick(np.cumsum([0.1, 0.7, 0.2]), rng, n)  # home, product, category
    step = 6 + rng.integers(0, 4, n)
    path = np.select(
        [kind == 0, kind == 1, kind == 2, kind == 3, kind == 4],
        [page, 3, 4, step, 5],
        default=np.where(rng.random(n) < 0.5, 1, 8),  # errors: a product page or payment
    )
    duration = rng.lognormal(np.log(_KIND_MS[kind]), 0.8)
    frame = pl.DataFrame(
        {
            "user": user,
            "session": session,
            "kind": _labels(_KINDS, kind),
            "prefix": _PATHS.gather(path),
            "path_id": path,
            "product": (10_000 * rng.random(n) ** 3).astype(np.int64) + 1,
            "category": _CATEGORIES.gather(rng.integers(0, len(_CATEGORIES), n)),
            "duration_ms": np.clip(duration, 0, 86_400_000).round(1),
            "country": _labels([c for c, _ in COUNTRIES], country),
        }
    )
    user_id = pl.lit("u") + pl.col("user").cast(pl.String).str.zfill(6)
    frame = frame.select(
        user_id=user_id,
        session_id=pl.concat_str(user_id, pl.lit("-"), pl.col("session").cast(pl.String)),
        kind=pl.col("kind"),
        path=pl.when(pl.col("path_id") == 1)
        .then(pl.col("prefix") + pl.col("product").cast(pl.String))
        .when(pl.col("path_id") == 2)
        .then(pl.col("prefix") + pl.col("category"))
        .otherwise(pl.col("prefix")),
        duration_ms=pl.col("duration_ms"),
        country=pl.col("country"),
    )
    return frame, keep


def _network_flows(
    fleet: Fleet, ts: np.ndarray, rng: np.random.Generator, incidents: Sequence[Incident]
) -> tuple[pl.DataFrame, np.ndarray]:
    n, hosts = len(ts), len(fleet.hosts)
    outsider = hosts + (len(fleet.external) * rng.random(n) ** 2).astype(np.int64)
    family = _pick(np.cumsum([0.65, 0.25, 0.10]), rng, n)  # east-west, inbound, egress
    inside_a, inside_b = rng.integers(0, hosts, n), rng.integers(0, hosts, n)
    src = np.where(family == 1, outsider, inside_a)
    dst = np.where(family == 2, outsider, inside_b)
    port = np.zeros(n, dtype=np.int64)
    for index, (ports, shares) in enumerate((_EAST_WEST, _INBOUND, _EGRESS)):
        chosen = np.asarray(ports)[_pick(np.cumsum(shares), rng, n)]
        port = np.where(family == index, chosen, port)
    protocol = np.where(np.isin(port, [53, 123]), 1, 0)
    icmp = rng.random(n) < 0.01
    protocol[icmp], port[icmp] = 2, 0
    size = (40 + rng.lognormal(7.5, 1.6, n)).astype(np.int64)
    packets = np.maximum(1, np.ceil(size / rng.uniform(600, 1460, n))).astype(np.int64)
    p_reject = np.where(family == 0, 0.005, 0.01) + np.where((family == 1) & (port == 22), 0.5, 0)
    reject = rng.random(n) < p_reject
    addresses = list(fleet.ips) + list(fleet.external)
    for inc in incidents:
        level, in_window = inc.magnitude or 0.0, _window(ts, inc)
        if inc.kind == "port_scan":
            address = _address(addresses, inc.entity)
            probe = in_window & (rng.random(n) < level)
            count = int(probe.sum())
            targets = (zlib.crc32(inc.entity.encode()) + np.arange(3) * 7919) % hosts  # a few victims
            src[probe], dst[probe] = address, targets[rng.integers(0, 3, count)]
            port[probe], protocol[probe] = rng.integers(1, 65536, count), 0
            size[probe], packets[probe] = rng.integers(40, 80, count), 1
            reject[probe] = rng.random(count) < 0.85
        elif inc.kind == "traffic_spike":
            hit = in_window & (dst == _address(addresses, inc.entity))
            size[hit] = (size[hit] * level).astype(np.int64)
            packets[hit] = (packets[hit] * level).astype(np.int64)
    frame = pl.DataFrame(
        {
            "src_ip": _labels(addresses, src),
            "dst_ip": _labels(addresses, dst),
            "dst_port": port,
            "protocol": _labels(_PROTOCOLS, protocol),
            "bytes": size,
            "packets": packets,
            "action": _labels(_ACTIONS, reject.astype(np.int64)),
        }
    )
    return frame, np.ones(n, dtype=bool)


def _address(addresses: list[str], address: str) -> int:
    """Index of ``address`` in the table, appending it when it is new (e.g. an attacker)."""
    try:
        return addresses.index(address)
    except ValueError:
        addresses.append(address)
        return len(addresses) - 1
