"""In-process bounded stores: LRU, LFU, TTL and W-TinyLFU, behind one small protocol.

Written here rather than taken from cachetools: it has no W-TinyLFU, per-entry expiry
only in TLRUCache (not with LRU or LFU eviction), and its LFUCache does not evict in O(1)
(a Counter scan before 6.0; 6.0 walks past the emptied count buckets it keeps).

Every store holds at most ``capacity`` entries and honours a per-entry absolute expiry
(``expires_at`` on the store's clock): an expired entry reads as absent, and when a new
key needs room, expired entries are dropped first (counted as ``expirations``) so that
no live entry is evicted while a dead one holds its place. Expiry times sit in a heap
with lazy deletion (a heap item is valid while it matches the key's current expiry).

The stores are not thread-safe: each is used from one event loop, and no ``await`` can
interleave with an operation.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, Literal, Protocol, TypeVar

from .sketch import FrequencySketch

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)

Policy = Literal["lru", "lfu", "ttl", "tinylfu"]
POLICIES: tuple[Policy, ...] = ("lru", "lfu", "ttl", "tinylfu")
Clock = Callable[[], float]

_MISSING: Any = object()


class Store(Protocol[K_contra, V]):
    """A bounded key-value store with an eviction policy."""

    capacity: int
    evictions: int  # entries removed to make room (not expiry, not pop)
    rejections: int  # W-TinyLFU: candidates refused admission (0 for the others)
    expirations: int  # entries found expired and dropped

    def get(self, key: K_contra) -> V | None:
        """The value, recording the access; None when absent or expired."""
        ...

    def put(self, key: K_contra, value: V, expires_at: float | None = None) -> None:
        """Insert or replace; ``expires_at`` is absolute on the store's clock."""
        ...

    def pop(self, key: K_contra) -> V | None:
        """Remove without counting an eviction; the value if it was live."""
        ...

    def clear(self) -> None: ...

    def __len__(self) -> int: ...

    def __contains__(self, key: K_contra) -> bool:
        """Whether a live entry is held; records no access."""
        ...


class _Expiring(Generic[K, V]):
    """Counters, the clock and per-entry expiry, shared by every policy.

    Subclasses keep their values in their own structures and implement ``_drop`` (remove
    a key from them, whatever its state) and ``_value`` (the held value or _MISSING).
    """

    def __init__(self, capacity: int, clock: Clock) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self.evictions = 0
        self.rejections = 0
        self.expirations = 0
        self._clock = clock
        self._expiry: dict[K, float] = {}  # only keys that have an expiry
        self._heap: list[tuple[float, int, K]] = []  # (expires_at, tie-break, key)
        self._seq = itertools.count()

    def _drop(self, key: K) -> None:
        raise NotImplementedError

    def _value(self, key: K) -> V:
        raise NotImplementedError

    def _held(self) -> int:
        raise NotImplementedError

    def _set_expiry(self, key: K, expires_at: float | None) -> None:
        if expires_at is None:
            if self._expiry:
                self._expiry.pop(key, None)
            return
        expiry = self._expiry
        if expiry.get(key) == expires_at:
            return  # its heap item is still valid
        expiry[key] = expires_at
        heapq.heappush(self._heap, (expires_at, next(self._seq), key))
        if len(self._heap) > 2 * len(expiry) + 64:
            # Stale items (replaced, evicted, popped keys) outnumber live ones: rebuild,
            # one item per key. Amortised O(1): len(expiry) + 64 pushes at least happen
            # between two rebuilds.
            self._heap = [(when, next(self._seq), k) for k, when in expiry.items()]
            heapq.heapify(self._heap)

    def _is_expired(self, key: K) -> bool:
        when = self._expiry.get(key)
        return when is not None and when <= self._clock()

    def _expired(self, key: K) -> bool:
        """Whether a held entry has expired; if so it is dropped and counted."""
        if not self._is_expired(key):
            return False
        self._drop(key)
        self.expirations += 1
        return True

    def _reap(self) -> int:
        """Drop every expired entry; how many there were."""
        heap = self._heap
        if not heap:
            return 0
        now = self._clock()
        expiry = self._expiry
        dropped = 0
        while heap and heap[0][0] <= now:
            when, _, key = heapq.heappop(heap)
            if expiry.get(key) == when:
                self._drop(key)
                dropped += 1
        self.expirations += dropped
        return dropped

    def pop(self, key: K) -> V | None:
        value = self._value(key)
        if value is _MISSING:
            return None
        expired = self._is_expired(key)
        self._drop(key)
        if expired:
            self.expirations += 1
            return None
        return value

    def __contains__(self, key: K) -> bool:
        return self._value(key) is not _MISSING and not self._is_expired(key)

    def __len__(self) -> int:
        if self._expiry:
            self._reap()
        return self._held()

    def _clear_expiry(self) -> None:
        self._expiry.clear()
        self._heap.clear()


