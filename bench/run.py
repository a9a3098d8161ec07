"""Benchmark: the generated catalog service vs a hand-written FastAPI + SQLAlchemy app.

Normally started by `bench/run`, which installs wrk, syncs the environment and starts a
throwaway PostgreSQL. Each database (a SQLite file, PostgreSQL) gets the same 10,000
products for each app; the apps run side by side under uvicorn pinned to core 0, and wrk,
pinned to core 1, measures them alternately, scenario by scenario. On PostgreSQL a third
app runs beside them: the ceiling, Starlette on raw asyncpg (bench/ceiling/app.py), the
fastest the same API goes in plain Python. See docs/benchmarks.md.

    python bench/run.py --postgres-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
    python bench/run.py --only sqlite --duration 3 --rounds 1     # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import importlib.metadata
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CATALOG_SPEC = BENCH / "specs" / "catalog.yaml"
LARGE_SPEC_SCRIPT = BENCH / "specs" / "make_large_spec.py"
HANDWRITTEN = BENCH / "handwritten"
CEILING = BENCH / "ceiling"
LUA = BENCH / "lua" / "scenario.lua"
DEFAULT_OUTPUT = BENCH / "results" / "latest.md"

# wrk's default 2s timeout drops slow answers from the latency figures (SQLite writers
# queue on the database lock); with 10s they are measured, and a timeout is an error.
WRK_TIMEOUT = 10
APP_CORE = "0"
WRK_CORE = "1"
APPS = ("generated", "handwritten")  # on every database
CEILING_APP = "ceiling"  # PostgreSQL only: Starlette + raw asyncpg
LIST_PATH = "/products?status=active&price__lt=50&sort=-price&limit=20"
UVICORN_OPTIONS = (
    "--workers",
    "1",
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--no-access-log",
    "--log-level",
    "warning",
)
GENERATE_TIMEOUT = 300
QUIET_SHARE = 0.10  # the machine counts as quiet when others use less than this of a core
DISTURBED_SHARE = 0.10  # a run is repeated when others used more than this of a core
READY_TIMEOUT = 60.0


class BenchError(RuntimeError):
    """Something that makes the numbers meaningless: stop and say what."""


def log(message: str) -> None:
    print(f"--> {message}", file=sys.stderr, flush=True)


# --- options --------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    duration: int
    connections: int
    only: str | None
    rounds: int
    warmup: int
    products: int
    categories: int
    generate_runs: int
    postgres_url: str | None
    output: Path
    keep: bool
    retries: int
    quiet_wait: int
    postgres_pid: int | None
    command: str


def make_parser(
    prog: str = "bench/run",
    description: str = "Generated catalog service vs a hand-written FastAPI app.",
    *,
    output: Path = DEFAULT_OUTPUT,
    generate: bool = True,
    seed: bool = True,
) -> argparse.ArgumentParser:
    """The options every benchmark of bench/ takes (bench/auth.py too, without generate;
    bench/idempotency.py without the seeded catalog's --products and --categories)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (10)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--only", choices=("sqlite", "postgres"), help="one database only")
    parser.add_argument(
        "--rounds", type=int, default=3, help="wrk runs per app and scenario; medians (3)"
    )
    parser.add_argument(
        "--warmup", type=int, default=3, help="seconds of warm-up per app and scenario (3)"
    )
    if seed:
        parser.add_argument("--products", type=int, default=10_000, help="seeded products (10000)")
        parser.add_argument("--categories", type=int, default=20, help="seeded categories (20)")
    if generate:
        parser.add_argument(
            "--generate-runs",
            type=int,
            default=3,
            help="timed `microforge generate` runs (3; 0: skip)",
        )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL"),
        help="admin SQLAlchemy URL of a PostgreSQL server able to CREATE DATABASE "
        "(default: $BENCH_POSTGRES_URL; bench/run starts a throwaway server)",
    )
    parser.add_argument("--output", type=Path, default=output, help="markdown file")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--retries",
        type=int,
        default=2,
        help="repeat a run up to this often when other processes took over 10%% of core 0 (2)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=int,
        default=60,
        help="seconds to wait for an idle machine before each measured run (60)",
    )
    return parser


def parse_options(argv: Sequence[str], parser: argparse.ArgumentParser | None = None) -> Options:
    parser = parser or make_parser()
    args = parser.parse_args(argv)
    args.generate_runs = getattr(args, "generate_runs", 0)
    seeded = ("products", "categories") if hasattr(args, "products") else ()
    args.products = getattr(args, "products", 0)  # 0: a benchmark that seeds no catalog
    args.categories = getattr(args, "categories", 0)
    for name in ("duration", "connections", "rounds", *seeded):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if min(args.warmup, args.generate_runs, args.retries, args.quiet_wait) < 0:
        parser.error("--warmup, --generate-runs, --retries and --quiet-wait must be >= 0")
    if args.only != "sqlite" and not args.postgres_url:
        parser.error("PostgreSQL needs --postgres-url (or $BENCH_POSTGRES_URL), or --only sqlite")
    command = os.environ.get("BENCH_COMMAND") or " ".join(
        ["python", f"bench/{Path(sys.argv[0]).name}", *(str(a) for a in argv)]
    )
    return Options(
        duration=args.duration,
        connections=args.connections,
        only=args.only,
        rounds=args.rounds,
        warmup=args.warmup,
        products=args.products,
        categories=args.categories,
        generate_runs=args.generate_runs,
        postgres_url=args.postgres_url,
        output=args.output,
        keep=args.keep,
        retries=args.retries,
        quiet_wait=args.quiet_wait,
        postgres_pid=int(os.environ["BENCH_POSTGRES_PID"])
        if os.environ.get("BENCH_POSTGRES_PID")
        else None,
        command=command,
    )


