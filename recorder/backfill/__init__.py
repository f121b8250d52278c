"""`recorder backfill`: recorded traffic into InfluxDB, one module per thing it owns.

- `inputs`: finding input files (directories walked, the archive's layout) and recognising
  their format from the content (`discover`, `detect_format`, `check_format`, `FORMATS`);
- `taptap_json`: the JSON lines `taptap observe` prints, recognised by content;
- `readahead`: bus files to frame bodies, in this process or a child process
  (`read_frames`, `read_ahead_pays`);
- `loop`: `Backfill`, the replay loop (files -> pipeline -> points, one or two passes; its
  module docstring is the theory of operation), with `BackfillOptions`, `Summary`,
  `Interrupted` and `terminal_progress`;
- `held`: readings waiting for their node's identity (memory up to a bound, then a scratch
  file), released when a mapping turns up or the input ends;
- `writer`: the thread that sends batches of lines to InfluxDB while decoding goes on.

Exports `Backfill`, `BackfillOptions`, `Summary`, `Interrupted`, `terminal_progress`,
`discover`, `detect_format`, `check_format`, `FORMATS`, `read_ahead_pays` and
`READ_AHEAD_BYTES`. They are imported on first use (PEP 562 `__getattr__`), so importing this
package, or `recorder.backfill.taptap_json` alone (`nodes import` does), pulls in nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from recorder.lazy import lazy_exports

if TYPE_CHECKING:
    from recorder.backfill.inputs import FORMATS, check_format, detect_format, discover
    from recorder.backfill.loop import Backfill, BackfillOptions, Interrupted, Summary, terminal_progress
    from recorder.backfill.readahead import READ_AHEAD_BYTES, read_ahead_pays

__all__ = [
    "FORMATS",
    "READ_AHEAD_BYTES",
    "Backfill",
    "BackfillOptions",
    "Interrupted",
    "Summary",
    "check_format",
    "detect_format",
    "discover",
    "read_ahead_pays",
    "terminal_progress",
]

_HOMES = {
    "FORMATS": "recorder.backfill.inputs",
    "check_format": "recorder.backfill.inputs",
    "detect_format": "recorder.backfill.inputs",
    "discover": "recorder.backfill.inputs",
    "Backfill": "recorder.backfill.loop",
    "BackfillOptions": "recorder.backfill.loop",
    "Interrupted": "recorder.backfill.loop",
    "Summary": "recorder.backfill.loop",
    "terminal_progress": "recorder.backfill.loop",
    "READ_AHEAD_BYTES": "recorder.backfill.readahead",
    "read_ahead_pays": "recorder.backfill.readahead",
}

__getattr__ = lazy_exports(__name__, _HOMES)