class LRUStore(_Expiring[K, V]):
    """Least recently used: an OrderedDict in access order (its ends are O(1))."""

    def __init__(self, capacity: int, clock: Clock = time.monotonic) -> None:
        super().__init__(capacity, clock)
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._data.get(key, _MISSING)
        if value is _MISSING:
            return None
        if self._expiry and self._expired(key):
            return None
        self._data.move_to_end(key)
        return value  # type: ignore[no-any-return]

    def put(self, key: K, value: V, expires_at: float | None = None) -> None:
        data = self._data
        if key in data:
            if not self._is_expired(key):
                data[key] = value
                data.move_to_end(key)
                self._set_expiry(key, expires_at)
                return
            self._drop(key)
            self.expirations += 1
        if len(data) >= self.capacity and not (self._expiry and self._reap()):
            victim, _ = data.popitem(last=False)
            if self._expiry:
                self._expiry.pop(victim, None)
            self.evictions += 1
        data[key] = value
        self._set_expiry(key, expires_at)

    def clear(self) -> None:
        self._data.clear()
        self._clear_expiry()

    def _drop(self, key: K) -> None:
        del self._data[key]
        self._expiry.pop(key, None)

    def _value(self, key: K) -> V:
        return self._data.get(key, _MISSING)  # type: ignore[no-any-return]

    def _held(self) -> int:
        return len(self._data)


class _Bucket(Generic[K]):
    """The keys with one access count, least recently counted first; a node of the
    doubly linked list of counts, in increasing order, that makes LFU O(1)."""

    __slots__ = ("count", "keys", "next", "prev")

    def __init__(self, count: int) -> None:
        self.count = count
        self.keys: OrderedDict[K, None] = OrderedDict()
        self.prev: _Bucket[K] | None = None
        self.next: _Bucket[K] | None = None


class LFUStore(_Expiring[K, V]):
    """Least frequently used, ties to the least recently counted (O(1) LFU: Shah,
    Mitra, Matani 2010). Counts are kept for resident keys only and never decay, so
    keys that were hot long ago stay; that is LFU's known weakness, and W-TinyLFU's
    reason to age its counts."""

    def __init__(self, capacity: int, clock: Clock = time.monotonic) -> None:
        super().__init__(capacity, clock)
        self._values: dict[K, V] = {}
        self._bucket: dict[K, _Bucket[K]] = {}
        self._head: _Bucket[K] = _Bucket(0)  # sentinel; head.next has the lowest count

    def _count(self, key: K, bucket: _Bucket[K]) -> None:
        """Move ``key`` from ``bucket`` to the one of the next count."""
        nxt = bucket.next
        count = bucket.count + 1
        if len(bucket.keys) == 1 and (nxt is None or nxt.count != count):
            bucket.count = count  # alone in its bucket: renumber it in place
            return
        if nxt is None or nxt.count != count:
            nxt = _Bucket(count)
            nxt.prev = bucket
            nxt.next = bucket.next
            if bucket.next is not None:
                bucket.next.prev = nxt
            bucket.next = nxt
        del bucket.keys[key]
        nxt.keys[key] = None
        self._bucket[key] = nxt
        if not bucket.keys:
            self._unlink(bucket)

    @staticmethod
    def _unlink(bucket: _Bucket[K]) -> None:
        prev = bucket.prev
        assert prev is not None  # every real bucket follows the sentinel
        prev.next = bucket.next
        if bucket.next is not None:
            bucket.next.prev = prev

    def get(self, key: K) -> V | None:
        value = self._values.get(key, _MISSING)
        if value is _MISSING:
            return None
        if self._expiry and self._expired(key):
            return None
        self._count(key, self._bucket[key])
        return value  # type: ignore[no-any-return]

    def put(self, key: K, value: V, expires_at: float | None = None) -> None:
        values = self._values
        if key in values:
            if not self._is_expired(key):
                values[key] = value
                self._count(key, self._bucket[key])  # a write is a use
                self._set_expiry(key, expires_at)
                return
            self._drop(key)
            self.expirations += 1
        if len(values) >= self.capacity and not (self._expiry and self._reap()):
            lowest = self._head.next
            assert lowest is not None  # the store is full, so some bucket holds keys
            victim, _ = lowest.keys.popitem(last=False)
            if not lowest.keys:
                self._unlink(lowest)
            del values[victim]
            del self._bucket[victim]
            if self._expiry:
                self._expiry.pop(victim, None)
            self.evictions += 1
        values[key] = value
        head = self._head
        first = head.next
        if first is None or first.count != 1:
            first = _Bucket(1)
            first.prev = head
            first.next = head.next
            if head.next is not None:
                head.next.prev = first
            head.next = first
        first.keys[key] = None
        self._bucket[key] = first
        self._set_expiry(key, expires_at)

    def clear(self) -> None:
        self._values.clear()
        self._bucket.clear()
        self._head.next = None
        self._clear_expiry()

    def _drop(self, key: K) -> None:
        del self._values[key]
        bucket = self._bucket.pop(key)
        del bucket.keys[key]
        if not bucket.keys:
            self._unlink(bucket)
        self._expiry.pop(key, None)

    def _value(self, key: K) -> V:
        return self._values.get(key, _MISSING)  # type: ignore[no-any-return]

    def _held(self) -> int:
        return len(self._values)


