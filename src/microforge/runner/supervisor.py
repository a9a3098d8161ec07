"""Run several services as one unit, foreman/honcho style.

Each child runs in its own session (and so its own process group): a Ctrl-C in the
terminal reaches only us, and we decide the shutdown order, then signal whole groups so
that grandchildren (reloaders, worker processes, `sh -c` wrappers) go too.

Typical use from a CLI command::

    with Supervisor() as sup:
        raise typer.Exit(sup.run(specs, ready_timeout=30))
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, TextIO, TypeAlias

import httpx

TAIL_LINES = 40
POLL_INTERVAL_S = 0.1
DUPLICATE_SIGNAL_WINDOW_S = 0.5
_COLORS = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")
_SYSTEM_COLOR = "1;37"
# What signal.signal() returns; typeshed keeps its own alias private.
_Handler: TypeAlias = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


@dataclass
class ProcessSpec:
    """One child process. `env` is laid over the parent's environment."""

    name: str
    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    ready_url: str | None = None


class SupervisorError(Exception):
    """Base class for failures reported by the supervisor."""


class ReadinessError(SupervisorError):
    """A child exited or did not answer its ready_url in time."""

    def __init__(self, name: str, reason: str, tail: Sequence[str]) -> None:
        self.name = name
        self.reason = reason
        self.tail = list(tail)
        message = f"{name} {reason}"
        if self.tail:
            message += f"\n--- last {len(self.tail)} lines of {name} ---\n" + "\n".join(self.tail)
        super().__init__(message)


class Interrupted(SupervisorError):
    """SIGINT/SIGTERM arrived while waiting for the children to become ready."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class _Child:
    def __init__(self, spec: ProcessSpec, proc: subprocess.Popen[bytes], color: str) -> None:
        self.spec = spec
        self.proc = proc
        self.color = color
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.pump: threading.Thread | None = None

    def group_alive(self) -> bool:
        """Is anything left running in the child's process group (it or its descendants)?"""
        if self.proc.poll() is None:
            return True
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # a member we may not signal still exists
            return True
        return _has_running_member(self.proc.pid)

    def signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


