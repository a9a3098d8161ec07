"""The in-process stores: each policy against a reference model, expiry on a fake clock,
the counters, and W-TinyLFU's scan resistance and frequency sketch."""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microforge.runtime.cache.policies import (
    POLICIES,
    LFUStore,
    Policy,
    Store,
    TinyLFUStore,
    TTLStore,
    make_store,
)
from microforge.runtime.cache.sketch import MAX_COUNT, FrequencySketch

KEYS = range(10)
PROPERTY = settings(max_examples=300, deadline=None, database=None)


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def resident(store: Store[int, Any]) -> set[int]:
    return {key for key in KEYS if key in store}


# --- every policy: the contract, against a model of what may be held ------------------

# (op, key, value, ttl): op 0 put, 1 get, 2 pop, 3 advance the clock by ttl, 4 clear.
OPS = st.lists(
    st.tuples(
        st.sampled_from([0, 0, 0, 1, 1, 1, 2, 3, 4]),
        st.sampled_from(list(KEYS)),
        st.integers(0, 1000),
        st.one_of(st.none(), st.sampled_from([0.0, 0.5, 1.0, 2.0, 5.0])),
    ),
    max_size=80,
)


def check_tinylfu_shape(store: TinyLFUStore[int, int]) -> None:
    window, probation, protected = store._window, store._probation, store._protected
    assert len(window) <= store.window_capacity
    assert len(protected) <= store.protected_capacity
    assert len(window) + len(probation) + len(protected) == len(store._where)
    for key, segment in store._where.items():
        assert key in segment
    assert not window.keys() & probation.keys()
    assert not window.keys() & protected.keys()
    assert not probation.keys() & protected.keys()


@pytest.mark.parametrize("policy", POLICIES)
@PROPERTY
@given(capacity=st.integers(1, 6), ops=OPS)
def test_store_contract(
    policy: Policy, capacity: int, ops: list[tuple[int, int, int, Any]]
) -> None:
    clock = FakeClock()
    store: Store[int, int] = make_store(policy, capacity, clock, seed=7)
    # What a put left and nothing removed since: a held key must be one of these.
    model: dict[int, tuple[int, float | None]] = {}
    inserted = popped = cleared = 0

    def live(key: int) -> bool:
        if key not in model:
            return False
        expires_at = model[key][1]
        return expires_at is None or clock.now < expires_at

    for op, key, value, ttl in ops:
        evictions = store.evictions
        if op == 0:
            full_of_live = len(resident(store)) == capacity
            if key not in store:
                inserted += 1
            expires_at = None if ttl is None else clock.now + ttl
            store.put(key, value, expires_at)
            model[key] = (value, expires_at)
            if live(key):
                assert key in store, "a put key is held"
            if store.evictions > evictions:
                # Only a new key finding the store full of live entries evicts one.
                assert store.evictions == evictions + 1
                assert full_of_live
        elif op == 1:
            got = store.get(key)
            if got is not None:
                assert live(key)
                assert got == model[key][0]
            elif live(key):
                assert key not in store  # evicted, not lost while held
        elif op == 2:
            got = store.pop(key)
            if got is not None:
                assert live(key)
                assert got == model[key][0]
                popped += 1
            assert key not in store
            model.pop(key, None)
        elif op == 3:
            clock.now += ttl or 0.0
        else:
            cleared += len(store)
            store.clear()
            model.clear()
            assert resident(store) == set()
        assert store.evictions == evictions or op == 0
        held = resident(store)
        assert all(live(k) for k in held), "expired or removed keys are absent"
        assert len(store) == len(held) <= capacity
        assert inserted == len(store) + store.evictions + store.expirations + popped + cleared
        if policy == "tinylfu":
            assert isinstance(store, TinyLFUStore)
            check_tinylfu_shape(store)
        else:
            assert store.rejections == 0


# --- exact reference models, no expiry -------------------------------------------------

# (is_put, key)
PLAIN_OPS = st.lists(st.tuples(st.booleans(), st.sampled_from(list(KEYS))), max_size=120)