class TTLStore(_Expiring[K, V]):
    """Evicts the entry that expires soonest (the expiry heap is the eviction order);
    entries without an expiry go last, oldest write first. Reads do not reorder."""

    def __init__(self, capacity: int, clock: Clock = time.monotonic) -> None:
        super().__init__(capacity, clock)
        self._values: dict[K, V] = {}
        self._forever: OrderedDict[K, None] = OrderedDict()  # no expiry, oldest first

    def get(self, key: K) -> V | None:
        value = self._values.get(key, _MISSING)
        if value is _MISSING:
            return None
        if self._expiry and self._expired(key):
            return None
        return value  # type: ignore[no-any-return]

    def put(self, key: K, value: V, expires_at: float | None = None) -> None:
        values = self._values
        if key in values and self._is_expired(key):
            self._drop(key)
            self.expirations += 1
        if key not in values and len(values) >= self.capacity and not self._reap():
            self._evict()
        values[key] = value
        if expires_at is None:
            self._forever[key] = None
            self._forever.move_to_end(key)
        elif self._forever:
            self._forever.pop(key, None)
        self._set_expiry(key, expires_at)

    def _evict(self) -> None:
        heap = self._heap
        expiry = self._expiry
        while heap:
            when, _, key = heapq.heappop(heap)
            if expiry.get(key) == when:
                self._drop(key)
                self.evictions += 1
                return
        victim, _ = self._forever.popitem(last=False)
        del self._values[victim]
        self.evictions += 1

    def clear(self) -> None:
        self._values.clear()
        self._forever.clear()
        self._clear_expiry()

    def _drop(self, key: K) -> None:
        del self._values[key]
        if self._expiry.pop(key, None) is None:
            del self._forever[key]

    def _value(self, key: K) -> V:
        return self._values.get(key, _MISSING)  # type: ignore[no-any-return]

    def _held(self) -> int:
        return len(self._values)


# W-TinyLFU's shape, from the paper (Einziger, Friedman, Manes, "TinyLFU: A Highly
# Efficient Cache Admission Policy") and Caffeine's defaults.
WINDOW_PERCENT = 1  # admission window, an LRU in front of the main space (rounded up)
# The window stays at 1%: Caffeine's run-time resizing (hill climbing on the hit rate) was
# tried and lowered the hit ratio on 11 of the 12 benchmark rows (docs/benchmarks.md).
PROTECTED_PERCENT = 80  # of the main space; the rest is probation
# A warm candidate (this count or more) that loses is still admitted 1 time in 128, as
# Caffeine does: otherwise keys forged to collide with a hot victim's counters could
# keep every newcomer out.
WARM_CANDIDATE = 6


