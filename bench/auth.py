"""Benchmark: what authentication and authorization cost on GET one and on the list.

Normally started by `bench/run auth` (which installs wrk, syncs the environment and
starts a throwaway PostgreSQL). Two variants of the catalog service, each measured
against its own auth-off twin in the same run, side by side, rounds alternating:

- auth: bench/specs/catalog_auth.yaml, `read: authenticated` on Product (token check,
  then the policy's decision; no row scope, so the SQL is the open service's);
- owned: bench/specs/catalog_owned_auth.yaml, the same plus `own: owner_id`, so every
  statement also carries `owner_id = <token subject>` (all 10,000 rows belong to it).

A twin is its spec without `auth` and `access`: the same tables, nobody checked. The
auth-on services get one token signed with a throwaway key (their JWKS file names it),
sent by wrk with every request, as a real client reuses its token. Every round starts
the four apps afresh and warms them up: processes of the same code vary. The machinery
(data, wrk, CPU accounting, medians) is bench/run.py's. See docs/benchmarks.md.

    python bench/auth.py --postgres-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
    python bench/auth.py --only sqlite --duration 3 --rounds 1     # a quick look
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import yaml
from run import (
    BENCH,
    LIST_PATH,
    READ_SCENARIOS,
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

from microforge.runtime.auth.testing import TestTokens
from microforge.runtime.auth.tokens import TokenIssuer

DEFAULT_OUTPUT = BENCH / "results" / "auth.md"
TOKEN_TTL = 24 * 3600  # outlives any run; the service caches the verified token till then
MEASURED = READ_SCENARIOS
GOAL = 0.90  # auth on at no fewer than 90% of the requests per second of auth off


@dataclass(frozen=True)
class Variant:
    key: str
    title: str
    spec: Path
    owned: bool  # rows carry owner_id = the token's subject

    @property
    def off(self) -> str:
        return f"{self.key}-off"

    @property
    def on(self) -> str:
        return f"{self.key}-on"


VARIANTS = (
    Variant("auth", "read: authenticated", BENCH / "specs" / "catalog_auth.yaml", False),
    Variant(
        "owned",
        "read: authenticated, own: owner_id",
        BENCH / "specs" / "catalog_owned_auth.yaml",
        True,
    ),
)
APPS = tuple(app for v in VARIANTS for app in (v.off, v.on))


def variant_of(app: str) -> Variant:
    return next(v for v in VARIANTS if app in (v.off, v.on))


# --- the services ---------------------------------------------------------------------


def without_auth(spec: Path, out: Path) -> Path:
    """The auth-off twin of a spec: no `auth` section, no entity `access` rules."""
    document = yaml.safe_load(spec.read_text(encoding="utf-8"))
    document.pop("auth", None)
    for service in document["services"].values():
        for entity in service["entities"].values():
            entity.pop("access", None)
    out.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return out


def generate(work: Path) -> dict[str, Path]:
    """Each app's generated catalog service folder."""
    microforge = venv_tool("microforge")
    services: dict[str, Path] = {}
    for variant in VARIANTS:
        specs = {
            variant.on: variant.spec,
            variant.off: without_auth(variant.spec, work / f"{variant.off}.yaml"),
        }
        for app, spec in specs.items():
            log(f"generating {app} from {spec}")
            project = work / f"{app}-project"
            run_checked([microforge, "generate", str(spec), "-o", str(project)])
            services[app] = project / "services" / "catalog"
    return services


@dataclass(frozen=True)
class Tokens:
    subject: uuid.UUID  # owns every seeded product
    jwks_file: Path
    issuer: str
    audience: str
    token: str  # the one wrk sends
    stranger: str  # another user's: sees no row of the owned variant
    forged: str  # the token with another signature

    @property
    def header(self) -> str:
        return f"Authorization: Bearer {self.token}"


def make_tokens(work: Path, spec: Path) -> Tokens:
    """A throwaway signing key, its JWKS file, and tokens with the generated defaults'
    issuer and audience (urn:microforge:<project>:identity, urn:microforge:<project>)."""
    project = yaml.safe_load(spec.read_text(encoding="utf-8"))["name"]
    issuer, audience = f"urn:microforge:{project}:identity", f"urn:microforge:{project}"
    keys = TestTokens(work / "auth", issuer, audience)
    signer = TokenIssuer(keys.keys, issuer, audience, access_ttl=TOKEN_TTL)
    subject = uuid.UUID("0190c0de-0000-7000-8000-00000000b001")
    token, _ = signer.issue(str(subject), "user", ["customer"])
    stranger, _ = signer.issue(str(uuid.uuid4()), "user", ["customer"])
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[::-1]}"
    return Tokens(subject, keys.jwks_file, issuer, audience, token, stranger, forged)