@PROPERTY
@given(capacity=st.integers(1, 6), ops=PLAIN_OPS)
def test_lru_is_exactly_an_ordered_dict_lru(capacity: int, ops: list[tuple[bool, int]]) -> None:
    store: Store[int, int] = make_store("lru", capacity)
    model: OrderedDict[int, int] = OrderedDict()
    evictions = 0
    for step, (is_put, key) in enumerate(ops):
        if is_put:
            if key in model:
                model.move_to_end(key)
            elif len(model) == capacity:
                model.popitem(last=False)
                evictions += 1
            model[key] = step
            store.put(key, step)
        else:
            expected = model.get(key)
            if expected is not None:
                model.move_to_end(key)
            assert store.get(key) == expected
        assert resident(store) == set(model)
        assert store.evictions == evictions


@PROPERTY
@given(capacity=st.integers(1, 6), ops=PLAIN_OPS)
def test_lfu_evicts_least_frequent_then_least_recently_counted(
    capacity: int, ops: list[tuple[bool, int]]
) -> None:
    store: Store[int, int] = make_store("lfu", capacity)
    # key -> [value, uses since it was put in, step of its last use]
    model: dict[int, list[int]] = {}
    for step, (is_put, key) in enumerate(ops):
        if is_put:
            if key in model:
                model[key][0] = step
                model[key][1] += 1  # a write is a use
                model[key][2] = step
            else:
                if len(model) == capacity:
                    victim = min(model, key=lambda k: (model[k][1], model[k][2]))
                    assert model[victim][1] == min(entry[1] for entry in model.values())
                    del model[victim]
                model[key] = [step, 1, step]
            store.put(key, step)
        else:
            entry = model.get(key)
            if entry is not None:
                entry[1] += 1
                entry[2] = step
            assert store.get(key) == (entry[0] if entry else None)
        assert resident(store) == set(model)


@PROPERTY
@given(
    capacity=st.integers(1, 6),
    puts=st.lists(
        st.tuples(st.sampled_from(list(KEYS)), st.one_of(st.none(), st.integers(1, 20))),
        max_size=80,
    ),
)
def test_ttl_evicts_soonest_expiry_and_entries_without_one_last_oldest_first(
    capacity: int, puts: list[tuple[int, int | None]]
) -> None:
    store: Store[int, int] = make_store("ttl", capacity, FakeClock())
    model: dict[int, int | None] = {}  # key -> expires_at (nothing expires: clock at 0)
    fifo: list[int] = []  # keys without expiry, oldest write first
    for key, expires_at in puts:
        before = resident(store)
        store.get(next(iter(before), key))  # reads must not change the order
        store.put(key, 0, expires_at)
        if key in fifo:
            fifo.remove(key)
        if key not in model and len(model) == capacity:
            (victim,) = before - resident(store)
            timed = {k: when for k, when in model.items() if when is not None}
            if timed:
                assert model[victim] == min(timed.values())
            else:
                assert victim == fifo.pop(0)
            del model[victim]
        model[key] = expires_at
        if expires_at is None:
            fifo.append(key)
        assert resident(store) == set(model)


# --- expiry on a fake clock, every policy ---------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_entries_expire_at_their_time(policy: Policy) -> None:
    clock = FakeClock(100.0)
    store: Store[str, str] = make_store(policy, 10, clock)
    store.put("a", "A", expires_at=110.0)
    store.put("b", "B")
    clock.now = 109.99
    assert store.get("a") == "A"
    assert "a" in store
    clock.now = 110.0
    assert "a" not in store
    assert store.get("a") is None
    assert store.expirations == 1
    assert store.get("b") == "B"
    assert len(store) == 1
    store.put("c", "C", expires_at=111.0)
    clock.now = 200.0
    assert store.pop("c") is None
    assert (store.expirations, store.evictions) == (2, 0)
    # Replacing changes the expiry: later, earlier, or none at all.
    store.put("b", "B1", expires_at=300.0)
    store.put("b", "B2")
    clock.now = 1e9
    assert store.get("b") == "B2"


@pytest.mark.parametrize("policy", POLICIES)
def test_expired_entries_make_room_before_any_live_one_is_evicted(policy: Policy) -> None:
    clock = FakeClock()
    store: Store[str, int] = make_store(policy, 3, clock)
    store.put("old", 1, expires_at=5.0)
    store.put("x", 2)
    store.put("y", 3)
    for _ in range(3):
        assert store.get("x") == 2  # x and y are the frequently and recently used ones
        assert store.get("y") == 3
    clock.now = 6.0
    store.put("new", 4)
    assert (store.expirations, store.evictions) == (1, 0)
    assert {key for key in ("old", "x", "y", "new") if key in store} == {"x", "y", "new"}