# --- processes ------------------------------------------------------------------------


def venv_tool(name: str) -> str:
    """A console script of this environment (microforge), found beside the interpreter."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise BenchError(f"'{name}' not found; run through `uv run` or bench/run")
    return found


def run_checked(
    command: Sequence[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> str:
    try:
        done = subprocess.run(
            list(command),
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"timed out after {timeout}s: {' '.join(command)}") from exc
    if done.returncode != 0:
        raise BenchError(
            f"failed (exit {done.returncode}): {' '.join(command)}\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("PYTHONPATH", "DATABASE_URL", "CATALOG_DATABASE_URL"):
        env.pop(key, None)
    env.update(extra)
    return env


@dataclass
class Server:
    """One app under uvicorn, pinned to the app core."""

    app: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(app: str, target: str, cwd: Path, env: dict[str, str], log_path: Path) -> Server:
    port = free_port()
    command = [
        "taskset",
        "-c",
        APP_CORE,
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *UVICORN_OPTIONS,
    ]
    with log_path.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink
        )
    server = Server(app, port, log_path, process)
    deadline = time.monotonic() + READY_TIMEOUT
    with httpx.Client(base_url=server.url, timeout=5) as client:
        while True:
            if not server.alive():
                raise BenchError(f"{app} exited during startup:\n{server.log_tail()}")
            try:
                client.get("/openapi.json")  # any answer: the server is up
                return server
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                server.stop()
                raise BenchError(f"{app} not ready after {READY_TIMEOUT}s:\n{server.log_tail()}")
            time.sleep(0.1)


# --- wrk ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One wrk run's request mix: a mode of bench/lua/scenario.lua, or its own `script`.

    With `script`, wrk runs that Lua file against the server's `path` with the arguments
    `mode tag *args` (the tag names the run; bench/idempotency.py's keys use it).
    `connections` overrides --connections for this scenario (a c=1 latency row).
    """

    key: str
    title: str
    mode: str
    script: Path | None = None
    path: str = ""
    args: tuple[str, ...] = ()
    connections: int | None = None

    def wrk_connections(self, options: Options) -> int:
        return self.connections or options.connections


