"""What a backfill reads: input files found and their formats recognised.

`discover` walks directories (the run archive's `YYYY/MM/DD/...cap.gz` layout included), keeps
the files with a known suffix or in the archive's layout, recognises each file's format from
its first bytes (`detect_format`: a capture file, a raw bus dump or taptap JSON lines, gzip or
not) unless `--format` forces one, and orders capture files by their first record's time. A file
it cannot use is returned as a problem with the reason, never raised.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

from recorder.archive import archive_files
from recorder.capture import CaptureReader
from recorder.errors import CaptureFormatError, RecorderError, SourceError
from recorder.timestamps import to_millis

FORMATS = ("capture", "raw", "taptap-json")

_SUFFIXES = (".cap.gz", ".cap", ".bin", ".raw", ".dump", ".json", ".jsonl", ".log", ".gz")


class SkippedFile(RecorderError):
    """A file we could not (fully) read; carries where it failed."""


@dataclass
class InputFile:
    """One input file as `discover` found it: where, in which format, how large."""

    path: Path
    format: str
    size: int
    order: tuple[int, str] = (0, "")  # capture files sort by their first record's time


def detect_format(path: Path) -> str:
    """capture, raw or taptap-json, from the first bytes. Raises SkippedFile if none fits."""
    try:
        with path.open("rb") as stream:
            head = stream.read(4096)
    except OSError as error:
        raise SkippedFile(f"cannot read ({error.strerror})") from None
    if not head:
        raise SkippedFile("empty file")
    if head[:2] == b"\x1f\x8b":
        if b"taptap capture\x00" in head[:64]:
            return "capture"
        try:
            for _data, at in CaptureReader(path):
                if 2000 <= at.year <= 2200:
                    return "capture"
                break
        except CaptureFormatError:
            pass
        try:
            with gzip.open(path, "rb") as stream:
                head = stream.read(4096)
        except (OSError, EOFError) as error:
            raise SkippedFile(f"corrupt gzip data at offset 0 ({error})") from None
    text = head.lstrip()
    if text.startswith(b"{"):
        return "taptap-json"
    if b"\x7e\x07" in head:
        return "raw"
    raise SkippedFile("not a capture file, a raw bus dump or taptap JSON lines (format not recognised)")


def discover(paths: list[Path], forced_format: str | None) -> tuple[list[InputFile], list[tuple[Path, str]]]:
    """Expand directories, recognise formats, order capture files by time."""
    found: list[InputFile] = []
    problems: list[tuple[Path, str]] = []
    for root in paths:
        if not root.exists():
            problems.append((root, "does not exist"))
            continue
        if root.is_dir():
            archived = {path for _hour, path in archive_files(root)}
            candidates = sorted(
                path
                for path in root.rglob("*")
                if path.is_file() and (path in archived or path.name.endswith(_SUFFIXES))
            )
        else:
            candidates = [root]
        for path in candidates:
            try:
                kind = forced_format or detect_format(path)
                found.append(InputFile(path, kind, path.stat().st_size))
            except SkippedFile as error:
                problems.append((path, str(error)))
    for item in found:
        if item.format == "capture":
            item.order = (_first_record_ms(item.path), str(item.path))
        else:
            item.order = (0, str(item.path))
    # Capture files in time order (an archive's hours, possibly from several directories);
    # other formats keep their own time bases and follow in name order.
    found.sort(key=lambda item: (item.format != "capture", item.order))
    return found, problems


def _first_record_ms(path: Path) -> int:
    try:
        for _data, at in CaptureReader(path):
            return to_millis(at)
    except CaptureFormatError:
        pass
    return 0


def check_format(value: str | None) -> str | None:
    if value is not None and value not in FORMATS:
        raise SourceError(f"--format: {value!r} is not one of {', '.join(FORMATS)}")
    return value
