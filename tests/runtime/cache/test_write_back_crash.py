"""What write-back loses when the process dies: measured with a real kill -9.

docs/caching.md states the window: updates acknowledged within ``write_back.delay`` (plus
the flush's own time) of a crash may be lost; anything older is in the database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from microforge.runtime.db import sqlite_url

HERE = Path(__file__).parent
DELAY = 0.3
SLACK = 0.3  # the flush itself, and scheduling on a busy 2-core machine


def start_writer(database: Path) -> subprocess.Popen[str]:
    # The writer imports this folder's recording.py, which imports tests/support.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parents[1])])}
    return subprocess.Popen(
        [sys.executable, str(HERE / "write_back_writer.py"), sqlite_url(database), str(DELAY)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def read_acks(process: subprocess.Popen[str], until: int) -> dict[int, float]:
    """``ack`` lines (update number -> time answered) until ``until`` updates were made."""
    assert process.stdout is not None
    acks: dict[int, float] = {}
    deadline = time.monotonic() + 60
    for line in process.stdout:
        if line.startswith("ack"):
            _, n, at = line.split()
            acks[int(n)] = float(at)
            if int(n) >= until:
                break
        assert time.monotonic() < deadline, "the writer made no progress"
    return acks


def stored_price(database: Path) -> int:
    engine = sa.create_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        price = conn.execute(sa.text("SELECT price FROM cache_products")).scalar_one()
    engine.dispose()
    return int(price)


def test_kill_9_loses_at_most_the_write_back_window(tmp_path: Path) -> None:
    database = tmp_path / "crash.db"
    writer = start_writer(database)
    acks = read_acks(writer, until=150)  # about a second of updates: several flushes
    writer.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    writer.wait(timeout=30)
    assert writer.stdout is not None
    for line in writer.stdout:  # acks printed before the kill landed
        if line.startswith("ack"):
            _, n, at = line.split()
            acks[int(n)] = float(at)

    persisted = stored_price(database)
    last = max(acks)
    assert persisted > 0, "nothing was flushed in a second of writes"
    lost = [n for n in acks if n > persisted]
    # Every lost update was acknowledged within the window before the kill.
    oldest_lost_age = killed_at - min(acks[n] for n in lost) if lost else 0.0
    assert oldest_lost_age <= DELAY + SLACK, (persisted, last, oldest_lost_age)
    print(
        f"kill -9 after {last} acknowledged updates: {len(lost)} lost, the oldest "
        f"acknowledged {oldest_lost_age * 1000:.0f} ms before the kill "
        f"(delay {DELAY * 1000:.0f} ms)"
    )


def test_a_graceful_stop_flushes_everything(tmp_path: Path) -> None:
    database = tmp_path / "graceful.db"
    writer = start_writer(database)
    acks = read_acks(writer, until=20)
    writer.send_signal(signal.SIGTERM)
    assert writer.stdout is not None
    rest = writer.stdout.read()
    assert writer.wait(timeout=30) == 0
    assert "closed" in rest
    for line in rest.splitlines():
        if line.startswith("ack"):
            acks[int(line.split()[1])] = 0.0
    assert stored_price(database) == max(acks)
