"""Decode throughput of the protocol stack on realistic polling traffic.

Builds a ~20 MB stream the way a busy bus looks: receive request/response pairs for one or two
gateways (most of them empty, in the smallest `00 FF`-style status form), a power report every
few polls (sometimes two bundled), the occasional full `00 E0` status, pings, and now and then a
node-table exchange. Then decodes it in 4 KiB chunks (what a serial or TCP read returns) and
prints MB/s, frames/s and power reports/s. Target from issue "Protocol stack": >= 10 MB/s.

    python benchmarks/decode.py [--megabytes 20] [--observer]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recorder.protocol import encode
from recorder.protocol.barcode import VENDOR_PREFIX
from recorder.protocol.events import NodeTableEntry, PowerReport
from recorder.protocol.pv import application as app
from recorder.protocol.slots import add_slots
from recorder.protocol.stack import Stack


def build_stream(target_bytes: int, seed: int = 1, identity: bool = True) -> bytes:
    """The polling traffic; `identity=False` leaves out the node tables, so that no report's
    node is ever identified (every reading of a backfill then waits for a barcode)."""
    rng = random.Random(seed)
    parts: list[bytes] = []
    size = 0
    packet_numbers = {0x1201: 0x1000, 0x1202: 0x2000}
    slot = 0
    sequence = 1
    polls = 0
    addresses = [VENDOR_PREFIX + bytes((0x40, 0x00, 0xC2, n >> 8, n & 0xFF)) for n in range(135)]
    while size < target_bytes:
        for gateway_id in packet_numbers:
            polls += 1
            slot = add_slots(slot, 9)
            number = packet_numbers[gateway_id]
            frame_bytes = [encode.receive_request(gateway_id, number)]
            packets = []
            if polls % 4 == 0:
                for _ in range(2 if rng.random() < 0.2 else 1):
                    report = PowerReport(
                        voltage_in_raw=rng.randrange(600, 900),
                        voltage_out_raw=rng.randrange(300, 450),
                        duty_cycle_raw=255,
                        current_in_raw=rng.randrange(0, 1800),
                        temperature_raw=rng.randrange(-100, 500),
                        unknown=b"\x81\x00\x6e",
                        slot_counter=add_slots(slot, -rng.randrange(100, 4000)),
                        rssi=rng.randrange(120, 200),
                    )
                    packets.append(
                        encode.packet(
                            app.POWER_REPORT, rng.randrange(2, 137), app.encode_power_report(report)
                        )
                    )
            status = 0x00E0 if polls % 16 == 0 else (0x00EE if packets else 0x00FF)
            last = (number + len(packets) - 1) & 0xFFFF if packets else (number - 1) & 0xFFFF
            frame_bytes.append(encode.receive_response(gateway_id, status, last, slot, packets))
            packet_numbers[gateway_id] = (number + len(packets)) & 0xFFFF
            if polls % 500 == 0:
                frame_bytes += [encode.ping_request(gateway_id), encode.ping_response(gateway_id)]
            if identity and polls % 5000 == 0:
                for start in range(2, 137, 12):
                    sequence = sequence % 253 + 1
                    entries = [
                        NodeTableEntry(addresses[n - 2], n) for n in range(start, min(start + 12, 137))
                    ]
                    frame_bytes.append(
                        encode.command_request(
                            gateway_id, app.NODE_TABLE_REQUEST, sequence, app.encode_node_table_request(start)
                        )
                    )
                    frame_bytes.append(
                        encode.command_response(
                            gateway_id,
                            app.NODE_TABLE_RESPONSE,
                            sequence,
                            app.encode_node_table_response(start, entries),
                        )
                    )
            for chunk in frame_bytes:
                parts.append(chunk)
                size += len(chunk)
    return b"".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--megabytes", type=float, default=20.0)
    parser.add_argument("--chunk", type=int, default=4096)
    parser.add_argument("--observer", action="store_true", help="also run the observer (readings)")
    args = parser.parse_args()

    started = time.perf_counter()
    stream = build_stream(int(args.megabytes * 1_000_000))
    print(f"built {len(stream) / 1e6:.1f} MB of polling traffic in {time.perf_counter() - started:.1f} s")

    stack = Stack()
    observer = None
    if args.observer:
        from recorder.observer import Observer

        observer = Observer()
    at = datetime(2025, 6, 21, 12, tzinfo=UTC)
    chunk = args.chunk
    events = 0
    started_cpu = time.process_time()
    started = time.perf_counter()
    for offset in range(0, len(stream), chunk):
        batch = stack.feed(stream[offset : offset + chunk], at)
        events += len(batch)
        if observer is not None and batch:
            observer.feed(batch)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - started_cpu
    counters = stack.counters.as_dict()
    megabytes = len(stream) / 1e6
    print(f"decoded {megabytes:.1f} MB in {elapsed:.2f} s wall, {cpu:.2f} s CPU")
    print(f"  {megabytes / elapsed:.1f} MB/s   (target >= 10 MB/s)")
    print(f"  {counters['frames'] / elapsed:,.0f} frames/s   ({counters['frames']:,} frames)")
    reports = counters["power_reports"]
    print(f"  {reports / elapsed:,.0f} power reports/s   ({reports:,} reports)")
    errors, noise = counters["checksum_errors"], counters["noise_bytes"]
    print(f"  checksum errors {errors}, noise bytes {noise}, events {events:,}")


if __name__ == "__main__":
    main()