@pytest.mark.parametrize("policy", POLICIES)
def test_rescheduled_expiries_keep_the_heap_small_and_right(policy: Policy) -> None:
    clock = FakeClock()
    store: Store[int, int] = make_store(policy, 8, clock)
    for step in range(1, 2_001):
        store.put(step % 4, step, expires_at=float(step + 10))  # 4 keys, new times
        heap = store._heap  # type: ignore[attr-defined]
        assert len(heap) <= 2 * 4 + 65
        # Every expiry is still scheduled: stale items went, live ones stayed.
        scheduled = {(when, key) for when, _, key in heap}
        assert all((when, key) in scheduled for key, when in store._expiry.items())  # type: ignore[attr-defined]
    clock.now = 2_007.5  # the last puts: key 1 at 1,997 (expired), 2, 3 and 0 after
    assert {key for key in range(4) if key in store} == {0, 2, 3}
    assert store.get(3) == 1_999
    clock.now = 2_009.0
    assert store.get(3) is None
    assert len(store) == 1


# --- counters and small cases ---------------------------------------------------------


@pytest.mark.parametrize("policy", POLICIES)
def test_counters(policy: Policy) -> None:
    store: Store[int, int] = make_store(policy, 2)
    for key in range(5):
        store.get(key)
        store.put(key, key)
    assert len(store) == 2
    assert store.evictions == 3
    assert store.expirations == 0
    (kept, *_) = [key for key in range(5) if key in store]
    assert store.pop(kept) == kept
    assert store.pop(kept) is None
    store.clear()
    assert len(store) == 0
    assert store.evictions == 3  # neither pop nor clear counts as an eviction
    assert store.capacity == 2


def test_lfu_keeps_the_frequently_used_keys() -> None:
    store: LFUStore[str, int] = LFUStore(3)
    for key, uses in (("a", 3), ("b", 2), ("c", 1)):
        store.put(key, 0)
        for _ in range(uses - 1):
            store.get(key)
    store.put("d", 0)  # c is used least
    assert resident_of(store, "abcd") == {"a", "b", "d"}
    store.get("d")
    store.get("d")
    store.put("e", 0)  # d now has 3 uses, b 2: b goes
    assert resident_of(store, "abcde") == {"a", "d", "e"}


def test_ttl_policy_evicts_the_soonest_expiry_and_keeps_entries_without_one() -> None:
    store: TTLStore[str, int] = TTLStore(3, FakeClock())
    store.put("forever", 0)
    store.put("late", 0, expires_at=30.0)
    store.put("soon", 0, expires_at=10.0)
    store.put("new", 0, expires_at=20.0)
    assert resident_of(store, ["forever", "late", "soon", "new"]) == {"forever", "late", "new"}
    store.put("new2", 0, expires_at=40.0)
    assert resident_of(store, ["forever", "late", "new", "new2"]) == {"forever", "late", "new2"}


def resident_of(store: Store[str, Any], keys: Any) -> set[str]:
    return {key for key in keys if key in store}


