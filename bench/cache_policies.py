"""Benchmark: hit ratio of the in-process cache policies against Belady's optimum.

Replays synthetic request traces (fixed seed) through each store of
microforge.runtime.cache.policies (LRU, LFU, TTL, W-TinyLFU) at three cache sizes, and
compares their hit ratios with OPT, the clairvoyant optimum on the same trace, and with
a static oracle that holds the most probable keys. No server, no database: pure Python,
one process, about a minute and a half here. See docs/benchmarks.md.

    uv run python bench/cache_policies.py          # or: bench/run cache-policies
    uv run python bench/cache_policies.py --requests 100000    # a quick look

Every request is a `get`; a miss is followed by a `put` of the key, as a read-through
cache does. Traces:

- zipf 0.8 / zipf 1.0: independent requests over 100,000 keys, probability of the key
  of rank r proportional to 1/r^alpha (ranks shuffled onto key ids);
- scan + hot set: phases of 25,000 Zipf(0.9) requests over 10,000 hot keys alternate
  with sequential scans of 25,000 keys never seen before or after (half the requests);
- zipf 1.0, shifting: as zipf 1.0, but the popularity ranking is drawn afresh every
  100,000 requests (what LFU, which never forgets a count, handles worst).

TTL gives every entry the same time to live, longer than the trace, so it evicts the
oldest write first: FIFO. The other policies get no expiry.

OPT is Belady's MIN with bypass: on a miss with the cache full, of the resident keys
and the requested one, the one whose next use is furthest (or never) is left out.
Computed in O(n log n) from next-use indices and a heap with lazy deletion, and checked
against an exhaustive search on small random traces before the run. No policy can beat
it; the run checks that too. The classic MIN (every missed key enters) is reported
beside it. The static oracle holds the most probable keys of the current phase from
their first request on: the best expected hit ratio without look-ahead.
"""

from __future__ import annotations

import argparse
import functools
import heapq
import itertools
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from run import source_state

from microforge.runtime.cache.policies import POLICIES, Policy, Store, make_store

BENCH = Path(__file__).resolve().parent
DEFAULT_OUTPUT = BENCH / "results" / "cache_policies.md"
SEED = 20261127
SIZES = (100, 1_000, 10_000)  # entries; 0.1%, 1% and 10% of the Zipf traces' keys
ZIPF_KEYS = 100_000
HOT_KEYS = 10_000
HOT_ALPHA = 0.9
PHASE = 25_000  # hot requests per phase, and the length of each scan
GOAL_SHARE = 0.9  # issue #4: W-TinyLFU within 10% of OPT on the Zipf traces
SHIFT = 100_000  # requests between two popularity rankings of the shifting trace
LABELS: dict[Policy, str] = {"lru": "LRU", "lfu": "LFU", "ttl": "TTL", "tinylfu": "W-TinyLFU"}


def log(message: str) -> None:
    print(f"--> {message}", file=sys.stderr, flush=True)


# --- traces ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Trace:
    name: str
    requests: list[int]
    distinct: int
    # (first request, key ids by decreasing probability) of each phase: for the oracle.
    phases: list[tuple[int, list[int]]]


def zipf(
    keys: int, alpha: float, rng: random.Random
) -> tuple[list[int], Callable[[int], list[int]]]:
    """Key ids by decreasing probability, and a sampler of n requests where the key of
    rank r has probability proportional to 1/r^alpha."""
    cumulative = list(itertools.accumulate(1.0 / rank**alpha for rank in range(1, keys + 1)))
    ranked = list(range(keys))
    rng.shuffle(ranked)  # popularity unrelated to the id

    def draw(n: int) -> list[int]:
        return rng.choices(ranked, cum_weights=cumulative, k=n)

    return ranked, draw


def zipf_trace(requests: int, keys: int, alpha: float, rng: random.Random) -> Trace:
    ranked, draw = zipf(keys, alpha, rng)
    trace = draw(requests)
    return Trace(f"zipf {alpha}", trace, len(set(trace)), [(0, ranked)])


def shifting_trace(requests: int, keys: int, alpha: float, rng: random.Random) -> Trace:
    """Zipf requests whose popularity ranking is drawn afresh every SHIFT requests."""
    trace: list[int] = []
    phases: list[tuple[int, list[int]]] = []
    while len(trace) < requests:
        ranked, draw = zipf(keys, alpha, rng)
        phases.append((len(trace), ranked))
        trace.extend(draw(min(SHIFT, requests - len(trace))))
    return Trace(f"zipf {alpha}, shifting", trace, len(set(trace)), phases)


