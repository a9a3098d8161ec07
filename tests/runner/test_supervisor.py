"""The process supervisor behind `microforge up`, with real child processes.

Children are real uvicorn servers (tests/gateway/upstream_app.py) and tiny Python
scripts. Every wait polls with a deadline; a finished test leaves no process behind.
"""

from __future__ import annotations

import io
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from microforge.runner import (
    ProcessSpec,
    ReadinessError,
    Supervisor,
    free_port,
    port_is_free,
)
from microforge.runner.supervisor import DUPLICATE_SIGNAL_WINDOW_S

HERE = Path(__file__).parent
UPSTREAM_APP = HERE.parent / "gateway" / "upstream_app.py"
DEADLINE_S = 30.0

# Drivers play `microforge up`: a parent process that owns a Supervisor.
TWO_SERVERS_DRIVER = """
import json, sys
from pathlib import Path
from microforge.runner import ProcessSpec, Supervisor, free_port

specs = []
for name in ("alpha", "beta"):
    port = free_port()
    argv = [sys.executable, sys.argv[1], str(port)]
    ready = f"http://127.0.0.1:{port}/health/ready"
    specs.append(ProcessSpec(name, argv, Path.cwd(), {}, ready))
sup = Supervisor()
sup.start(specs)
sup.wait_ready(30)
sys.stdout.write("PIDS " + json.dumps(sup.pids) + "\\n")
sys.stdout.flush()
sys.exit(sup.run_forever())
"""

STUBBORN_CHILD = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
time.sleep(600)
"""

STUBBORN_DRIVER = """
import json, sys
from pathlib import Path
from microforge.runner import ProcessSpec, Supervisor