def setups(urls: dict[str, str], services: dict[str, Path], tokens: Tokens) -> dict[str, AppSetup]:
    result = {}
    for app in APPS:
        env = base_env(PYTHONPATH=".", CATALOG_DATABASE_URL=urls[app])
        if app.endswith("-on"):
            env.update(
                CATALOG_AUTH_JWKS_FILE=str(tokens.jwks_file),
                CATALOG_AUTH_ISSUER=tokens.issuer,
                CATALOG_AUTH_AUDIENCE=tokens.audience,
            )
        result[app] = AppSetup(app, "catalog_service.main:app", services[app], env)
    return result


# --- checks ---------------------------------------------------------------------------


def check_answers(servers: dict[str, Server], seed: SeedData, tokens: Tokens) -> None:
    """Before measuring: every app answers both scenarios with the seeded data, auth-on
    apps refuse requests without a valid token, and the owned one hides rows from others."""
    product = seed.products[len(seed.products) // 2]
    expected = expected_list(seed)
    bodies: dict[str, Any] = {}
    for app, server in servers.items():
        variant = variant_of(app)
        on = app == variant.on
        mine = {"Authorization": f"Bearer {tokens.token}"} if on else {}
        with httpx.Client(base_url=server.url, timeout=10) as client:
            one = client.get(f"/products/{product['id']}", headers=mine)
            page = client.get(LIST_PATH, headers=mine)
            expect_status(app, "GET one", one, 200)
            expect_status(app, "list", page, 200)
            expect_status(
                app, "GET unknown id", client.get(f"/products/{uuid.uuid4()}", headers=mine), 404
            )
            if on:
                for name, headers in (
                    ("without a token", {}),
                    ("with a forged token", {"Authorization": f"Bearer {tokens.forged}"}),
                ):
                    expect_status(
                        app,
                        f"GET one {name}",
                        client.get(f"/products/{product['id']}", headers=headers),
                        401,
                    )
                    expect_status(app, f"list {name}", client.get(LIST_PATH, headers=headers), 401)
                other = {"Authorization": f"Bearer {tokens.stranger}"}
                theirs = client.get(f"/products/{product['id']}", headers=other)
                their_page = client.get(LIST_PATH, headers=other)
                if variant.owned:
                    expect_status(app, "GET one of another owner", theirs, 404)
                    expect_status(app, "list of another owner", their_page, 200)
                    if their_page.json()["total"] != 0:
                        raise BenchError(f"{app}: another user lists {their_page.json()}")
                else:
                    expect_status(app, "GET one by another user", theirs, 200)
        got, listed = one.json(), page.json()
        if (got["id"], got["name"], Decimal(got["price"])) != (
            str(product["id"]),
            product["name"],
            product["price"],
        ):
            raise BenchError(f"{app}: GET one returned {got}")
        if variant.owned and got.get("owner_id") != str(tokens.subject):
            raise BenchError(f"{app}: GET one returned owner {got.get('owner_id')}")
        if listed["total"] != len(expected) or [item["id"] for item in listed["items"]] != [
            str(p["id"]) for p in expected[:20]
        ]:
            raise BenchError(f"{app}: the list is not the seeded page: {listed}")
        bodies[app] = (got, listed)
    for variant in VARIANTS:
        if bodies[variant.on] != bodies[variant.off]:
            raise BenchError(f"{variant.key}: auth on and off answer differently")


# --- one database ---------------------------------------------------------------------


def bench_database(
    label: str,
    urls: dict[str, str],
    options: Options,
    seed: SeedData,
    files: DataFiles,
    services: dict[str, Path],
    tokens: Tokens,
    work: Path,
    postgres_pid: int | None,
) -> Measured:
    apps = setups(urls, services, tokens)
    for app, setup in apps.items():
        log(f"{label}: {app}: schema, then {len(seed.products)} products by direct inserts")
        migrate(setup.cwd, setup.env)
        owner = tokens.subject if variant_of(app).owned else None
        asyncio.run(insert_seed(urls[app], seed, owner))
    headers = {app: (tokens.header,) if app.endswith("-on") else () for app in APPS}
    return fresh_rounds(
        label,
        apps,
        options,
        files,
        work,
        MEASURED,
        lambda servers: check_answers(servers, seed, tokens),
        postgres_pid=postgres_pid,
        headers=headers,
    )


# --- report ---------------------------------------------------------------------------


def ratio_table(measured: Measured) -> tuple[list[str], list[str]]:
    """Medians of auth off and on per variant and scenario, the ratio, and what missed."""
    lines = [
        "| scenario | variant | off req/s | on req/s | on/off | ratio of each round "
        "| off p50/p99 (ms) | on p50/p99 (ms) | off CPU-µs/req | on CPU-µs/req | on - off |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    missed: list[str] = []
    for scenario in MEASURED:
        for variant in VARIANTS:
            off = measured.rounds[(scenario.key, variant.off)]
            on = measured.rounds[(scenario.key, variant.on)]
            rate_off, rate_on = median_of(off, "requests_per_s"), median_of(on, "requests_per_s")
            ratio = rate_on / rate_off
            each = ", ".join(
                f"{b.requests_per_s / a.requests_per_s:.2f}" for a, b in zip(off, on, strict=True)
            )
            cpu_off = median_of(off, "cpu_us_per_request")
            cpu_on = median_of(on, "cpu_us_per_request")
            if ratio < GOAL:
                missed.append(f"{scenario.key} {variant.key} ({ratio:.2f}x)")
            lines.append(
                f"| {scenario.key} | {variant.title} "
                f"| {rate_off:,.0f} | {rate_on:,.0f} "
                f"| {ratio:.2f}x | {each} "
                f"| {ms(median_of(off, 'p50_ms'))} / {ms(median_of(off, 'p99_ms'))} "
                f"| {ms(median_of(on, 'p50_ms'))} / {ms(median_of(on, 'p99_ms'))} "
                f"| {cpu_off:,.0f} | {cpu_on:,.0f} | {cpu_on - cpu_off:+,.0f} |"
            )
    return lines, missed


def render(
    options: Options,
    results: dict[str, Measured],
    pg_version: str | None,
    started: dt.datetime,
    loads: tuple[str, str],
    source: str,
) -> str:
    titles = {"sqlite": "SQLite (one file per app, WAL)", "postgres": "PostgreSQL"}
    out = [
        "# microforge benchmark: authentication and authorization cost",
        "",
        *setting_lines(options, pg_version, started, loads, source),
        f"- Data: {options.products:,} products over {options.categories} categories per app "
        f"and database; {options.warmup}s warm-up per app and scenario; "
        f"{options.rounds} round(s), each with fresh app processes and its own warm-up, "
        "the app going first rotating; medians shown",
        f"- List URL: `{LIST_PATH}`; GET one: a random seeded id per request",
        "- Auth on: one access token (EdDSA JWT) in `Authorization: Bearer` on every "
        "request, as a client reuses its token; the service verifies it once and then "
        "finds it in its verified-token cache",
        "- Variants: auth = bench/specs/catalog_auth.yaml (`read: authenticated`); owned = "
        "bench/specs/catalog_owned_auth.yaml (`own: owner_id`, every row the token's); "
        "off = the same spec without `auth` and `access`",
        "",
    ]
    missed_all: list[str] = []
    for database, measured in results.items():
        table, missed = ratio_table(measured)
        missed_all.extend(f"{titles[database]}: {row}" for row in missed)
        out += [f"## {titles[database]}", "", *table, "", *rounds_table(measured, MEASURED), ""]
    out.append(f"Goal: auth on at {GOAL:.2f}x of auth off or better (at most 10% fewer req/s). ")
    out.append("Missed: " + "; ".join(missed_all) + "." if missed_all else "Met on every row.")
    return "\n".join(out)


# --- main -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser(
        "bench/run auth",
        "The cost of authentication and authorization: auth on vs off, GET one and list.",
        output=DEFAULT_OUTPUT,
        generate=False,
    )
    options = parse_options(sys.argv[1:] if argv is None else argv, parser)
    run = begin("auth-")
    if run is None:
        return 1
    started, source, load_before, work = run.started, run.source, run.load_before, run.work
    try:
        services = generate(work)
        tokens = make_tokens(work, VARIANTS[0].spec)
        seed = make_seed(options.products, options.categories)
        files = write_data_files(seed, work)
        results: dict[str, Measured] = {}
        pg_version = None
        if options.only in (None, "sqlite"):
            urls = {app: f"sqlite+aiosqlite:///{work / f'{app}.db'}" for app in APPS}
            results["sqlite"] = bench_database(
                "sqlite", urls, options, seed, files, services, tokens, work, None
            )
        if options.only in (None, "postgres"):
            assert options.postgres_url is not None
            pg_version = asyncio.run(postgres_version(options.postgres_url))
            urls = {
                app: asyncio.run(
                    create_postgres_database(options.postgres_url, f"bench_{app.replace('-', '_')}")
                )
                for app in APPS
            }
            results["postgres"] = bench_database(
                "postgres",
                urls,
                options,
                seed,
                files,
                services,
                tokens,
                work,
                options.postgres_pid,
            )
        report = render(
            options, results, pg_version, started, (load_before, load_average()), source
        )
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        print(f"bench: logs and data kept in {work}", file=sys.stderr)
        return 1
    return publish(options, work, report)


if __name__ == "__main__":
    raise SystemExit(main())