def _has_running_member(pgid: int) -> bool:
    """False when every member left in group `pgid` is a zombie.

    Dead grandchildren stay zombies until init reaps them, which some container inits
    do slowly or never; waiting for them would always cost the whole grace period.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return True  # no way to tell: assume running
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Fields after "(comm)": state, ppid, pgrp, ...
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


class Supervisor:
    """Start children, prefix their output, wait until ready, stop them all together."""

    def __init__(
        self,
        *,
        out: TextIO | None = None,
        color: bool | None = None,
        system_name: str = "microforge",
    ) -> None:
        self._out = out if out is not None else sys.stdout
        if color is None:
            color = self._out.isatty() and "NO_COLOR" not in os.environ
        self._color = color
        self._system_name = system_name
        self._width = len(system_name)
        self._children: list[_Child] = []
        self._write_lock = threading.Lock()
        self._stop_lock = threading.Lock()
        # Set by pump threads when a child's output ends, so run_forever reacts at once.
        # Signal handlers never touch it: Event.set() takes a lock the interrupted
        # main thread may already hold.
        self._wake = threading.Event()
        self._signal: int | None = None
        self._force = False
        self._signal_at = 0.0
        self._started = False
        self._exit_code: int | None = None
        self._old_handlers: dict[int, _Handler] = {}

    # -- public API -------------------------------------------------------------------

    @property
    def pids(self) -> dict[str, int]:
        """PID (and process-group id) of every child started so far, by name."""
        return {child.spec.name: child.proc.pid for child in self._children}

    def start(self, specs: Sequence[ProcessSpec]) -> None:
        """Launch every child; on any failure the ones already running are stopped."""
        if self._started:
            raise RuntimeError("Supervisor.start() may only be called once")
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"process names must be unique, got {names}")
        self._started = True
        self._width = max([len(self._system_name), *map(len, names)])
        self._install_signal_handlers()
        # If we die from an exception before stop() runs, still take the children down.
        atexit.register(self.stop)
        try:
            for index, spec in enumerate(specs):
                self._spawn(spec, _COLORS[index % len(_COLORS)])
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, deadline_s: float) -> None:
        """Poll every ready_url until it answers 200.

        Raises ReadinessError naming the first child that exited or was still not ready
        after `deadline_s` seconds, and Interrupted on SIGINT/SIGTERM. The children keep
        running either way; call stop() (or leave the `with` block).
        """
        deadline = time.monotonic() + deadline_s
        pending = [child for child in self._children if child.spec.ready_url]
        last_error: dict[str, str] = {}
        with httpx.Client(trust_env=False) as http:
            while True:
                if self._signal is not None:
                    raise Interrupted(self._signal)
                # Any child dying during startup is fatal, with or without a ready_url.
                for child in self._children:
                    code = child.proc.poll()
                    if code is not None:
                        raise self._failure(child, f"{describe_exit(code)} before becoming ready")
                for child in list(pending):
                    url = child.spec.ready_url
                    assert url is not None
                    budget = min(1.0, max(0.05, deadline - time.monotonic()))
                    try:
                        response = http.get(url, timeout=httpx.Timeout(budget))
                    except httpx.HTTPError as exc:
                        last_error[child.spec.name] = type(exc).__name__
                        continue
                    if response.status_code == 200:
                        pending.remove(child)
                        self._say(f"{child.spec.name} is ready ({url})")
                    else:
                        last_error[child.spec.name] = f"HTTP {response.status_code}"
                if not pending:
                    return
                if time.monotonic() >= deadline:
                    child = pending[0]
                    last = last_error.get(child.spec.name, "no answer")
                    reason = (
                        f"did not become ready within {deadline_s:g}s "
                        f"(GET {child.spec.ready_url}: {last})"
                    )
                    others = [c.spec.name for c in pending[1:]]
                    if others:
                        reason += f"; also not ready: {', '.join(others)}"
                    raise self._failure(child, reason)
                time.sleep(POLL_INTERVAL_S)

    def run_forever(self, grace: float = 5.0) -> int:
        """Block until SIGINT/SIGTERM or until a child exits, then stop() everything."""
        if not self._started:
            raise RuntimeError("Supervisor.run_forever() called before start()")
        while self._signal is None:
            self._wake.clear()
            dead = next((c for c in self._children if c.proc.poll() is not None), None)
            if dead is not None:
                code = dead.proc.returncode
                self._say(f"{dead.spec.name} {describe_exit(code)}; stopping the others")
                break
            self._wake.wait(POLL_INTERVAL_S * 2)
        return self.stop(grace)

    def run(self, specs: Sequence[ProcessSpec], *, ready_timeout: float, grace: float = 5.0) -> int:
        """The whole `microforge up` lifecycle; returns the process exit code."""
        try:
            self.start(specs)
            self.wait_ready(ready_timeout)
        except ReadinessError as exc:
            for line in str(exc).splitlines():
                self._say(line)
            self.stop(grace)
            return 1
        except Interrupted:
            return self.stop(grace)
        except BaseException:
            self.stop(grace)
            raise
        self._say("all services are ready; press Ctrl-C to stop")
        return self.run_forever(grace)

    def stop(self, grace: float = 5.0) -> int:
        """Terminate every child's process group, escalating to SIGKILL after `grace`.

        Returns 0 when stopping was requested (signal or plain call) and 1 when a child
        had already exited on its own. Safe to call again; later calls return the same code.
        """
        with self._stop_lock:
            if self._exit_code is None:
                crashed = any(child.proc.poll() is not None for child in self._children)
                code = 0 if self._signal is not None or not crashed else 1
                try:
                    self._terminate_all(grace)
                finally:
                    # Set last: until then a second Ctrl-C means "hurry", see _on_signal.
                    self._exit_code = code
                    atexit.unregister(self.stop)
            self._restore_signal_handlers()
            return self._exit_code

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- children ---------------------------------------------------------------------

    def _spawn(self, spec: ProcessSpec, color: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **spec.env}
        proc = subprocess.Popen(
            spec.argv,
            cwd=spec.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child = _Child(spec, proc, color)
        self._children.append(child)
        assert proc.stdout is not None
        child.pump = threading.Thread(
            target=self._pump, args=(child, proc.stdout), name=f"pump-{spec.name}", daemon=True
        )
        child.pump.start()
        self._say(f"started {spec.name} (pid {proc.pid})")

    def _pump(self, child: _Child, stream: IO[bytes]) -> None:
        # Keep reading even if writing fails, or the child would block on a full pipe.
        for raw in stream:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            child.tail.append(line)
            self._write(child.spec.name, child.color, line)
        self._wake.set()

    def _failure(self, child: _Child, reason: str) -> ReadinessError:
        if child.proc.poll() is not None and child.pump is not None:
            child.pump.join(timeout=1.0)  # let the last lines of a dead child arrive
        return ReadinessError(child.spec.name, reason, child.tail)

    def _terminate_all(self, grace: float) -> None:
        alive = [child for child in self._children if child.group_alive()]
        if alive:
            self._say(f"stopping {', '.join(c.spec.name for c in alive)}")
        for child in alive:
            child.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while not self._force and time.monotonic() < deadline:
            alive = [child for child in alive if child.group_alive()]
            if not alive:
                break
            time.sleep(0.05)
        for child in self._children:
            if child.group_alive():
                why = "stopping at once" if self._force else f"did not stop within {grace:g}s"
                self._say(f"{child.spec.name} {why}; killing it")
                child.signal_group(signal.SIGKILL)
        for child in self._children:
            try:
                child.proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
                self._say(f"{child.spec.name} (pid {child.proc.pid}) survived SIGKILL")
            if child.pump is not None:
                child.pump.join(timeout=1.0)
                if not child.pump.is_alive() and child.proc.stdout is not None:
                    child.proc.stdout.close()

    # -- signals ----------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        # Python only allows signal handlers in the main thread; elsewhere the caller
        # owns signal handling and simply calls stop().
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[signum] = signal.signal(signum, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread may; _on_signal hands a later signal back
        while self._old_handlers:
            signum, handler = self._old_handlers.popitem()
            # None means "installed from C"; the closest we can restore is the default.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._exit_code is not None:
            # stop() ran in another thread and could not restore the old handlers:
            # do it now (handlers run in the main thread) and let them see this signal.
            self._restore_signal_handlers()
            signal.raise_signal(signum)
            return
        now = time.monotonic()
        # A second Ctrl-C skips the grace period. Under `uv run` (or any wrapper that
        # forwards signals) one Ctrl-C arrives twice within milliseconds: not a second one.
        if self._signal is not None and now - self._signal_at > DUPLICATE_SIGNAL_WINDOW_S:
            self._force = True
        if self._signal is None:
            self._signal_at = now
        self._signal = signum

    # -- output -----------------------------------------------------------------------

    def _say(self, text: str) -> None:
        self._write(self._system_name, _SYSTEM_COLOR, text)

    def _write(self, name: str, color: str, text: str) -> None:
        prefix = f"{name:<{self._width}} |"
        if self._color:
            prefix = f"\x1b[{color}m{prefix}\x1b[0m"
        with self._write_lock:
            try:
                self._out.write(f"{prefix} {text}\n")
                self._out.flush()
            except (OSError, ValueError):  # closed or broken stdout: keep draining anyway
                pass