sup = Supervisor()
sup.start([ProcessSpec("stubborn", [sys.executable, "-c", sys.argv[1]], Path.cwd(), {}, None)])
sys.stdout.write("PIDS " + json.dumps(sup.pids) + "\\n")
sys.stdout.flush()
sys.exit(sup.run_forever(grace=120))
"""


# -- helpers ----------------------------------------------------------------------------


def wait_until(predicate: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {deadline_s}s waiting for {what}")
        time.sleep(0.02)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has already exited; it only waits for its parent to collect it.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def call_with_deadline(fn: Callable[[], int], deadline_s: float = DEADLINE_S) -> int:
    """Run a blocking call in a thread, so a hang fails the test instead of freezing it."""
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    thread.start()
    thread.join(deadline_s)
    assert result, f"call did not return within {deadline_s}s"
    return result[0]


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def server_spec(name: str) -> ProcessSpec:
    port = free_port()
    return ProcessSpec(
        name=name,
        argv=[sys.executable, str(UPSTREAM_APP), str(port)],
        cwd=HERE,
        env={},
        ready_url=f"http://127.0.0.1:{port}/health/ready",
    )


@pytest.fixture
def out() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def supervisor(out: io.StringIO) -> Iterator[Supervisor]:
    with Supervisor(out=out) as sup:
        yield sup


# -- ports ------------------------------------------------------------------------------


def test_free_port_and_port_is_free() -> None:
    port = free_port()
    assert 0 < port < 65536
    assert port_is_free(port)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert not port_is_free(port)
    assert port_is_free(port)


# -- signals: the real `microforge up` situation -----------------------------------------


class Driver:
    """A driver script in its own session, as a shell runs a job, with its output
    collected by a thread so that every wait can have a deadline."""

    def __init__(self, tmp_path: Path, source: str, *args: str) -> None:
        script = tmp_path / "driver.py"
        script.write_text(source)
        self.proc = subprocess.Popen(
            [sys.executable, str(script), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._queue.put(raw.decode(errors="replace").rstrip("\n"))

    def wait_for_line(self, pattern: str) -> str:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            while not self._queue.empty():
                self.lines.append(self._queue.get())
                if re.search(pattern, self.lines[-1]):
                    return self.lines[-1]
            if time.monotonic() > deadline or self.proc.poll() is not None:
                output = "\n".join(self.lines)
                pytest.fail(f"driver never printed {pattern!r}:\n{output}")
            time.sleep(0.02)

    def pids(self) -> dict[str, int]:
        pids: dict[str, int] = json.loads(self.wait_for_line(r"^PIDS ").removeprefix("PIDS "))
        return pids

    def signal(self, signum: signal.Signals) -> None:
        # The whole group, as Ctrl-C in a terminal does; the supervised children live in
        # groups of their own and must not receive it.
        os.killpg(self.proc.pid, signum)

    def output(self) -> str:
        self._reader.join(timeout=DEADLINE_S)
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return "\n".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_all_children_and_exits_0(tmp_path: Path, signum: signal.Signals) -> None:
    driver = Driver(tmp_path, TWO_SERVERS_DRIVER, str(UPSTREAM_APP))
    try:
        pids = driver.pids()
        assert set(pids) == {"alpha", "beta"}
        assert all(pid_alive(pid) for pid in pids.values())

        driver.signal(signum)
        assert driver.proc.wait(timeout=DEADLINE_S) == 0
        wait_until(lambda: not any(pid_alive(pid) for pid in pids.values()), "children to exit")
    finally:
        driver.kill()
    output = driver.output()
    # Children's lines are prefixed with their padded name (plain: not a terminal).
    assert re.search(r"^alpha\s+\| upstream_app listening on", output, re.MULTILINE), output
    assert re.search(r"^beta\s+\| upstream_app listening on", output, re.MULTILINE), output
    assert "\x1b[" not in output


def test_second_ctrl_c_skips_the_grace_period(tmp_path: Path) -> None:
    driver = Driver(tmp_path, STUBBORN_DRIVER, STUBBORN_CHILD)
    try:
        pid = driver.pids()["stubborn"]
        driver.wait_for_line(r"^stubborn\s+\| ignoring SIGTERM")
        first = time.monotonic()
        driver.signal(signal.SIGINT)
        driver.wait_for_line(r"\| stopping stubborn")  # now inside a 120 s grace period
        # Signals closer together than the window count as one (wrappers forward them).
        time.sleep(max(0.0, first + DUPLICATE_SIGNAL_WINDOW_S + 0.1 - time.monotonic()))
        started = time.monotonic()
        driver.signal(signal.SIGINT)
        assert driver.proc.wait(timeout=DEADLINE_S) == 0
        assert time.monotonic() - started < 10
        assert not pid_alive(pid)
    finally:
        driver.kill()
    assert "stubborn stopping at once; killing it" in driver.output()


def test_a_forwarded_duplicate_ctrl_c_still_stops_gracefully(tmp_path: Path) -> None:
    # `uv run` forwards the terminal's SIGINT, so one Ctrl-C arrives twice at once.
    driver = Driver(tmp_path, STUBBORN_DRIVER, STUBBORN_CHILD)
    pid = driver.pids()["stubborn"]
    try:
        driver.wait_for_line(r"^stubborn\s+\| ignoring SIGTERM")
        driver.signal(signal.SIGINT)
        driver.signal(signal.SIGINT)
        driver.wait_for_line(r"\| stopping stubborn")
        time.sleep(0.2)  # no poll target: proving an absence, the window is 0.5 s
        assert driver.proc.poll() is None, "the duplicate signal forced an immediate kill"
    finally:
        driver.kill()
        if pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)


# -- children that fail -----------------------------------------------------------------

CRASH_ON_TRIGGER = """
import pathlib, sys, time
trigger = pathlib.Path(sys.argv[1])
print("crasher: waiting", flush=True)
while not trigger.exists():
    time.sleep(0.01)
