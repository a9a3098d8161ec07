"""CPU per request with auth on and off, inside one process per app: no HTTP, no wrk.

Generates bench/auth.py's four services (auth and owned, each on and off), gives each a
database with the same 10,000 products, then starts one fresh process per app and
measurement, alternating the apps, that calls the app's ASGI callable directly: GET one
(random seeded ids) and the list, with the Authorization header for the auth-on apps.
Prints CPU-µs per request (process time over the requests) and the on/off ratios; with
--profile APP it prints that app's cProfile instead (top functions by own time).

    uv run python bench/inprocess_auth.py                          # SQLite files
    uv run python bench/inprocess_auth.py --postgres-url postgresql+asyncpg://postgres@host/postgres
    uv run python bench/inprocess_auth.py --profile auth-on --scenario get
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import uvloop
from auth import APPS, VARIANTS, generate, make_tokens, setups, variant_of
from run import (
    LIST_PATH,
    create_postgres_database,
    insert_seed,
    make_seed,
    migrate,
    round_order,
    run_checked,
    write_data_files,
)
from sqlalchemy.ext.asyncio import create_async_engine

WARMUP = 300


async def measure(app: Any, paths: list[str], token: str | None, count: int) -> float:
    headers = [(b"host", b"bench")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    def scope(target: str) -> dict[str, Any]:
        path, _, query = target.partition("?")
        return {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": query.encode(), "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 1), "server": ("bench", 80), "state": {},
        }  # fmt: skip

    rng = random.Random(7)
    for _ in range(WARMUP):
        await app(scope(rng.choice(paths)), receive, send)
    targets = [rng.choice(paths) for _ in range(count)]
    started = time.process_time()
    for target in targets:
        await app(scope(target), receive, send)
    elapsed = time.process_time() - started
    if set(statuses) != {200}:
        raise SystemExit(f"unexpected statuses {sorted(set(statuses))}")
    return 1e6 * elapsed / count


async def child(
    scenario: str, ids_file: Path, token: str | None, count: int, profile: bool
) -> None:
    sys.path.insert(0, os.getcwd())
    from catalog_service.generated.app import create_app  # type: ignore[import-not-found]

    app = create_app()
    if scenario == "get":
        paths = [f"/products/{line}" for line in ids_file.read_text().split()]
    else:
        paths = [LIST_PATH]
    async with app.router.lifespan_context(app):
        if not profile:
            print(json.dumps({"cpu_us": await measure(app, paths, token, count)}))
            return
        profiler = cProfile.Profile()
        profiler.enable()
        cpu_us = await measure(app, paths, token, count)
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(35)
    stats.sort_stats("cumulative").print_stats(r"auth|guard|policy|security|dependencies", 25)
    print(f"{cpu_us:.0f} CPU-µs per request under the profiler\n{out.getvalue()}")


async def drop_databases(admin_url: str, names: list[str]) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            for name in names:
                await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-url", help="admin URL; default: SQLite files")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--get", type=int, default=3000, help="GET requests per measurement")
    parser.add_argument("--list", type=int, default=1000, help="list requests per measurement")
    parser.add_argument("--profile", choices=APPS, help="profile this app instead")
    parser.add_argument("--scenario", choices=("get", "list"), help="only this scenario")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # scenario ids count
    args = parser.parse_args()
    if args.child:
        scenario, ids, count = args.child
        token = os.environ.get("BENCH_TOKEN") or None
        uvloop.run(child(scenario, Path(ids), token, int(count), args.profile is not None))
        return

    work = Path(tempfile.mkdtemp(prefix="microforge-inprocess-auth-"))
    try:
        services = generate(work)
        tokens = make_tokens(work, VARIANTS[0].spec)
        seed = make_seed(10_000, 20)
        files = write_data_files(seed, work)
        if args.postgres_url:
            urls = {
                app: asyncio.run(
                    create_postgres_database(args.postgres_url, f"inproc_{app.replace('-', '_')}")
                )
                for app in APPS
            }
        else:
            urls = {app: f"sqlite+aiosqlite:///{work / f'{app}.db'}" for app in APPS}
        apps = setups(urls, services, tokens)
        for app, setup in apps.items():
            migrate(setup.cwd, setup.env)
            owner = tokens.subject if variant_of(app).owned else None
            asyncio.run(insert_seed(urls[app], seed, owner))
        scenarios = [args.scenario] if args.scenario else ["get", "list"]
        counts = {"get": args.get, "list": args.list}

        def run_child(app: str, scenario: str, profile: bool = False) -> str:
            setup = apps[app]
            env = {**setup.env, "BENCH_TOKEN": tokens.token if app.endswith("-on") else ""}
            command = [sys.executable, str(Path(__file__).resolve()), "--child", scenario,
                       str(files.product_ids), str(counts[scenario])]  # fmt: skip
            if profile:
                command += ["--profile", app]
            return run_checked(command, cwd=setup.cwd, env=env, timeout=900)

        if args.profile:
            for scenario in scenarios:
                print(f"== {args.profile} {scenario}\n{run_child(args.profile, scenario, True)}")
            return
        cpu: dict[tuple[str, str], list[float]] = {}
        for round_number in range(args.rounds):
            for scenario in scenarios:
                for app in round_order(APPS, round_number):
                    value = json.loads(run_child(app, scenario))["cpu_us"]
                    cpu.setdefault((scenario, app), []).append(value)
                    print(f"round {round_number + 1} {scenario:<4} {app:<9} {value:6.0f} CPU-µs")
        print("\n| scenario | variant | off CPU-µs | on CPU-µs | on - off | off/on |")
        print("| --- | --- | ---: | ---: | ---: | ---: |")
        for scenario in scenarios:
            for variant in VARIANTS:
                off = statistics.median(cpu[(scenario, variant.off)])
                on = statistics.median(cpu[(scenario, variant.on)])
                print(
                    f"| {scenario} | {variant.title} | {off:,.0f} | {on:,.0f} "
                    f"| {on - off:+,.0f} | {off / on:.2f}x |"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if args.postgres_url:
            asyncio.run(
                drop_databases(args.postgres_url, [f"inproc_{a.replace('-', '_')}" for a in APPS])
            )


if __name__ == "__main__":
    main()