SCENARIOS = (
    Scenario("get", "GET one product", "get"),
    Scenario("list", "list: status=active, price<50, sort -price, limit 20", "list"),
    Scenario("post", "POST a product", "post"),
)
READ_SCENARIOS = tuple(s for s in SCENARIOS if s.mode != "post")  # GET one and the list


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    app_cpu: float = 0.0  # share of core 0 the app used during the run
    foreign_cpu: float = 0.0  # CPU used by other processes, in cores (both cores summed)
    core1_busy: float = 0.0  # share of core 1 busy (wrk, PostgreSQL when pinned there)
    cpu_us_per_request: float = 0.0  # the app's CPU time per request: robust to contention


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _latency_ms(output: str, percent: int) -> float:
    match = re.search(rf"^\s*{percent}(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)
    if match is None:
        raise BenchError(f"no {percent}% latency in wrk output:\n{output}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """Requests/s and latency percentiles; raises if any response was not the expected one."""
    problems: list[str] = []
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non_2xx and int(non_2xx.group(1)) > 0:
        problems.append(f"{non_2xx.group(1)} non-2xx/3xx responses")
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sockets and any(int(n) > 0 for n in sockets.groups()):
        problems.append(f"socket errors: {sockets.group(0)}")
    unexpected = re.search(r"^BENCH_UNEXPECTED (\d+)$", output, re.M)
    if unexpected is None:
        problems.append("the Lua status check did not report (BENCH_UNEXPECTED missing)")
    elif int(unexpected.group(1)) > 0:
        problems.append(f"{unexpected.group(1)} responses with an unexpected status")
    first = re.search(r"^BENCH_FIRST_UNEXPECTED (.*)$", output, re.M)
    if first:
        problems.append(f"first one: {first.group(1)}")
    total = re.search(r"^\s*(\d+) requests in", output, re.M)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if total is None or rate is None or int(total.group(1)) == 0:
        problems.append("no completed requests")
    if problems or total is None or rate is None:
        raise BenchError("wrk run not clean: " + "; ".join(problems) + f"\n{output}")
    return WrkResult(
        requests_per_s=float(rate.group(1)),
        p50_ms=_latency_ms(output, 50),
        p99_ms=_latency_ms(output, 99),
        requests=int(total.group(1)),
    )


# --- CPU accounting: did anything else run beside the benchmark? ----------------------
#
# Other processes on the machine steal time from the app or from wrk. Every measured run
# counts the busy ticks of both cores and subtracts what the benchmark's own processes
# used (the apps, wrk, the PostgreSQL that bench/run started, this script): the rest is
# "others". Runs are started on a quiet machine and repeated when others took too much.

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def core_ticks(core: int) -> tuple[int, int]:
    """(busy, total) clock ticks of one core since boot, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            values = [int(v) for v in line.split()[1:9]]
            idle = values[3] + values[4]  # idle, iowait
            return sum(values) - idle, sum(values)
    raise BenchError(f"cpu{core} not in /proc/stat")


def _stat_fields(pid: int | str) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from the 3rd (state) on


def process_ticks(pid: int) -> int:
    """utime + stime of a process (all its threads), in clock ticks."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def tree_ticks(root: int) -> int:
    """CPU ticks of a process and all its descendants (the PostgreSQL server).

    Counts the reaped children's time too (cutime, cstime): a PostgreSQL backend that
    exits, as when a pool closes an overflow connection, leaves /proc, and its CPU time
    would otherwise be counted as "others".
    """
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(entry.name)
        except OSError:
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        ticks[pid] = sum(int(value) for value in fields[11:15])  # u/s time, own and reaped
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += ticks.get(pid, 0)
        todo.extend(children.get(pid, ()))
    return total


@dataclass(frozen=True)
class CpuSnapshot:
    core0: tuple[int, int]
    core1: tuple[int, int]
    app: int  # ticks of the measured app
    ours: int  # ticks of every benchmark process


@dataclass(frozen=True)
class CpuShares:
    app: float  # of core 0
    others: float  # of one core, both cores summed
    core1: float  # share of core 1 busy
    app_seconds: float  # CPU time of the app


class CpuWatch:
    def __init__(
        self, app_pids: Sequence[int], postgres_pid: int | None, helper_pids: Sequence[int] = ()
    ) -> None:
        self.app_pids = list(app_pids)
        self.postgres_pid = postgres_pid
        # Other servers the benchmark started (bench/cache.py's Redis): theirs, not others'.
        self.helper_pids = list(helper_pids)

    def snapshot(self, app_pid: int) -> CpuSnapshot:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once it was waited for
        own = os.times()
        ours = round((children.ru_utime + children.ru_stime + own.user + own.system) * CLOCK_TICKS)
        ours += sum(process_ticks(pid) for pid in self.app_pids)
        if self.postgres_pid:
            ours += tree_ticks(self.postgres_pid)
        ours += sum(tree_ticks(pid) for pid in self.helper_pids)
        return CpuSnapshot(
            core_ticks(int(APP_CORE)), core_ticks(int(WRK_CORE)), process_ticks(app_pid), ours
        )

    @staticmethod
    def shares(before: CpuSnapshot, after: CpuSnapshot) -> CpuShares:
        span = max(after.core0[1] - before.core0[1], 1)
        busy = (after.core0[0] - before.core0[0]) + (after.core1[0] - before.core1[0])
        return CpuShares(
            app=(after.app - before.app) / span,
            others=max(busy - (after.ours - before.ours), 0) / span,
            core1=(after.core1[0] - before.core1[0]) / max(after.core1[1] - before.core1[1], 1),
            app_seconds=(after.app - before.app) / CLOCK_TICKS,
        )

    def wait_for_quiet(self, limit: float) -> None:
        """Before a measured run: wait (up to `limit` s) until nothing else uses the CPU."""
        deadline = time.monotonic() + limit
        while True:
            before = self.snapshot(self.app_pids[0])
            time.sleep(1)
            others = self.shares(before, self.snapshot(self.app_pids[0])).others
            if others <= QUIET_SHARE:
                return
            if time.monotonic() > deadline:
                log(f"other processes still use {others:.0%} of a core; measuring anyway")
                return


def warm_up(
    servers: Mapping[str, Server],
    scenarios: Sequence[Scenario],
    files: DataFiles,
    options: Options,
    label: str,
    watch: CpuWatch,
    headers: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Run every scenario against every app for ``options.warmup`` seconds, unmeasured."""
    for scenario in scenarios:
        for app, server in servers.items():
            run_wrk(
                server,
                scenario,
                files,
                options.warmup,
                scenario.wrk_connections(options),
                f"{label}-warmup-{app}",
                watch,
                (headers or {}).get(app, ()),
            )


def run_wrk(
    server: Server,
    scenario: Scenario,
    files: DataFiles,
    seconds: int,
    connections: int,
    tag: str,
    watch: CpuWatch,
    headers: Sequence[str] = (),
) -> tuple[WrkResult, str]:
    """One wrk run; `headers` ("Name: value") go with every request (wrk -H)."""
    script = LUA
    if scenario.script is not None:
        script = scenario.script
        script_args = [scenario.mode, tag, *scenario.args]
        url = f"{server.url}{scenario.path}"
    elif scenario.mode == "get":
        script_args = ["get", str(files.product_ids)]
        url = f"{server.url}/products"
    elif scenario.mode == "list":
        script_args = ["list", LIST_PATH]
        url = f"{server.url}{LIST_PATH}"
    else:
        script_args = ["post", str(files.category_ids), tag]
        url = f"{server.url}/products"
    command = [
        "taskset",
        "-c",
        WRK_CORE,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        f"--timeout={WRK_TIMEOUT}s",
        *(option for header in headers for option in ("-H", header)),
        "-s",
        str(script),
        url,
        "--",
        *script_args,
    ]
    before = watch.snapshot(server.process.pid)
    output = run_checked(command, timeout=seconds + 60)
    after = watch.snapshot(server.process.pid)
    if not server.alive():
        raise BenchError(f"{server.app} died under load:\n{server.log_tail()}")
    shares = CpuWatch.shares(before, after)
    parsed = parse_wrk(output)
    result = dataclasses.replace(
        parsed,
        app_cpu=shares.app,
        foreign_cpu=shares.others,
        core1_busy=shares.core1,
        cpu_us_per_request=shares.app_seconds * 1e6 / parsed.requests,
    )
    return result, output


def measure(
    server: Server,
    scenario: Scenario,
    files: DataFiles,
    options: Options,
    tag: str,
    watch: CpuWatch,
    headers: Sequence[str] = (),
) -> WrkResult:
    """A measured run on a quiet core 0; repeated (up to --retries) if others used it."""
    best: WrkResult | None = None
    for attempt in range(options.retries + 1):
        watch.wait_for_quiet(options.quiet_wait)
        result, _ = run_wrk(
            server,
            scenario,
            files,
            options.duration,
            scenario.wrk_connections(options),
            f"{tag}-a{attempt}",
            watch,
            headers,
        )
        if best is None or result.foreign_cpu < best.foreign_cpu:
            best = result
        if result.foreign_cpu <= DISTURBED_SHARE:
            break
        log(
            f"{server.app} {scenario.key}: other processes used {result.foreign_cpu:.0%} "
            f"of a core during the run"
            + ("; running it again" if attempt < options.retries else "; keeping the best")
        )
    assert best is not None
    return best


# --- data -----------------------------------------------------------------------------

seed_metadata = sa.MetaData()
seed_categories = sa.Table(
    "categories",
    seed_metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", sa.String(100)),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
)


def _product_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(200)),
        sa.Column("price", sa.Numeric(10, 2)),
        sa.Column("status", sa.String(7)),
        sa.Column("stock", sa.Integer()),
        sa.Column("category_id", sa.Uuid()),
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True)),
    ]


