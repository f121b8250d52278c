"""An energy checkpoint that fails (a full disk) leaves nothing behind that the next one trusts.

Found by the soak (issue 19): a checkpoint that created a new series (a replaced optimizer's)
failed on a full disk; its row was rolled back but its ID stayed cached, and the next checkpoint,
once space returned, wrote hours for the missing series: `FOREIGN KEY constraint failed`, a
traceback, and the recorder died.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from recorder.energy import Changes, HourTotals, SeriesState
from recorder.storage.db import open_database
from recorder.storage.energy import EnergyStore

KEY = (4609, 18, bytes.fromhex("04C05B4000CD4719"))
DAY = date(2025, 6, 16)


def changes() -> Changes:
    hour = HourTotals(energy_wh=12.5, covered_ms=3_600_000, readings=180, peak_w=300.0)
    return Changes(
        series=[SeriesState(KEY, 1_750_060_800_000, 250.0)],
        hours=[(KEY, DAY, 8, hour)],
        days=[],
        newest_ms=1_750_060_800_000,
    )


def test_a_failed_checkpoints_new_series_is_inserted_again_by_the_next(tmp_path: Path) -> None:
    engine = open_database(tmp_path / "state.db")
    store = EnergyStore(engine)
    unwritable: dict[str, Any] = {"timezone": object()}  # fails inside the transaction, after the insert
    with pytest.raises(TypeError):
        store.checkpoint(changes(), unwritable)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT COUNT(*) FROM energy_series")).scalar() == 0  # rolled back
    store.checkpoint(changes(), {"timezone": "UTC"})
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT s.node_id, h.energy_wh FROM energy_hours h JOIN energy_series s ON s.id = h.series_id"
            )
        ).all()
    assert [tuple(row) for row in rows] == [(18, 12.5)]
