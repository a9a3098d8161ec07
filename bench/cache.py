"""Benchmark: GET one and a list with the entity cache on and off (issue #4).

Normally started by `bench/run cache` (which installs wrk, syncs the environment and
starts a throwaway PostgreSQL). Up to three generated catalog services side by side,
each on its own database with the same 10,000 products:

- off: bench/specs/catalog.yaml, no `cache` section: every read goes to the database;
- memory: bench/specs/catalog_cache.yaml, the same plus `cache:` on Product with the
  in-process backend (ttl 3600 s, room for 20,000 entries, so nothing is evicted);
- redis: that spec with `backend: redis`, against a Redis server this script starts on
  a free port (pinned to core 1 with wrk and PostgreSQL; skipped, with a note, when
  redis-server is missing or with --no-redis).

Every round starts the apps afresh, checks their answers, then fills each cache with
every seeded product and the list page (one GET each), so the measured runs see the
steady state of a cache holding the whole working set; the cache's own counters
(GET /_cache) are read around each measured run for the hit ratio. The machinery (data,
wrk, CPU accounting, rounds, medians) is bench/run.py's. See docs/benchmarks.md.

    python bench/cache.py --postgres-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
    python bench/cache.py --duration 3 --rounds 1 --no-redis     # a quick look
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import yaml
from run import (
    BENCH,
    CATALOG_SPEC,
    LIST_PATH,
    READ_SCENARIOS,
    READY_TIMEOUT,
    WRK_CORE,
    AppSetup,
    BenchError,
    DataFiles,
    Measured,
    Options,
    SeedData,
    Server,
    base_env,
    begin,
    create_postgres_database,
    expect_status,
    expected_list,
    free_port,
    fresh_rounds,
    insert_seed,
    load_average,
    log,
    make_parser,
    make_seed,
    median_of,
    migrate,
    ms,
    parse_options,
    postgres_version,
    publish,
    rounds_table,
    run_checked,
    setting_lines,
    venv_tool,
    write_data_files,
)

DEFAULT_OUTPUT = BENCH / "results" / "cache.md"
CACHE_SPEC = BENCH / "specs" / "catalog_cache.yaml"
ENTITY = "Product"
OFF = "off"
GOAL = 2.0  # issue #4: a cached GET one at twice the uncached requests per second or more
FILL_CONNECTIONS = 8
CHECK_SAMPLE = 200  # ids read again after the fill: every one must be a hit


@dataclass(frozen=True)
class Variant:
    app: str
    title: str
    backend: str | None  # None: no cache section


VARIANTS = (
    Variant(OFF, "off (no `cache:`)", None),
    Variant("memory", "memory (in-process)", "memory"),
    Variant("redis", "Redis", "redis"),
)


# --- Redis ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisServer:
    url: str
    pid: int | None  # None: a server this script did not start
    version: str


def redis_version(binary: str = "redis-server") -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"v=(\S+)", done.stdout)
    return found.group(1) if found else "unknown"


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_server(work: Path) -> Iterator[RedisServer | None]:
    """A throwaway Redis (no persistence) on a free port, as scripts/test starts one;
    pinned to core 1 like PostgreSQL so core 0 stays the app's. None if not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        print("bench: redis-server not found: the Redis variant is skipped", file=sys.stderr)
        yield None
        return
    folder = work / "redis"
    folder.mkdir()
    port = free_port()
    command = [
        "taskset", "-c", WRK_CORE, binary, "--port", str(port), "--bind", "127.0.0.1",
        "--dir", str(folder), "--save", "", "--appendonly", "no", "--daemonize", "no",
    ]  # fmt: skip
    with (folder / "redis.log").open("wb") as sink:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not _redis_answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                log_text = (folder / "redis.log").read_text(errors="replace")
                raise BenchError(f"Redis did not start:\n{log_text[-2000:]}")
            time.sleep(0.05)
        yield RedisServer(f"redis://127.0.0.1:{port}/0", process.pid, redis_version(binary))
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the services ---------------------------------------------------------------------


def with_backend(spec: Path, backend: str, out: Path) -> Path:
    """The cached spec with Product's cache in another backend."""
    document = yaml.safe_load(spec.read_text(encoding="utf-8"))
    document["services"]["catalog"]["entities"][ENTITY]["cache"]["backend"] = backend
    out.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return out


def generate(work: Path, variants: Sequence[Variant]) -> dict[str, Path]:
    """Each app's generated catalog service folder."""
    microforge = venv_tool("microforge")
    services: dict[str, Path] = {}
    for variant in variants:
        if variant.backend is None:
            spec = CATALOG_SPEC
        elif variant.backend == "memory":
            spec = CACHE_SPEC
        else:
            spec = with_backend(CACHE_SPEC, variant.backend, work / f"{variant.app}.yaml")
        log(f"generating {variant.app} from {spec}")
        project = work / f"{variant.app}-project"
        run_checked([microforge, "generate", str(spec), "-o", str(project)])
        services[variant.app] = project / "services" / "catalog"
    return services


