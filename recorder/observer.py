"""Domain state over the event stream: readings, node tables, identity.

The observer consumes `recorder.protocol` events and produces, in stream order (readings in one
list, the rest in another: `Observed`):

* a `Reading` (`recorder.reading`: a compact tuple) for every power report seen for the first
  time, from the placement step (`recorder.placement`: slot clock, de-duplication, identity at
  the measurement time);
* `NodeTableAssembled` when a gateway's node table has been read to its end (see "Node table
  paging" below);
* `MappingLearned` when a (gateway, node ID) -> long address mapping is new or changed, whether
  from a node table, a topology report or gateway enumeration;
* `GatewayLearned` when a gateway's long address or firmware version is new or changed.

Identity comes from three places (NOTES 9): node tables (whole table, about daily), topology
reports (each node at sunrise and now and then) and gateway identify/enumeration frames. The
identity of an optimizer is its long address; node IDs are the controller's numbers and may
change. IDs with bit 15 set are aliases that appear after re-commissioning (NOTES 4); they are
mapped like any other ID and flagged as aliases. A mapping is learned the moment its event is
handled, so a report later in the same stream resolves with it.

A node absent from a later node table keeps its mapping: absence is not evidence of
replacement, and a partial view (a missed page) must never erase what we know.

Node table paging and bit-15 aliases
------------------------------------
The controller reads a table page by page: it asks for a start index (PV 0x26), the gateway
answers with up to a dozen entries from that index on (0x27, possibly starting later: gaps
are normal) and the controller asks next for the index after the page. What we know of alias
IDs (an ID with bit 15 set naming the same long address as the ID without it, seen after an
optimizer was replaced or re-commissioned):

* an alias is listed beside the plain IDs, not in numeric order of the raw 16 bits: a gateway
  may list `0x800A` right after `0x000A`, or its page's aliases after its plain entries;
* the controller then continues from the plain ID: after a page ending `0x000A, 0x800A` it
  asks for `0x000B`, not `0x800B`.

So a page follows on from the previous one when it is asked for (or, when we did not see the
request, starts at or after) the last entry's ID + 1 or the highest ID + 1, each with or
without bit 15. When we saw the controller's request and it asks for somewhere else, the
controller is still right: it received every page, and we may have missed one in the noise.
The table is kept and the jump counted (`node_table_jumps`): the entries we did see are true,
and an entry we missed keeps its mapping (see above), whereas discarding the whole table would
leave a replacement it announces unapplied, every reading of the new unit under the old
barcode, until the next table a day later. Only a page that goes backwards without a request
we saw (part of another table, whose start we missed) ends the table in progress as
incomplete.

The observer does no IO and never reads the clock. It is seeded with known mapping history at
start (`Observer(identities=..., gateways=...)`) so barcodes resolve from the first report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from recorder.counters import Counters
from recorder.identity import IdentityMap
from recorder.placement import Placement
from recorder.protocol.barcode import barcode_from_address
from recorder.protocol.events import (
    Event,
    GatewayIdAssigned,
    GatewayIdentityObserved,
    GatewayVersionObserved,
    NodeTableEntry,
    NodeTablePage,
    TopologyReportReceived,
)
from recorder.reading import Reading
from recorder.timestamps import to_millis

SOURCE_NODE_TABLE = "node_table"
SOURCE_TOPOLOGY = "topology_report"
SOURCE_ENUMERATION = "enumeration"
SOURCE_IMPORT = "import"
SOURCE_MANUAL = "manual"

ALIAS_BIT = 0x8000


@dataclass(frozen=True, slots=True)
class NodeTableAssembled:
    gateway_id: int
    entries: tuple[NodeTableEntry, ...]
    completed_at: datetime


@dataclass(frozen=True, slots=True)
class MappingLearned:
    gateway_id: int
    node_id: int
    long_address: bytes
    source: str
    observed_at: datetime
    previous_long_address: bytes | None

    @property
    def barcode(self) -> str | None:
        return barcode_from_address(self.long_address)

    @property
    def is_alias(self) -> bool:
        return bool(self.node_id & ALIAS_BIT)


@dataclass(frozen=True, slots=True)
class GatewayLearned:
    gateway_id: int
    long_address: bytes | None
    version: str | None
    observed_at: datetime


IdentityOutput = NodeTableAssembled | MappingLearned | GatewayLearned
Output = Reading | IdentityOutput  # what the state store persists (`StateStore.record_outputs`)


class Observed(NamedTuple):
    """What the observer made of a list of events: readings, and what it learned."""

    readings: list[Reading]
    learned: list[IdentityOutput]


@dataclass(slots=True)
class _TableInProgress:
    entries: dict[int, bytes] = field(default_factory=dict)
    # Where the next page may start, bit 15 cleared (see "Node table paging" above).
    continuations: frozenset[int] = frozenset({0})


@dataclass(slots=True)
class ObserverCounters(Counters):
    """What the observer made of node tables and identity traffic."""

    node_tables: int = 0
    incomplete_node_tables: int = 0
    ignored_node_table_pages: int = 0
    node_table_jumps: int = 0
    mapping_changes: int = 0
    topology_node_id_mismatches: int = 0


class Observer:
    """Events in, readings and identity outputs out (see the module docstring). One per stream;
    it shares its `IdentityMap` with whoever seeded it, and learns into it."""

    def __init__(
        self,
        identities: IdentityMap | None = None,
        gateways: Mapping[int, bytes] | None = None,
        *,
        readings: bool = True,
    ) -> None:
        identities = identities if identities is not None else IdentityMap()
        self.placement = Placement(identities)
        # False: identity only (a backfill's first pass), power reports are passed over unread.
        self._readings = readings
        self.gateway_addresses: dict[int, bytes] = dict(gateways or {})
        self.gateway_versions: dict[int, str] = {}
        self.counters = ObserverCounters()
        self._tables: dict[int, _TableInProgress] = {}

    @property
    def identities(self) -> IdentityMap:
        return self.placement.identities

    @identities.setter
    def identities(self, identities: IdentityMap) -> None:
        """Replace the mapping history (reloaded after another process changed it)."""
        self.placement.identities = identities

    # ----------------------------------------------------------------------------------------

    def feed(self, events: list[Event]) -> Observed:
        """The readings and the identity outputs of `events`, each list in stream order."""
        readings: list[Reading] = []
        learned: list[IdentityOutput] = []

        def handle(event: Event) -> None:
            self._handle(event, learned)

        if self._readings:
            self.placement.place(events, readings, handle)
        else:
            for event in events:
                if type(event) is not tuple:
                    handle(event)
        return Observed(readings, learned)

    def _handle(self, event: Event, outputs: list[IdentityOutput]) -> None:
        """An event other than a power report."""
        if isinstance(event, TopologyReportReceived):
            report = event.report
            node_id = report.node_id or event.node_id
            if report.node_id and report.node_id != event.node_id:
                self.counters.topology_node_id_mismatches += 1
            self._learn(
                event.gateway_id, node_id, report.long_address, SOURCE_TOPOLOGY, event.received_at, outputs
            )
        elif isinstance(event, NodeTablePage):
            self._node_table_page(event, outputs)
        elif isinstance(event, GatewayIdentityObserved):
            if not event.during_enumeration:
                self._learn_gateway(event.gateway_id, event.long_address, None, event.received_at, outputs)
        elif isinstance(event, GatewayIdAssigned):
            self._learn_gateway(event.new_gateway_id, event.long_address, None, event.received_at, outputs)
        elif isinstance(event, GatewayVersionObserved):
            self._learn_gateway(event.gateway_id, None, event.version, event.received_at, outputs)

    def resolve(self, gateway_id: int, node_id: int, at_ms: int) -> tuple[bytes | None, str | None]:
        """Long address and barcode of the optimizer behind a node ID at time `at_ms`."""
        long_address = self.identities.resolve((gateway_id, node_id), at_ms)
        if long_address is None:
            return None, None
        return long_address, barcode_from_address(long_address)

    def _learn(
        self,
        gateway_id: int,
        node_id: int,
        long_address: bytes,
        source: str,
        at: datetime,
        outputs: list[IdentityOutput],
    ) -> None:
        changed, previous = self.identities.learn((gateway_id, node_id), long_address, source, to_millis(at))
        if not changed:
            return
        if previous is not None:
            self.counters.mapping_changes += 1
        outputs.append(MappingLearned(gateway_id, node_id, long_address, source, at, previous))

    def _learn_gateway(
        self,
        gateway_id: int,
        long_address: bytes | None,
        version: str | None,
        at: datetime,
        outputs: list[IdentityOutput],
    ) -> None:
        changed = False
        if long_address is not None and self.gateway_addresses.get(gateway_id) != long_address:
            self.gateway_addresses[gateway_id] = long_address
            changed = True
        if version is not None and self.gateway_versions.get(gateway_id) != version:
            self.gateway_versions[gateway_id] = version
            changed = True
        if changed:
            outputs.append(
                GatewayLearned(
                    gateway_id,
                    self.gateway_addresses.get(gateway_id),
                    self.gateway_versions.get(gateway_id),
                    at,
                )
            )

    @staticmethod
    def _continuations(entries: tuple[NodeTableEntry, ...]) -> frozenset[int]:
        """Indexes (bit 15 cleared) at which the page after one holding `entries` may start."""
        last = entries[-1].node_id & ~ALIAS_BIT
        highest = max(entry.node_id & ~ALIAS_BIT for entry in entries)
        return frozenset({last + 1, highest + 1})

    def _node_table_page(self, page: NodeTablePage, outputs: list[IdentityOutput]) -> None:
        """Assemble pages: a table starts with a request for index 0 and ends with an empty page.

        How pages follow on, and why a table is not dropped when the controller's request
        differs from what we expected: see "Node table paging" in the module docstring.
        """
        gateway_id = page.gateway_id
        table = self._tables.get(gateway_id)
        if page.requested_index == 0:
            if table is not None:
                self.counters.incomplete_node_tables += 1  # the controller started over
            table = self._tables[gateway_id] = _TableInProgress()
        elif table is None:
            self.counters.ignored_node_table_pages += 1  # joined in the middle of a table
            return
        elif page.requested_index is not None:
            if page.requested_index & ~ALIAS_BIT not in table.continuations:
                self.counters.node_table_jumps += 1  # a page we missed, or a controller that skips
        elif (page.start_index & ~ALIAS_BIT) < min(table.continuations):
            # The request was not seen and the page goes backwards: another table's page.
            self.counters.incomplete_node_tables += 1
            del self._tables[gateway_id]
            return
        if page.entries:
            for entry in page.entries:
                table.entries[entry.node_id] = entry.long_address
            table.continuations = self._continuations(page.entries)
            return
        del self._tables[gateway_id]
        self.counters.node_tables += 1
        entries = tuple(
            NodeTableEntry(address, node_id) for node_id, address in sorted(table.entries.items())
        )
        outputs.append(NodeTableAssembled(gateway_id, entries, page.received_at))
        for entry in entries:
            self._learn(
                gateway_id, entry.node_id, entry.long_address, SOURCE_NODE_TABLE, page.received_at, outputs
            )