def scan_trace(requests: int, rng: random.Random) -> Trace:
    ranked, draw = zipf(HOT_KEYS, HOT_ALPHA, rng)
    trace: list[int] = []
    next_scan_key = HOT_KEYS  # scan keys follow the hot ids and never come back
    while len(trace) < requests:
        trace.extend(draw(PHASE))
        trace.extend(range(next_scan_key, next_scan_key + PHASE))
        next_scan_key += PHASE
    del trace[requests:]
    return Trace(f"scan + hot set ({HOT_ALPHA})", trace, len(set(trace)), [(0, ranked)])


# --- OPT ------------------------------------------------------------------------------


def next_uses(trace: Sequence[int]) -> list[int]:
    """For each request, the index of the same key's next request (len(trace) if none)."""
    never = len(trace)
    result = [never] * len(trace)
    last: dict[int, int] = {}
    for index in range(len(trace) - 1, -1, -1):
        key = trace[index]
        result[index] = last.get(key, never)
        last[key] = index
    return result


def belady_hits(
    trace: Sequence[int], capacity: int, nexts: Sequence[int], *, bypass: bool = True
) -> int:
    """Hits of Belady's MIN: with bypass, the optimum when a miss need not be cached;
    without, the classic form, where the requested key always enters."""
    cache: dict[int, int] = {}  # key -> index of its next use
    heap: list[tuple[int, int]] = []  # (-next use, key); stale items skipped lazily
    hits = 0
    for key, nxt in zip(trace, nexts, strict=True):
        if key in cache:
            hits += 1
        elif len(cache) >= capacity:
            while True:
                negative, furthest = heap[0]
                if cache.get(furthest) == -negative:
                    break
                heapq.heappop(heap)
            if bypass and -negative <= nxt:
                continue  # the requested key is needed last (or never): bypass it
            heapq.heappop(heap)
            del cache[furthest]
        cache[key] = nxt
        heapq.heappush(heap, (-nxt, key))
        if len(heap) > 4 * capacity + 1024:
            # Stale items outnumber live ones: rebuild (amortised O(1) per request).
            heap = [(-use, k) for k, use in cache.items()]
            heapq.heapify(heap)
    return hits


def exhaustive_hits(trace: Sequence[int], capacity: int) -> int:
    """The true optimum by trying every choice (tiny traces only): checks belady_hits."""

    @functools.cache
    def best(index: int, cache: frozenset[int]) -> int:
        if index == len(trace):
            return 0
        key = trace[index]
        if key in cache:
            return 1 + best(index + 1, cache)
        options = [best(index + 1, cache)]  # bypass
        if len(cache) < capacity:
            options.append(best(index + 1, cache | {key}))
        else:
            options.extend(best(index + 1, (cache - {out}) | {key}) for out in cache)
        return max(options)

    return best(0, frozenset())


def check_belady() -> None:
    rng = random.Random(SEED)
    for _ in range(300):
        keys = rng.randint(2, 6)
        trace = [rng.randrange(keys) for _ in range(rng.randint(1, 14))]
        capacity = rng.randint(1, 3)
        fast = belady_hits(trace, capacity, next_uses(trace))
        slow = exhaustive_hits(trace, capacity)
        if fast != slow:
            raise AssertionError(f"belady_hits {fast} != optimum {slow}: {trace}, {capacity}")


def oracle_hits(trace: Trace, capacity: int) -> int:
    """Hits of a cache that holds the `capacity` most probable keys of the current phase,
    each from its first request on: the best a policy does without look-ahead when
    requests are independent draws (Aho, Denning and Ullman's A0)."""
    loaded: set[int] = set()
    hits = 0
    ends = [start for start, _ in trace.phases[1:]] + [len(trace.requests)]
    for (start, ranked), end in zip(trace.phases, ends, strict=True):
        top = set(ranked[:capacity])
        loaded &= top
        for key in trace.requests[start:end]:
            if key in top:
                if key in loaded:
                    hits += 1
                else:
                    loaded.add(key)
    return hits


# --- policies -------------------------------------------------------------------------