seed_products = sa.Table("products", seed_metadata, *_product_columns())
# bench/auth.py's row-scoped variant: the same products with an owner reference column.
seed_owned_products = sa.Table(
    "products", sa.MetaData(), *_product_columns(), sa.Column("owner_id", sa.Uuid())
)


@dataclass
class SeedData:
    categories: list[dict[str, Any]]
    products: list[dict[str, Any]]


@dataclass(frozen=True)
class DataFiles:
    product_ids: Path
    category_ids: Path


def make_seed(products: int, categories: int) -> SeedData:
    """The same rows for every app and database: fixed random seed."""
    rng = random.Random(20_250_101)
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

    def new_id() -> uuid.UUID:
        return uuid.UUID(int=rng.getrandbits(128), version=4)

    category_rows = [
        {
            "id": new_id(),
            "name": f"Category {i:02d}",
            "created_at": start,
            "updated_at": start,
        }
        for i in range(categories)
    ]
    product_rows = []
    for i in range(products):
        moment = start + dt.timedelta(seconds=i)
        product_rows.append(
            {
                "id": new_id(),
                "name": f"Product {i:05d}",
                "price": Decimal(rng.randint(100, 19_999)) / 100,
                "status": rng.choice(("draft", "active", "retired")),
                "stock": rng.randint(0, 1000),
                "category_id": rng.choice(category_rows)["id"],
                "created_at": moment,
                "updated_at": moment,
            }
        )
    return SeedData(category_rows, product_rows)


def write_data_files(seed: SeedData, folder: Path) -> DataFiles:
    files = DataFiles(folder / "product_ids.txt", folder / "category_ids.txt")
    files.product_ids.write_text("".join(f"{row['id']}\n" for row in seed.products))
    files.category_ids.write_text("".join(f"{row['id']}\n" for row in seed.categories))
    return files


async def insert_seed(url: str, seed: SeedData, owner: uuid.UUID | None = None) -> None:
    """Direct inserts (no HTTP), in one transaction; SQLite stores naive UTC like both apps.

    With `owner`, every product gets it in an `owner_id` column (bench/auth.py).
    """
    naive = make_url(url).get_backend_name() == "sqlite"
    products = seed_products if owner is None else seed_owned_products
    extra = {} if owner is None else {"owner_id": owner}

    def adapt(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not naive:
            return rows
        return [
            {
                **row,
                "created_at": row["created_at"].replace(tzinfo=None),
                "updated_at": row["updated_at"].replace(tzinfo=None),
            }
            for row in rows
        ]

    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(seed_categories), adapt(seed.categories))
            batch = 2000
            for start in range(0, len(seed.products), batch):
                rows = adapt(seed.products[start : start + batch])
                if extra:
                    rows = [{**row, **extra} for row in rows]
                await conn.execute(sa.insert(products), rows)
        async with engine.connect() as conn:
            counting = sa.select(sa.func.count()).select_from(products)
            count = (await conn.execute(counting)).scalar_one()
            if naive:
                # Fresh planner statistics, as a long-running database would have.
                await conn.execute(sa.text("ANALYZE"))
                await conn.commit()
        if count != len(seed.products):
            raise BenchError(f"seeded {count} products into {url}, expected {len(seed.products)}")
        if not naive:
            await vacuum_postgres(engine)
    finally:
        await engine.dispose()


async def vacuum_postgres(engine: AsyncEngine) -> None:
    """VACUUM ANALYZE now, and check that it marked every page of products all-visible.

    Left to autovacuum, the first of bench/auth.py's four databases, seeded one after the
    other, was vacuumed without its pages becoming all-visible and stayed so, the others
    not. Its list count then read the table's pages (a bitmap heap scan, 1.0 ms) where the
    others read only the index (an index-only scan, 0.3 ms), and that app's list looked
    slower in every round.
    """
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    pages = sa.text("SELECT relpages, relallvisible FROM pg_class WHERE oid = 'products'::regclass")
    for _ in range(10):
        async with autocommit.connect() as conn:
            await conn.execute(sa.text("VACUUM ANALYZE"))
            total, visible = (await conn.execute(pages)).one()
        if visible >= total:
            return
        await asyncio.sleep(1)  # an open transaction somewhere holds the horizon back
    raise BenchError(
        f"VACUUM left {total - visible} of {total} pages of products not all-visible "
        f"in {engine.url.database}: something keeps a transaction open"
    )


async def create_postgres_database(admin_url: str, name: str) -> str:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def postgres_version(admin_url: str) -> str:
    engine = create_async_engine(admin_url)
    try:
        async with engine.connect() as conn:
            version = (await conn.execute(sa.text("SHOW server_version"))).scalar_one()
    finally:
        await engine.dispose()
    return str(version)


# --- the apps -------------------------------------------------------------------------