print("crasher: fatal error", flush=True)
sys.exit(3)
"""


def test_crashed_child_stops_the_others_and_exits_1(
    supervisor: Supervisor, out: io.StringIO, tmp_path: Path
) -> None:
    trigger = tmp_path / "crash-now"
    crasher = ProcessSpec("crasher", python(CRASH_ON_TRIGGER, str(trigger)), tmp_path, {}, None)
    supervisor.start([server_spec("web"), crasher])
    supervisor.wait_ready(DEADLINE_S)
    pids = supervisor.pids

    trigger.touch()
    assert call_with_deadline(supervisor.run_forever) == 1

    assert not any(pid_alive(pid) for pid in pids.values())
    text = out.getvalue()
    assert "crasher: fatal error" in text
    assert "crasher exited with code 3" in text


def test_child_that_never_gets_ready_is_named(
    supervisor: Supervisor, out: io.StringIO, tmp_path: Path
) -> None:
    stuck = ProcessSpec(
        "stuck",
        python("import time; print('stuck: warming up', flush=True); time.sleep(600)"),
        tmp_path,
        {},
        f"http://127.0.0.1:{free_port()}/health/ready",
    )
    supervisor.start([server_spec("web"), stuck])
    wait_until(lambda: "warming up" in out.getvalue(), "the stuck child's first line")

    with pytest.raises(ReadinessError, match=r"^stuck did not become ready within 1s") as info:
        supervisor.wait_ready(1.0)
    assert info.value.name == "stuck"
    assert "stuck: warming up" in info.value.tail
    assert "stuck: warming up" in str(info.value)

    pids = supervisor.pids
    assert supervisor.stop() == 0  # nobody died on their own
    assert supervisor.stop() == 0  # and stopping twice is harmless
    assert not any(pid_alive(pid) for pid in pids.values())


def test_child_exiting_during_startup_is_reported_with_its_output(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    boom = ProcessSpec(
        "boom",
        python("import sys; print('boom: bad config'); sys.exit(2)"),
        tmp_path,
        {},
        f"http://127.0.0.1:{free_port()}/health/ready",
    )
    supervisor.start([server_spec("web"), boom])
    with pytest.raises(ReadinessError, match=r"^boom exited with code 2") as info:
        supervisor.wait_ready(DEADLINE_S)
    assert info.value.tail == ["boom: bad config"]
    pids = supervisor.pids
    assert supervisor.stop() == 1
    assert not any(pid_alive(pid) for pid in pids.values())


def test_run_returns_1_when_startup_fails(out: io.StringIO, tmp_path: Path) -> None:
    boom = ProcessSpec("boom", python("raise SystemExit(4)"), tmp_path, {}, None)
    with Supervisor(out=out) as sup:
        assert sup.run([boom], ready_timeout=DEADLINE_S) == 1
    assert "boom exited with code 4 before becoming ready" in out.getvalue()


# -- never leave orphans ----------------------------------------------------------------


def test_failed_start_stops_children_already_running(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    missing = ProcessSpec("missing", [str(tmp_path / "no-such-program")], tmp_path, {}, None)
    with pytest.raises(FileNotFoundError):
        supervisor.start([server_spec("web"), missing])
    pids = supervisor.pids
    assert set(pids) == {"web"}
    assert not pid_alive(pids["web"])


def test_exception_in_with_block_stops_children(out: io.StringIO) -> None:
    pids: dict[str, int] = {}

    def caller() -> None:
        with Supervisor(out=out) as sup:
            sup.start([server_spec("web")])
            pids.update(sup.pids)
            raise RuntimeError("caller failed")

    with pytest.raises(RuntimeError, match="caller failed"):
        caller()
    assert not pid_alive(pids["web"])


def test_grandchildren_are_stopped_with_their_parent(
    supervisor: Supervisor, out: io.StringIO, tmp_path: Path
) -> None:
    # `sh -c` wrappers and worker processes: the whole process group must go.
    script = f'{sys.executable} -c "import time; time.sleep(600)" & echo "grandchild $!"; wait'
    supervisor.start([ProcessSpec("wrapper", ["sh", "-c", script], tmp_path, {}, None)])
    wait_until(lambda: "grandchild " in out.getvalue(), "the grandchild's pid")
    match = re.search(r"grandchild (\d+)", out.getvalue())
    assert match is not None
    grandchild = int(match.group(1))
    assert pid_alive(grandchild)

    supervisor.stop()
    wait_until(lambda: not pid_alive(grandchild), "the grandchild to exit")


def test_child_ignoring_sigterm_is_killed_after_grace(
    supervisor: Supervisor, out: io.StringIO, tmp_path: Path
) -> None:
    stubborn = ProcessSpec("stubborn", python(STUBBORN_CHILD), tmp_path, {}, None)
    supervisor.start([stubborn])
    wait_until(lambda: "ignoring SIGTERM" in out.getvalue(), "the child to ignore SIGTERM")
    pid = supervisor.pids["stubborn"]

    started = time.monotonic()
    assert supervisor.stop(grace=0.5) == 0
    assert time.monotonic() - started < 5
    assert not pid_alive(pid)
    assert "stubborn did not stop within 0.5s; killing it" in out.getvalue()


# -- output -----------------------------------------------------------------------------


def test_output_is_prefixed_padded_and_colored_when_asked(tmp_path: Path) -> None:
    out = io.StringIO()
    hello = ProcessSpec("hi", python("print('hello'); print('world')"), tmp_path, {}, None)
    with Supervisor(out=out, color=True) as sup:
        sup.start([hello])
        assert call_with_deadline(sup.run_forever) == 1  # it exited on its own
    text = out.getvalue()
    # "hi" is padded to the width of the longest name, our own "microforge".
    assert "hi         |\x1b[0m hello\n" in text
    assert "hi         |\x1b[0m world\n" in text
    assert "\x1b[" in text