def replay(policy: Policy, capacity: int, trace: Sequence[int], ttl: float) -> tuple[int, float]:
    """Hits and CPU seconds of one store over the trace (get; put on a miss)."""
    now = [0.0]
    store: Store[int, bool] = make_store(policy, capacity, clock=lambda: now[0], seed=SEED)
    get = store.get
    put = store.put
    hits = 0
    started = time.process_time()
    if policy == "ttl":
        # Every entry expires `ttl` requests after its write, later than the trace
        # ends: soonest expiry = oldest write, so the TTL policy is FIFO here.
        for index, key in enumerate(trace):
            now[0] = index
            if get(key) is None:
                put(key, True, index + ttl)
            else:
                hits += 1
    else:
        for key in trace:
            if get(key) is None:
                put(key, True)
            else:
                hits += 1
    elapsed = time.process_time() - started
    if len(store) > capacity:
        raise AssertionError(f"{policy} holds {len(store)} entries, capacity {capacity}")
    return hits, elapsed


@dataclass
class Row:
    trace: Trace
    capacity: int
    ratios: dict[str, float]  # policy, "opt", "oracle" -> hit ratio
    seconds: dict[str, float]


def measure(trace: Trace, capacity: int) -> Row:
    n = len(trace.requests)
    ratios: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for policy in POLICIES:
        hits, spent = replay(policy, capacity, trace.requests, ttl=10.0 * n)
        ratios[policy] = hits / n
        seconds[policy] = spent
    started = time.process_time()
    nexts = next_uses(trace.requests)
    ratios["opt"] = belady_hits(trace.requests, capacity, nexts) / n
    seconds["opt"] = time.process_time() - started
    ratios["opt_demand"] = belady_hits(trace.requests, capacity, nexts, bypass=False) / n
    ratios["oracle"] = oracle_hits(trace, capacity) / n
    for policy in POLICIES:
        if ratios[policy] > ratios["opt"]:
            raise AssertionError(f"{policy} beat OPT on {trace.name} at {capacity}: a bug")
    return Row(trace, capacity, ratios, seconds)


# --- timing of single operations ------------------------------------------------------