@dataclass
class AppSetup:
    app: str
    target: str
    cwd: Path
    env: dict[str, str]


def app_setups(database_urls: dict[str, str], generated_service: Path) -> dict[str, AppSetup]:
    """generated and handwritten, and the ceiling if `database_urls` (SQLAlchemy URLs) has it."""
    setups = {
        "generated": AppSetup(
            "generated",
            "catalog_service.main:app",
            generated_service,
            base_env(PYTHONPATH=".", CATALOG_DATABASE_URL=database_urls["generated"]),
        ),
        "handwritten": AppSetup(
            "handwritten",
            "app:app",
            HANDWRITTEN,
            base_env(PYTHONPATH=".", DATABASE_URL=database_urls["handwritten"]),
        ),
    }
    if CEILING_APP in database_urls:
        # asyncpg takes a plain libpq URL, not SQLAlchemy's postgresql+asyncpg one.
        dsn = make_url(database_urls[CEILING_APP]).set(drivername="postgresql")
        setups[CEILING_APP] = AppSetup(
            CEILING_APP,
            "app:app",
            CEILING,
            base_env(PYTHONPATH=".", DATABASE_URL=dsn.render_as_string(hide_password=False)),
        )
    return setups


def migrate(service: Path, env: dict[str, str]) -> None:
    """A generated service's schema, by its Alembic migrations."""
    command = [sys.executable, "-m", "alembic", "-c", "alembic.ini", "upgrade", "head"]
    run_checked(command, cwd=service, env=env)


def create_schema(setup: AppSetup) -> None:
    if setup.app == "generated":
        migrate(setup.cwd, setup.env)
    else:
        # handwritten: Base.metadata.create_all; ceiling: its CREATE TABLE statements
        run_checked([sys.executable, "app.py"], cwd=setup.cwd, env=setup.env)


def expected_list(seed: SeedData) -> list[dict[str, Any]]:
    """The seeded products LIST_PATH matches, in its order (all of them, not one page)."""
    return sorted(
        (p for p in seed.products if p["status"] == "active" and p["price"] < 50),
        key=lambda p: (p["price"], p["id"]),
        reverse=True,
    )


def expect_status(app: str, name: str, response: httpx.Response, status: int) -> None:
    """Fail the benchmark when a check request got another status than ``status``."""
    if response.status_code != status:
        raise BenchError(
            f"{app}: {name} answered {response.status_code}, expected {status}: "
            f"{response.text[:500]}"
        )