def test_make_store_refuses_unknown_policies_and_empty_capacity() -> None:
    with pytest.raises(ValueError, match="lru, lfu, ttl, tinylfu"):
        make_store("fifo", 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        make_store("lru", 0)


# --- W-TinyLFU ----------------------------------------------------------------------


def test_tinylfu_keeps_a_hot_set_through_a_scan_that_flushes_lru() -> None:
    hot = [f"hot:{i}" for i in range(500)]
    scan = [f"scan:{i}" for i in range(20_000)]
    stores: dict[Policy, Store[str, int]] = {
        policy: make_store(policy, 1_000, seed=1) for policy in ("lru", "tinylfu")
    }
    for store in stores.values():
        for _ in range(20):
            for key in hot:
                if store.get(key) is None:
                    store.put(key, 1)
        assert all(key in store for key in hot)
        for key in scan:  # each key read once, missing, then cached
            assert store.get(key) is None
            store.put(key, 1)
        assert len(store) == 1_000
    lru, tinylfu = stores["lru"], stores["tinylfu"]
    assert sum(key in lru for key in hot) == 0
    # The scan is twice the sketch's sample period, so the hot keys' counts are halved
    # twice on the way; the few hot keys left in probation (those that sat in the window
    # when the scan began) may lose to a scanned key then, the protected ones never do.
    assert sum(key in tinylfu for key in hot) >= 0.97 * len(hot)
    # Most scanned keys were turned away at the door of the main space (once the sketch
    # halves, older scanned keys in probation count 0 and newer ones replace them).
    assert tinylfu.rejections >= 0.9 * len(scan)
    assert lru.rejections == 0


def test_tinylfu_admits_a_candidate_only_when_used_more_than_the_victim() -> None:
    store: TinyLFUStore[str, int] = TinyLFUStore(100, seed=3)  # window of 1
    for i in range(100):
        store.put(f"old:{i}", i)  # written, never read: no frequency
    for _ in range(3):
        assert store.get("wanted") is None
    store.put("wanted", 1)
    rejections = store.rejections
    store.put("unread", 2)  # moves "wanted" from the window into main
    assert "wanted" in store
    assert store.rejections == rejections
    store.put("another", 3)  # "unread" (never read) does not beat an unread victim
    assert "unread" not in store
    assert store.rejections == rejections + 1
    assert len(store) == 100


def test_tinylfu_segments() -> None:
    store: TinyLFUStore[int, int] = TinyLFUStore(1_000, seed=5)
    assert store.window_capacity == 10
    assert store.protected_capacity == 792  # 80% of the 990 main entries
    tiny: TinyLFUStore[int, int] = TinyLFUStore(1)
    for key in range(3):
        tiny.put(key, key)
        assert tiny.get(key) == key
    assert (len(tiny), tiny.evictions) == (1, 2)


def test_seed_makes_tinylfu_reproducible() -> None:
    def run(seed: int) -> set[int]:
        store: Store[int, int] = make_store("tinylfu", 50, seed=seed)
        for key in [i % 97 * 31 % 200 for i in range(5_000)]:
            if store.get(key) is None:
                store.put(key, key)
        return {key for key in range(200) if key in store}

    assert run(11) == run(11)


# --- the frequency sketch -------------------------------------------------------------


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(st.integers(0, 300), max_size=600), st.integers(0, 2**64 - 1))
def test_sketch_never_underestimates_between_halvings(keys: list[int], seed: int) -> None:
    sketch = FrequencySketch(100, seed)  # sample of 1,000: no halving below
    for key in keys:
        sketch.increment(key)
    assert sketch.resets == 0
    for key, count in Counter(keys).items():
        assert min(count, MAX_COUNT + 1) <= sketch.frequency(key) <= MAX_COUNT + 1


def test_sketch_doorkeeper_saturation_and_aging() -> None:
    sketch = FrequencySketch(1_000, seed=9)
    assert sketch.frequency("k") == 0
    sketch.increment("k")
    assert sketch.frequency("k") == 1  # held by the doorkeeper alone
    for _ in range(100):
        sketch.increment("k")
    assert sketch.frequency("k") == MAX_COUNT + 1  # 4-bit counters stop at 15
    sketch.reset()
    assert sketch.frequency("k") == MAX_COUNT // 2  # halved, doorkeeper forgotten
    once = FrequencySketch(1_000, seed=9)
    once.increment("j")
    once.reset()
    assert once.frequency("j") == 0  # a single access lived in the doorkeeper only


def test_sketch_halves_after_its_sample_of_accesses() -> None:
    sketch = FrequencySketch(10, seed=1)
    assert sketch.sample_size == 100
    for _ in range(99):
        sketch.increment("k")
    assert sketch.resets == 0
    sketch.increment("k")
    assert sketch.resets == 1
    assert sketch.additions == 50


def test_sketch_spreads_sequential_int_keys() -> None:
    # hash(int) is the int itself: without mixing, neighbours would share counters.
    sketch = FrequencySketch(1_000, seed=0)
    for key in range(1_000):
        sketch.increment(key)
        sketch.increment(key)
    overestimated = sum(sketch.frequency(key) > 2 for key in range(1_000))
    assert overestimated < 20
    assert sum(sketch.frequency(key) for key in range(10_000, 11_000)) < 50