def operation_costs(policy: Policy, capacity: int = 10_000, ops: int = 200_000) -> list[float]:
    """CPU-µs per get hit, get miss + put (store full), and put replacing a resident
    key, with string keys like the entity cache's."""
    store: Store[str, bytes] = make_store(policy, capacity, seed=SEED)
    prefix = "mf:catalog:3f2a9c1e:Product:i:"
    for i in range(capacity):
        store.put(f"{prefix}{i}", b"v")
    resident = [key for key in (f"{prefix}{i}" for i in range(capacity)) if key in store]
    hot = resident[: min(len(resident), 5_000)]
    fresh = [f"{prefix}new-{i}" for i in range(ops)]
    costs: list[float] = []
    started = time.process_time()
    for _ in range(ops // len(hot)):
        for key in hot:
            store.get(key)
    costs.append((time.process_time() - started) / (ops // len(hot) * len(hot)) * 1e6)
    started = time.process_time()
    for key in fresh:
        if store.get(key) is None:
            store.put(key, b"v")
    costs.append((time.process_time() - started) / ops * 1e6)
    resident = [key for key in itertools.chain(hot, fresh) if key in store][:5_000]
    started = time.process_time()
    for _ in range(ops // len(resident)):
        for key in resident:
            store.put(key, b"w")
    costs.append((time.process_time() - started) / (ops // len(resident) * len(resident)) * 1e6)
    return costs


# --- report ---------------------------------------------------------------------------


def machine() -> str:
    """CPU model and hypervisor as lscpu names them, cores as nproc counts them."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        lscpu = ""
    fields = {
        name.strip(): value.strip()
        for name, _, value in (line.partition(":") for line in lscpu.splitlines())
    }
    model = fields.get("Model name") or platform.processor() or "unknown CPU"
    cores = len(os.sched_getaffinity(0))
    vm = f", a VM ({fields['Hypervisor vendor']})" if "Hypervisor vendor" in fields else ""
    return f"{model}, {cores} cores (nproc){vm}, {platform.system()} {platform.release()}"


def percent(ratio: float) -> str:
    return f"{100 * ratio:.2f}%"


def render(rows: list[Row], costs: dict[Policy, list[float]], command: str, total: float) -> str:
    lines = [
        "## Eviction policies: hit ratio against Belady's optimum",
        "",
        f"`{command}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, microforge "
        f"{source_state()}. Machine: {machine()}. Python {platform.python_version()}.",
        f"Seed {SEED}; {len(rows[0].trace.requests):,} requests per trace; "
        f"{total:.0f} s of CPU in all; load average at the end "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} (this run counts for 1).",
        "",
        "| trace | cache size | LRU | LFU | TTL (FIFO) | W-TinyLFU | OPT | W-TinyLFU/OPT "
        "| static oracle | W-TinyLFU/oracle |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        r = row.ratios
        share = row.capacity / row.trace.distinct
        lines.append(
            f"| {row.trace.name} | {row.capacity:,} ({100 * share:.2g}% of "
            f"{row.trace.distinct:,} keys) | "
            + " | ".join(percent(r[policy]) for policy in POLICIES)
            + f" | {percent(r['opt'])} | {r['tinylfu'] / r['opt']:.3f} "
            f"| {percent(r['oracle'])} | {r['tinylfu'] / r['oracle']:.3f} |"
        )
    zipf_rows = [row for row in rows if row.trace.name in ("zipf 0.8", "zipf 1.0")]
    near = [row for row in zipf_rows if row.ratios["tinylfu"] >= GOAL_SHARE * row.ratios["opt"]]
    scan_rows = [row for row in rows if row.trace.name.startswith("scan")]
    ahead = [row for row in scan_rows if row.ratios["tinylfu"] > row.ratios["lru"]]
    lines += [
        "",
        f"Goal W-TinyLFU >= {GOAL_SHARE} x OPT on the Zipf traces: met on {len(near)} of "
        f"{len(zipf_rows)} rows. Goal W-TinyLFU ahead of LRU on the scan trace: met on "
        f"{len(ahead)} of {len(scan_rows)} rows.",
        "",
        "OPT above lets a miss bypass the cache; the classic MIN, where every missed key "
        "enters and the resident key needed furthest ahead leaves, for comparison:",
        "",
        "| trace | cache size | OPT (bypass) | MIN (no bypass) | W-TinyLFU/MIN |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        r = row.ratios
        lines.append(
            f"| {row.trace.name} | {row.capacity:,} | {percent(r['opt'])} "
            f"| {percent(r['opt_demand'])} | {r['tinylfu'] / r['opt_demand']:.3f} |"
        )
    lines += [
        "",
        "Replay cost, CPU-µs per request (get, plus put on a miss), averaged over every row:",
        "",
        "| LRU | LFU | TTL | W-TinyLFU | OPT |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    requests = sum(len(row.trace.requests) for row in rows)
    lines.append(
        "| "
        + " | ".join(
            f"{1e6 * sum(row.seconds[name] for row in rows) / requests:.2f}"
            for name in (*POLICIES, "opt")
        )
        + " |"
    )
    lines += [
        "",
        "Single operations, CPU-µs, 10,000-entry store, string keys like the entity cache's:",
        "",
        "| policy | get (hit) | get miss + put (full store) | put (replace) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for policy, (hit, miss, replace) in costs.items():
        lines.append(f"| {LABELS[policy]} | {hit:.2f} | {miss:.2f} | {replace:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/cache_policies.py", description=__doc__)
    parser.add_argument(
        "--requests", type=int, default=1_000_000, help="requests per trace (1000000)"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown file")
    args = parser.parse_args(argv)
    command = os.environ.get("BENCH_COMMAND") or " ".join(
        ["uv run python bench/cache_policies.py", *(argv if argv is not None else sys.argv[1:])]
    )
    started = time.process_time()
    log("checking OPT against an exhaustive search")
    check_belady()
    rng = random.Random(SEED)
    traces = [
        zipf_trace(args.requests, ZIPF_KEYS, 0.8, rng),
        zipf_trace(args.requests, ZIPF_KEYS, 1.0, rng),
        scan_trace(args.requests, rng),
        shifting_trace(args.requests, ZIPF_KEYS, 1.0, rng),
    ]
    rows = []
    for trace in traces:
        for capacity in SIZES:
            log(f"{trace.name}, {capacity:,} entries")
            rows.append(measure(trace, capacity))
    log("timing single operations")
    costs = {policy: operation_costs(policy) for policy in POLICIES}
    report = render(rows, costs, command, time.process_time() - started)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report + "\n")
    print(report)
    log(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