def check_answers(servers: dict[str, Server], seed: SeedData, tag: str) -> None:
    """Every app answers each scenario successfully and with the same data.

    The ceiling must answer with the generated service's JSON: the same GET-one body,
    and list pages with the same keys and items.
    """
    product = seed.products[len(seed.products) // 2]
    answers: dict[str, dict[str, Any]] = {}
    bodies: dict[str, tuple[Any, Any]] = {}
    for app, server in servers.items():
        with httpx.Client(base_url=server.url, timeout=10) as client:
            one = client.get(f"/products/{product['id']}")
            page = client.get(LIST_PATH)
            body = {
                "name": f"check {tag} {app}",
                "price": "12.50",
                "stock": 3,
                "category_id": str(seed.categories[0]["id"]),
            }
            created = client.post("/products", json=body)
            missing = client.get(f"/products/{uuid.uuid4()}")
        for name, response, status in (
            ("GET one", one, 200),
            ("list", page, 200),
            ("POST", created, 201),
            ("GET unknown id", missing, 404),
        ):
            expect_status(app, name, response, status)
        got = one.json()
        if (got["id"], got["name"], Decimal(got["price"])) != (
            str(product["id"]),
            product["name"],
            product["price"],
        ):
            raise BenchError(f"{app}: GET one returned {got}")
        if created.json()["name"] != body["name"] or created.json()["status"] != "draft":
            raise BenchError(f"{app}: POST returned {created.json()}")
        listed = page.json()
        bodies[app] = (got, listed)
        answers[app] = {
            "ids": [item["id"] for item in listed["items"]],
            "prices": [Decimal(item["price"]) for item in listed["items"]],
            "total": listed["total"],
        }
    expected = expected_list(seed)
    for app, answer in answers.items():
        if answer["total"] != len(expected) or len(answer["ids"]) != 20:
            raise BenchError(f"{app}: list total {answer['total']}, expected {len(expected)}")
        if answer["prices"] != [p["price"] for p in expected[:20]]:
            raise BenchError(f"{app}: list not sorted by -price: {answer['prices']}")
    if len({tuple(a["ids"]) for a in answers.values()}) != 1:
        raise BenchError(f"the apps list different products: {answers}")
    if CEILING_APP in bodies and "generated" in bodies:
        (ceiling_one, ceiling_page), (generated_one, generated_page) = (
            bodies[CEILING_APP],
            bodies["generated"],
        )
        if ceiling_one != generated_one:
            raise BenchError(f"GET one: ceiling {ceiling_one} != generated {generated_one}")
        if set(ceiling_page) != set(generated_page) or (
            ceiling_page["items"] != generated_page["items"]
        ):
            raise BenchError(f"list: ceiling {ceiling_page} != generated {generated_page}")


# --- one database ---------------------------------------------------------------------


@dataclass
class Measured:
    apps: tuple[str, ...] = APPS
    rounds: dict[tuple[str, str], list[WrkResult]] = field(default_factory=dict)

    def add(self, scenario: str, app: str, result: WrkResult) -> None:
        self.rounds.setdefault((scenario, app), []).append(result)


def round_order(apps: tuple[str, ...], round_number: int) -> tuple[str, ...]:
    """The apps rotated by one each round, so none always runs on a warmer machine."""
    shift = round_number % len(apps)
    return apps[shift:] + apps[:shift]


@contextmanager
def running(setups: dict[str, AppSetup], work: Path, label: str) -> Iterator[dict[str, Server]]:
    servers: dict[str, Server] = {}
    try:
        for app, setup in setups.items():
            log_path = work / f"{label}-{app}.log"
            servers[app] = start_server(app, setup.target, setup.cwd, setup.env, log_path)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def bench_database(
    label: str,
    database_urls: dict[str, str],
    options: Options,
    seed: SeedData,
    files: DataFiles,
    generated_service: Path,
    work: Path,
    postgres_pid: int | None,
) -> Measured:
    setups = app_setups(database_urls, generated_service)
    apps = tuple(setups)
    for app, setup in setups.items():
        log(f"{label}: {app}: schema, then {len(seed.products)} products by direct inserts")
        create_schema(setup)
        asyncio.run(insert_seed(database_urls[app], seed))
    measured = Measured(apps)
    with running(setups, work, label) as servers:
        check_answers(servers, seed, label)
        watch = CpuWatch([s.process.pid for s in servers.values()], postgres_pid)
        if options.warmup:
            log(f"{label}: warm-up, {options.warmup}s per app and scenario")
            warm_up(servers, SCENARIOS, files, options, label, watch)
        for round_number in range(options.rounds):
            # Rotate which app goes first so none always runs on a warmer machine.
            order = round_order(apps, round_number)
            for scenario in SCENARIOS:
                for app in order:
                    tag = f"{label}-r{round_number}-{app}"
                    result = measure(servers[app], scenario, files, options, tag, watch)
                    measured.add(scenario.key, app, result)
                    log(
                        f"{label} round {round_number + 1}/{options.rounds} {scenario.key:<4} "
                        f"{app:<11} {result.requests_per_s:9.1f} req/s  "
                        f"p50 {result.p50_ms:.2f}ms  p99 {result.p99_ms:.2f}ms  "
                        f"{result.cpu_us_per_request:.0f} CPU-µs/req, "
                        f"app {result.app_cpu:.0%} of core 0, others {result.foreign_cpu:.0%}, "
                        f"core 1 {result.core1_busy:.0%} busy"
                    )
    return measured


Observe = Callable[[str, str, Server], AbstractContextManager[object]]


def fresh_rounds(
    label: str,
    setups: dict[str, AppSetup],
    options: Options,
    files: DataFiles,
    work: Path,
    scenarios: Sequence[Scenario],
    prepare: Callable[[dict[str, Server]], None],
    *,
    postgres_pid: int | None = None,
    helper_pids: Sequence[int] = (),
    headers: Mapping[str, Sequence[str]] | None = None,
    observe: Observe | None = None,
) -> Measured:
    """Every scenario on every app, `options.rounds` times, each round with fresh processes.

    A round starts all apps, calls `prepare(servers)` (check their answers; fill a cache),
    warms each app up on every scenario and measures them, the app going first rotating.
    Fresh processes every round (bench/auth.py, bench/cache.py): with one process per app
    for a whole run, the list of one auth-off service cost 10-17% more CPU than its
    auth-on twin in every round, and the same as it in the next run (docs/benchmarks.md).
    The medians should see that spread between processes, not one draw of it.

    `headers[app]` go with each of that app's requests; `observe(scenario, app, server)`
    wraps each measured run (bench/cache.py reads the cache's counters around it);
    `helper_pids` are other servers the benchmark started (their CPU is not "others").
    """
    apps = tuple(setups)
    sent = headers or {}
    measured = Measured(apps)
    width = max(len(app) for app in apps)
    for round_number in range(options.rounds):
        with running(setups, work, f"{label}-r{round_number}") as servers:
            prepare(servers)
            watch = CpuWatch([s.process.pid for s in servers.values()], postgres_pid, helper_pids)
            if options.warmup:
                warm_up(servers, scenarios, files, options, f"{label}-r{round_number}", watch, sent)
            for scenario in scenarios:
                for app in round_order(apps, round_number):
                    tag = f"{label}-r{round_number}-{app}"
                    around = observe(scenario.key, app, servers[app]) if observe else nullcontext()
                    with around:
                        result = measure(
                            servers[app], scenario, files, options, tag, watch, sent.get(app, ())
                        )
                    measured.add(scenario.key, app, result)
                    log(
                        f"{label} round {round_number + 1}/{options.rounds} {scenario.key:<4} "
                        f"{app:<{width}} {result.requests_per_s:9.1f} req/s  "
                        f"p50 {result.p50_ms:.2f}ms  p99 {result.p99_ms:.2f}ms  "
                        f"{result.cpu_us_per_request:.0f} CPU-µs/req, "
                        f"others {result.foreign_cpu:.0%}"
                    )
    return measured


# --- generate timing ------------------------------------------------------------------


def time_generate(runs: int, work: Path) -> tuple[list[float], str]:
    spec = work / "large.yaml"
    run_checked([sys.executable, str(LARGE_SPEC_SCRIPT), "-o", str(spec)])
    microforge = venv_tool("microforge")
    summary = run_checked([microforge, "check", str(spec)]).strip()
    times: list[float] = []
    for run in range(runs):
        out = work / f"large-out-{run}"  # a fresh folder every time
        started = time.perf_counter()
        run_checked([microforge, "generate", str(spec), "-o", str(out)], timeout=GENERATE_TIMEOUT)
        times.append(time.perf_counter() - started)
        log(f"microforge generate (50 entities) run {run + 1}/{runs}: {times[-1]:.2f}s")
    return times, summary


# --- report ---------------------------------------------------------------------------


def version_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def wrk_version() -> str:
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).splitlines()
    return first[0].split(" [")[0].removeprefix("wrk ").strip() if first else "unknown"