def setups(
    urls: dict[str, str], services: dict[str, Path], redis: RedisServer | None
) -> dict[str, AppSetup]:
    result = {}
    for app, service in services.items():
        env = base_env(PYTHONPATH=".", CATALOG_DATABASE_URL=urls[app])
        if app == "redis":
            assert redis is not None
            env["CATALOG_REDIS_URL"] = redis.url
        result[app] = AppSetup(app, "catalog_service.main:app", service, env)
    return result


# --- checks and filling ---------------------------------------------------------------


def cache_counters(server: Server) -> dict[str, Any]:
    """Product's cache counters from the service's admin endpoint."""
    response = httpx.get(f"{server.url}/_cache", timeout=10)
    expect_status(server.app, "GET /_cache", response, 200)
    counters: dict[str, Any] = response.json()[ENTITY]
    return counters


def _get_all(server: Server, paths: Sequence[str]) -> None:
    """GET every path once, on a few keep-alive connections: the first read of each fills
    the cache. http.client, not httpx: the client's own CPU per request is a fraction of
    httpx's, so filling 10,000 entries takes seconds."""
    chunks = [paths[i::FILL_CONNECTIONS] for i in range(FILL_CONNECTIONS)]

    def read(chunk: Sequence[str]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            for path in chunk:
                try:
                    connection.request("GET", path)
                    response = connection.getresponse()
                    body = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    raise BenchError(
                        f"{server.app}: GET {path} failed: {exc!r}\n{server.log_tail()}"
                    ) from exc
                if response.status != 200:
                    raise BenchError(
                        f"{server.app}: GET {path} answered {response.status}: {body[:300]!r}"
                    )
        finally:
            connection.close()

    with ThreadPoolExecutor(FILL_CONNECTIONS) as pool:
        for done in [pool.submit(read, chunk) for chunk in chunks]:
            done.result()


def fill(server: Server, seed: SeedData) -> dict[str, Any]:
    """Load every seeded product and the list page into the app's cache, then check
    that they are served from it: a sample read again must be all hits."""
    paths = [f"/products/{p['id']}" for p in seed.products] + [LIST_PATH]
    _get_all(server, paths)
    before = cache_counters(server)
    sample = paths[:: max(len(paths) // CHECK_SAMPLE, 1)]
    _get_all(server, sample)
    after = cache_counters(server)
    hits, misses = after["hits"] - before["hits"], after["misses"] - before["misses"]
    if misses or hits != len(sample):
        raise BenchError(
            f"{server.app}: after the fill, {len(sample)} reads gave {hits} hits and "
            f"{misses} misses"
        )
    size = after["store"].get("size")
    if size is not None and size < len(seed.products) + 1:
        raise BenchError(f"{server.app}: the cache holds {size} entries after the fill")
    return after


def check_answers(servers: dict[str, Server], seed: SeedData) -> None:
    """Every app answers both scenarios with the seeded data and 404 for an unknown id,
    and a cached app answers as the uncached one does, before and after a cache hit."""
    product = seed.products[len(seed.products) // 2]
    expected = expected_list(seed)
    bodies: dict[str, Any] = {}
    for app, server in servers.items():
        with httpx.Client(base_url=server.url, timeout=10) as client:
            reads = [
                (client.get(f"/products/{product['id']}"), client.get(LIST_PATH))
                for _ in range(2)  # on a cached app: a miss, then a hit
            ]
            missing = client.get("/products/00000000-0000-4000-8000-000000000000")
        expect_status(app, "GET unknown id", missing, 404)
        for one, page in reads:
            expect_status(app, "GET one", one, 200)
            expect_status(app, "list", page, 200)
            if one.json() != reads[0][0].json() or page.json() != reads[0][1].json():
                raise BenchError(f"{app}: a second read answered differently from the first")
        got, listed = reads[0][0].json(), reads[0][1].json()
        if (got["id"], got["name"], Decimal(got["price"])) != (
            str(product["id"]),
            product["name"],
            product["price"],
        ):
            raise BenchError(f"{app}: GET one returned {got}")
        if listed["total"] != len(expected) or [item["id"] for item in listed["items"]] != [
            str(p["id"]) for p in expected[:20]
        ]:
            raise BenchError(f"{app}: the list is not the seeded page: {listed}")
        bodies[app] = (got, listed)
    for app, answer in bodies.items():
        if answer != bodies[OFF]:
            raise BenchError(f"{app} and {OFF} answer differently")


# --- hit ratios -----------------------------------------------------------------------


@dataclass
class HitRatios:
    """Hits and misses of each measured run of a cached app, from its own counters."""

    runs: dict[tuple[str, str], list[tuple[int, int]]] = field(default_factory=dict)

    @contextmanager
    def observe(self, scenario: str, app: str, server: Server) -> Iterator[None]:
        if app == OFF:
            yield
            return
        before = cache_counters(server)
        yield
        after = cache_counters(server)
        self.runs.setdefault((scenario, app), []).append(
            (after["hits"] - before["hits"], after["misses"] - before["misses"])
        )

    def ratio(self, scenario: str, app: str, index: int | None = None) -> str:
        runs = self.runs.get((scenario, app), [])
        if index is not None:
            runs = runs[index : index + 1]
        hits, misses = sum(h for h, _ in runs), sum(m for _, m in runs)
        return f"{hits / (hits + misses):.2%}" if hits + misses else "-"


# --- one database ---------------------------------------------------------------------


def bench_database(
    label: str,
    urls: dict[str, str],
    options: Options,
    seed: SeedData,
    files: DataFiles,
    services: dict[str, Path],
    redis: RedisServer | None,
    work: Path,
) -> tuple[Measured, HitRatios]:
    apps = setups(urls, services, redis)
    for app, setup in apps.items():
        log(f"{label}: {app}: schema, then {len(seed.products)} products by direct inserts")
        migrate(setup.cwd, setup.env)
        asyncio.run(insert_seed(urls[app], seed))
    hit_ratios = HitRatios()

    def prepare(servers: dict[str, Server]) -> None:
        check_answers(servers, seed)
        for app, server in servers.items():
            if app != OFF:
                size = fill(server, seed)["store"].get("size")
                held = f"{size} entries" if size is not None else "entries in Redis"
                log(f"{label}: {app}: cache filled ({held}); a sample read again: all hits")

    measured = fresh_rounds(
        label,
        apps,
        options,
        files,
        work,
        READ_SCENARIOS,
        prepare,
        postgres_pid=options.postgres_pid,
        helper_pids=[redis.pid] if redis is not None and redis.pid is not None else [],
        observe=hit_ratios.observe,
    )
    return measured, hit_ratios


# --- report ---------------------------------------------------------------------------


def ratio_table(measured: Measured, hits: HitRatios) -> tuple[list[str], list[str]]:
    """Medians of off and each cached app per scenario, on/off, and each round's."""
    lines = [
        "| scenario | cache | req/s | on/off | on/off each round | p50 / p99 (ms) "
        "| CPU-µs/req | hit ratio |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    missed: list[str] = []
    variants = [v for v in VARIANTS if v.app in measured.apps]
    for scenario in READ_SCENARIOS:
        off = measured.rounds[(scenario.key, OFF)]
        for variant in variants:
            runs = measured.rounds[(scenario.key, variant.app)]
            rate = median_of(runs, "requests_per_s")
            if variant.app == OFF:
                ratio, each = "", ""
            else:
                value = rate / median_of(off, "requests_per_s")
                ratio = f"{value:.2f}x"
                each = ", ".join(
                    f"{b.requests_per_s / a.requests_per_s:.2f}"
                    for a, b in zip(off, runs, strict=True)
                )
                if scenario.key == "get" and value < GOAL:
                    missed.append(f"{variant.app} ({value:.2f}x)")
            lines.append(
                f"| {scenario.title} | {variant.title} | {rate:,.0f} | {ratio} | {each} "
                f"| {ms(median_of(runs, 'p50_ms'))} / {ms(median_of(runs, 'p99_ms'))} "
                f"| {median_of(runs, 'cpu_us_per_request'):,.0f} "
                f"| {'-' if variant.app == OFF else hits.ratio(scenario.key, variant.app)} |"
            )
    return lines, missed


def per_round_table(measured: Measured, hits: HitRatios) -> list[str]:
    """Every round: req/s, p50 and p99 of each app and the on/off ratio of that round."""
    cached = [app for app in measured.apps if app != OFF]
    head = "| scenario | round | off req/s (p50 / p99 ms) |"
    rule = "| --- | ---: | ---: |"
    for app in cached:
        head += f" {app} req/s (p50 / p99 ms) | {app}/off | {app} hits |"
        rule += " ---: | ---: | ---: |"
    lines = [head, rule]
    for scenario in READ_SCENARIOS:
        for index, off in enumerate(measured.rounds[(scenario.key, OFF)]):
            row = (
                f"| {scenario.key} | {index + 1} | {off.requests_per_s:,.0f} "
                f"({ms(off.p50_ms)} / {ms(off.p99_ms)}) |"
            )
            for app in cached:
                on = measured.rounds[(scenario.key, app)][index]
                row += (
                    f" {on.requests_per_s:,.0f} ({ms(on.p50_ms)} / {ms(on.p99_ms)}) "
                    f"| {on.requests_per_s / off.requests_per_s:.2f}x "
                    f"| {hits.ratio(scenario.key, app, index)} |"
                )
            lines.append(row)
    return lines


def render(
    options: Options,
    measured: Measured,
    hits: HitRatios,
    pg_version: str | None,
    redis: RedisServer | None,
    started: dt.datetime,
    loads: tuple[str, str],
    source: str,
) -> str:
    database = "PostgreSQL" if options.only == "postgres" else "SQLite (one file per app, WAL)"
    table, missed = ratio_table(measured, hits)
    out = [
        f"# microforge benchmark: caching, cached against uncached on {database}",
        "",
        *setting_lines(options, pg_version, started, loads, source),
        "- Redis: "
        + (
            f"{redis.version}, started by the benchmark (`taskset -c {WRK_CORE} redis-server "
            "--save '' --appendonly no`), `CATALOG_REDIS_URL`"
            if redis is not None and redis.pid is not None
            else (f"{redis.version} at {redis.url}" if redis is not None else "not run")
        ),
        f"- Data: {options.products:,} products over {options.categories} categories per app "
        f"and database; {options.rounds} round(s), each with fresh app processes, its "
        f"checks, the caches filled (every product and the list page read once), then "
        f"{options.warmup}s warm-up per app and scenario; the app going first rotating; "
        "medians shown",
        f"- List URL: `{LIST_PATH}`; GET one: a random seeded id per request",
        "- off: bench/specs/catalog.yaml; memory: bench/specs/catalog_cache.yaml (Product "
        "`cache: {backend: memory, ttl: 3600, max_entries: 20000}`, cache-aside, W-TinyLFU); "
        "redis: the same with `backend: redis`",
        "- hit ratio: the cache's hits / (hits + misses) during the measured runs (GET /_cache)",
        "",
        f"## {database}",
        "",
        *table,
        "",
        "Each round:",
        "",
        *per_round_table(measured, hits),
        "",
        *rounds_table(measured, READ_SCENARIOS),
        "",
        f"Goal: a cached GET one at {GOAL:.1f}x of the uncached requests per second or more. "
        + ("Missed: " + "; ".join(missed) + "." if missed else "Met."),
    ]
    return "\n".join(out)


# --- main -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(
        "bench/run cache",
        "GET one and a list with the entity cache on and off (memory, Redis).",
        output=DEFAULT_OUTPUT,
        generate=False,
    )
    parser.set_defaults(only="postgres")  # the issue asks for PostgreSQL; --only sqlite works
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis variant")
    parser.add_argument(
        "--redis-url",
        help="use this Redis server instead of starting one (its CPU then counts as others')",
    )
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)  # this script's own options; parse_options reads the rest
    options = parse_options(argv, parser)
    assert options.only is not None
    run = begin("cache-")
    if run is None:
        return 1
    started, source, load_before, work = run.started, run.source, run.load_before, run.work
    try:
        with (
            redis_server(work)
            if not (args.no_redis or args.redis_url)
            else _given_redis(args.redis_url)
        ) as redis:
            variants = [v for v in VARIANTS if v.backend != "redis" or redis is not None]
            services = generate(work, variants)
            seed = make_seed(options.products, options.categories)
            files = write_data_files(seed, work)
            pg_version = None
            if options.only == "sqlite":
                urls = {v.app: f"sqlite+aiosqlite:///{work / f'{v.app}.db'}" for v in variants}
            else:
                assert options.postgres_url is not None
                pg_version = asyncio.run(postgres_version(options.postgres_url))
                urls = {
                    v.app: asyncio.run(
                        create_postgres_database(options.postgres_url, f"bench_cache_{v.app}")
                    )
                    for v in variants
                }
            measured, hits = bench_database(
                options.only, urls, options, seed, files, services, redis, work
            )
        report = render(
            options,
            measured,
            hits,
            pg_version,
            redis,
            started,
            (load_before, load_average()),
            source,
        )
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        print(f"bench: logs and data kept in {work}", file=sys.stderr)
        return 1
    return publish(options, work, report)


@contextmanager
def _given_redis(url: str | None) -> Iterator[RedisServer | None]:
    """--redis-url's server (not started here), or None for --no-redis."""
    yield RedisServer(url, None, "(given)") if url else None


if __name__ == "__main__":
    raise SystemExit(main())