class TinyLFUStore(_Expiring[K, V]):
    """W-TinyLFU: new keys enter a small LRU window; the window's victim competes with
    the main space's victim (segmented LRU: probation, then protected after a second
    use), and the one the frequency sketch rates higher stays. A one-time scan thus
    flows through the window without displacing the frequently used keys.

    A refused candidate also leaves to make room: it counts in ``evictions`` as well as
    in ``rejections``, so ``evictions`` compares across policies."""

    def __init__(
        self, capacity: int, clock: Clock = time.monotonic, *, seed: int | None = None
    ) -> None:
        super().__init__(capacity, clock)
        if seed is None:
            seed = random.getrandbits(64)
        self.window_capacity = -(-capacity * WINDOW_PERCENT // 100)  # at least 1
        main = capacity - self.window_capacity
        self.protected_capacity = main * PROTECTED_PERCENT // 100
        self._window: OrderedDict[K, V] = OrderedDict()
        self._probation: OrderedDict[K, V] = OrderedDict()
        self._protected: OrderedDict[K, V] = OrderedDict()
        self._where: dict[K, OrderedDict[K, V]] = {}
        self.sketch = FrequencySketch(capacity, seed)
        self._random = random.Random(seed)

    def get(self, key: K) -> V | None:
        self.sketch.increment(key)  # misses count too: they are what admission weighs
        segment = self._where.get(key)
        if segment is None:
            return None
        if self._expiry and self._expired(key):
            return None
        value = segment[key]
        self._touch(key, segment)
        return value

    def _touch(self, key: K, segment: OrderedDict[K, V]) -> None:
        if segment is self._probation:
            # Second use in main: promote; protected's overflow goes back to probation.
            protected = self._protected
            protected[key] = segment.pop(key)
            self._where[key] = protected
            if len(protected) > self.protected_capacity:
                demoted, value = protected.popitem(last=False)
                segment[demoted] = value
                self._where[demoted] = segment
        else:
            segment.move_to_end(key)

    def put(self, key: K, value: V, expires_at: float | None = None) -> None:
        # No sketch increment: a put follows the get that missed and was counted. A
        # value written but never read earns no frequency.
        where = self._where
        segment = where.get(key)
        if segment is not None:
            if not self._is_expired(key):
                segment[key] = value
                self._touch(key, segment)
                self._set_expiry(key, expires_at)
                return
            self._drop(key)
            self.expirations += 1
        if len(where) >= self.capacity and self._expiry:
            self._reap()
        window = self._window
        window[key] = value
        where[key] = window
        self._set_expiry(key, expires_at)
        if len(window) > self.window_capacity:
            candidate, cvalue = window.popitem(last=False)
            probation = self._probation
            probation[candidate] = cvalue
            where[candidate] = probation
            if len(where) > self.capacity:
                self._admit_or_reject(candidate)
        elif len(where) > self.capacity:
            # The window is below its share (pops, expiries) and main is over its own.
            victim = next(iter(self._probation or self._protected or window))
            self._drop(victim)
            self.evictions += 1

    def _admit_or_reject(self, candidate: K) -> None:
        """The store is one over capacity with ``candidate`` newest in probation: evict
        it or main's victim, whichever the sketch rates lower."""
        probation = self._probation
        victim = next(iter(probation))
        if victim == candidate:
            if not self._protected:
                self._drop(candidate)  # no main space to compete for (tiny capacity)
                self.evictions += 1
                return
            victim = next(iter(self._protected))
        candidate_count = self.sketch.frequency(candidate)
        victim_count = self.sketch.frequency(victim)
        if candidate_count > victim_count or (
            candidate_count >= WARM_CANDIDATE and self._random.getrandbits(7) == 0
        ):
            self._drop(victim)
        else:
            self._drop(candidate)
            self.rejections += 1
        self.evictions += 1

    def clear(self) -> None:
        # The sketch stays: how often keys are asked for outlives the values.
        self._window.clear()
        self._probation.clear()
        self._protected.clear()
        self._where.clear()
        self._clear_expiry()

    def _drop(self, key: K) -> None:
        del self._where.pop(key)[key]
        self._expiry.pop(key, None)

    def _value(self, key: K) -> V:
        segment = self._where.get(key)
        return _MISSING if segment is None else segment[key]

    def _held(self) -> int:
        return len(self._where)


def make_store(
    policy: Policy,
    capacity: int,
    clock: Clock = time.monotonic,
    *,
    seed: int | None = None,
) -> Store[K, V]:
    """A store of ``capacity`` entries with ``policy``. ``seed`` fixes W-TinyLFU's hash
    and tie-break randomness (for reproducible benchmarks); by default it is random."""
    if policy == "lru":
        return LRUStore(capacity, clock)
    if policy == "lfu":
        return LFUStore(capacity, clock)
    if policy == "ttl":
        return TTLStore(capacity, clock)
    if policy == "tinylfu":
        return TinyLFUStore(capacity, clock, seed=seed)
    raise ValueError(f"unknown cache policy {policy!r}: expected one of {', '.join(POLICIES)}")