def source_state() -> str:
    """The commit measured, and whether src/ had uncommitted changes (read-only git)."""
    try:
        head = run_checked(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]).strip()
        dirty = run_checked(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"])
    except (BenchError, OSError):
        return "unknown (no git)"
    changed = len(dirty.splitlines())
    if changed:
        return f"{head} plus uncommitted changes in {changed} file(s) of src/"
    return head


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _median_result(results: list[WrkResult]) -> WrkResult:
    return WrkResult(
        requests_per_s=statistics.median(r.requests_per_s for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        requests=sum(r.requests for r in results),
    )


def median_of(results: Sequence[WrkResult], name: str) -> float:
    """The median of one WrkResult field (requests_per_s, p99_ms, ...) over rounds."""
    values: list[float] = [getattr(r, name) for r in results]
    return statistics.median(values)


def ms(value: float) -> str:
    """Milliseconds as the tables show them: two decimals below 10, one above."""
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def database_table(measured: Measured) -> tuple[list[str], list[str]]:
    """The medians: generated vs handwritten (ratio), and vs the ceiling where it ran."""
    ceiling = CEILING_APP in measured.apps
    lines = [
        "| scenario | generated req/s | handwritten req/s | ratio "
        + ("| ceiling req/s | generated/ceiling " if ceiling else "")
        + "| generated p50/p99 (ms) | handwritten p50/p99 (ms) "
        + ("| ceiling p50/p99 (ms) |" if ceiling else "|"),
        "| --- | ---: | ---: | ---: "
        + ("| ---: | ---: " if ceiling else "")
        + "| ---: | ---: |"
        + (" ---: |" if ceiling else ""),
    ]
    below: list[str] = []
    for scenario in SCENARIOS:
        generated = _median_result(measured.rounds[(scenario.key, "generated")])
        handwritten = _median_result(measured.rounds[(scenario.key, "handwritten")])
        ratio = generated.requests_per_s / handwritten.requests_per_s
        if ratio < 0.9:
            below.append(f"{scenario.title} ({ratio:.2f}x)")
        row = (
            f"| {scenario.title} | {generated.requests_per_s:,.0f} "
            f"| {handwritten.requests_per_s:,.0f} | {ratio:.2f}x "
        )
        latencies = (
            f"| {ms(generated.p50_ms)} / {ms(generated.p99_ms)} "
            f"| {ms(handwritten.p50_ms)} / {ms(handwritten.p99_ms)} |"
        )
        if ceiling:
            top = _median_result(measured.rounds[(scenario.key, CEILING_APP)])
            row += (
                f"| {top.requests_per_s:,.0f} "
                f"| {generated.requests_per_s / top.requests_per_s:.2f}x "
            )
            latencies += f" {ms(top.p50_ms)} / {ms(top.p99_ms)} |"
        lines.append(row + latencies)
    return lines, below


def cpu_summary(measured: Measured) -> str:
    """Median app CPU µs per request, per scenario and app: the figure least disturbed."""
    parts = []
    for scenario in SCENARIOS:
        figures = ", ".join(
            f"{app} {statistics.median(r.cpu_us_per_request for r in runs):,.0f}"
            for app in measured.apps
            if (runs := measured.rounds[(scenario.key, app)])
        )
        parts.append(f"{scenario.key}: {figures}")
    return "Median app CPU µs per request: " + "; ".join(parts) + "."


def rounds_table(measured: Measured, scenarios: Sequence[Scenario] = SCENARIOS) -> list[str]:
    lines = [
        "| scenario | app | req/s of each round | app CPU µs/request | app's share of core 0 "
        "| others (cores) | core 1 busy |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for scenario in scenarios:
        for app in measured.apps:
            runs = measured.rounds[(scenario.key, app)]
            values = ", ".join(f"{r.requests_per_s:,.0f}" for r in runs)
            per_request = ", ".join(f"{r.cpu_us_per_request:,.0f}" for r in runs)
            app_cpu = ", ".join(f"{r.app_cpu:.0%}" for r in runs)
            others = ", ".join(f"{r.foreign_cpu:.2f}" for r in runs)
            core1 = ", ".join(f"{r.core1_busy:.0%}" for r in runs)
            lines.append(
                f"| {scenario.key} | {app} | {values} | {per_request} | {app_cpu} | {others} "
                f"| {core1} |"
            )
    return lines


def setting_lines(
    options: Options,
    pg_version: str | None,
    started: dt.datetime,
    loads: tuple[str, str],
    source: str,
) -> list[str]:
    """Command, moment, source, machine, versions and load generator: the report's head."""
    return [
        f"- Command: `{options.command}`",
        f"- Started: {started:%Y-%m-%d %H:%M} UTC; microforge source: {source}",
        f"- Machine: {cpu_model()}, {os.cpu_count()} cores, "
        f"{platform.system()} {platform.release()}; load average {loads[0]} before, "
        f"{loads[1]} after",
        f"- Python {platform.python_version()}, FastAPI {version_of('fastapi')}, "
        f"Starlette {version_of('starlette')}, Pydantic {version_of('pydantic')}, "
        f"SQLAlchemy {version_of('sqlalchemy')}, uvicorn {version_of('uvicorn')}, "
        f"uvloop {version_of('uvloop')}, httptools {version_of('httptools')}, "
        f"orjson {version_of('orjson')}",
        f"- Drivers: asyncpg {version_of('asyncpg')}, aiosqlite {version_of('aiosqlite')} "
        f"(SQLite {sqlite3.sqlite_version})"
        + (f"; PostgreSQL server {pg_version}" if pg_version else ""),
        f"- wrk {wrk_version()}: `taskset -c {WRK_CORE} wrk -t1 -c{options.connections} "
        f"-d{options.duration}s --latency --timeout={WRK_TIMEOUT}s`; "
        f"apps: `taskset -c {APP_CORE} uvicorn {' '.join(UVICORN_OPTIONS)}`",
    ]


def render(
    options: Options,
    results: dict[str, Measured],
    pg_version: str | None,
    generate: tuple[list[float], str] | None,
    started: dt.datetime,
    loads: tuple[str, str],
    source: str,
) -> str:
    titles = {"sqlite": "SQLite (one file per app, WAL)", "postgres": "PostgreSQL"}
    out = [
        "# microforge benchmark: generated service vs hand-written FastAPI + SQLAlchemy "
        "(and a Starlette + asyncpg ceiling on PostgreSQL)",
        "",
        *setting_lines(options, pg_version, started, loads, source),
        f"- Data: {options.products:,} products over {options.categories} categories per app "
        f"and database; {options.warmup}s warm-up per app and scenario; "
        f"{options.rounds} round(s), the app going first rotating; medians shown",
        f"- List URL: `{LIST_PATH}`",
        "",
    ]
    all_below: list[str] = []
    for database, measured in results.items():
        table, below = database_table(measured)
        all_below.extend(f"{titles[database]}: {row}" for row in below)
        out += [f"## {titles[database]}", "", *table, ""]
        if CEILING_APP in measured.apps:
            out += [
                "ceiling: `bench/ceiling/app.py`, Starlette on raw asyncpg (prepared, cached "
                "statements; orjson), same tables, data and JSON; ratio = generated/handwritten.",
                "",
            ]
        else:
            out += [
                "No ceiling on this database: `bench/ceiling/app.py` (Starlette + raw asyncpg) "
                "runs on PostgreSQL only.",
                "",
            ]
        out += [*rounds_table(measured), "", cpu_summary(measured), ""]
    if results:
        out.append("Target: generated at 0.9x of hand-written or better on every row. ")
        if all_below:
            out.append("Rows below the target: " + "; ".join(all_below) + ".")
        else:
            out.append("Every row meets it.")
        out.append("")
    if generate is not None:
        times, summary = generate
        out += [
            "## microforge generate, 50 entities",
            "",
            f"Spec from `bench/specs/make_large_spec.py` ({summary.split(': ', 1)[-1]}); "
            f"{len(times)} runs, each a new process into a fresh folder: "
            f"min {min(times):.2f}s, median {statistics.median(times):.2f}s "
            f"(runs: {', '.join(f'{t:.2f}s' for t in times)}).",
            "",
        ]
    return "\n".join(out)


# --- main -----------------------------------------------------------------------------


def check_machine() -> None:
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise BenchError(f"'{tool}' is missing; bench/run installs it")
    cores = os.sched_getaffinity(0)
    if not {int(APP_CORE), int(WRK_CORE)} <= cores:
        raise BenchError(f"needs cores {APP_CORE} and {WRK_CORE}; this process may use {cores}")


@dataclass(frozen=True)
class RunStart:
    """What every benchmark notes before it starts, and the folder it works in."""

    started: dt.datetime
    source: str  # the apps load the tree as it is now
    load_before: str
    work: Path


def begin(name: str) -> RunStart | None:
    """Check the machine and make a work folder; None (after saying why) if it cannot run."""
    started = dt.datetime.now(dt.UTC)
    source = source_state()
    load_before = load_average()
    try:
        check_machine()
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return None
    work = Path(tempfile.mkdtemp(prefix=f"microforge-bench-{name}"))
    log(f"work folder {work}; load average {load_before}")
    return RunStart(started, source, load_before, work)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(sys.argv[1:] if argv is None else argv)
    run = begin("")
    if run is None:
        return 1
    started, source, load_before, work = run.started, run.source, run.load_before, run.work
    try:
        generate = None
        if options.generate_runs:
            generate = time_generate(options.generate_runs, work)
        log("generating the catalog service from bench/specs/catalog.yaml")
        project = work / "catalog-project"
        run_checked([venv_tool("microforge"), "generate", str(CATALOG_SPEC), "-o", str(project)])
        generated_service = project / "services" / "catalog"
        seed = make_seed(options.products, options.categories)
        files = write_data_files(seed, work)
        results: dict[str, Measured] = {}
        pg_version = None
        if options.only in (None, "sqlite"):
            urls = {app: f"sqlite+aiosqlite:///{work / f'{app}.db'}" for app in APPS}
            results["sqlite"] = bench_database(
                "sqlite", urls, options, seed, files, generated_service, work, None
            )
        if options.only in (None, "postgres"):
            assert options.postgres_url is not None
            pg_version = asyncio.run(postgres_version(options.postgres_url))
            urls = {
                app: asyncio.run(create_postgres_database(options.postgres_url, f"bench_{app}"))
                for app in (*APPS, CEILING_APP)
            }
            results["postgres"] = bench_database(
                "postgres",
                urls,
                options,
                seed,
                files,
                generated_service,
                work,
                options.postgres_pid,
            )
        report = render(
            options, results, pg_version, generate, started, (load_before, load_average()), source
        )
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        print(f"bench: logs and data kept in {work}", file=sys.stderr)
        return 1
    return publish(options, work, report)


def publish(options: Options, work: Path, report: str) -> int:
    """Print and write the report; remove the work folder unless asked to keep it."""
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(report + "\n")
    print(report)
    log(f"written to {options.output}")
    if options.keep:
        log(f"work folder kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
