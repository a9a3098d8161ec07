"""Approximate access counts for W-TinyLFU's admission decision.

A count-min sketch of 4-bit counters (two to a byte) behind a doorkeeper Bloom
filter, as in the TinyLFU paper (Einziger, Friedman, Manes). Admission only asks which
of two keys was used more *recently and often*, so small saturating counters suffice, and
they are halved every ``sample_size`` accesses ("aging") so that yesterday's popular keys
lose their claim. The doorkeeper absorbs a key's first access in a sample period: the
many keys seen only once never reach the counters, which stay for keys that come back.

Sizes follow Caffeine's budget: 16 counters per cached entry (4 rows, each 4x the
capacity rounded up to a power of two) and a sample period of 10x the capacity. Memory:
8 bytes of counters and 10 to 20 bytes of doorkeeper per cached entry.
"""

from __future__ import annotations

from collections.abc import Hashable

_M64 = (1 << 64) - 1
_M32 = (1 << 32) - 1
# Halving every 4-bit counter of a byte at once: each nibble shifts right, the bit that
# would cross into the lower nibble is masked off.
_HALVE = bytes((b >> 1) & 0x77 for b in range(256))
MAX_COUNT = 15
SAMPLE_FACTOR = 10  # accesses per cached entry between two halvings
COUNTERS_PER_ROW_FACTOR = 4  # 4 rows x 4 = 16 counters per cached entry
DOOR_BITS_FACTOR = 8  # doorkeeper bits per access of a sample period


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


class FrequencySketch:
    """Estimated access frequency of keys (0..16: counters up to 15, plus the doorkeeper)."""

    __slots__ = (
        "_door",
        "_door_mask",
        "_mask",
        "_seed",
        "_table",
        "_width",
        "additions",
        "resets",
        "sample_size",
    )

    def __init__(self, capacity: int, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        width = COUNTERS_PER_ROW_FACTOR * _pow2_at_least(capacity)
        self._width = width
        self._mask = width - 1
        self._table = bytearray(2 * width)  # 4 rows x width nibbles, two a byte
        self.sample_size = SAMPLE_FACTOR * capacity
        door_bits = DOOR_BITS_FACTOR * _pow2_at_least(self.sample_size)
        self._door = bytearray(door_bits >> 3)
        self._door_mask = door_bits - 1
        self._seed = seed & _M64
        self.additions = 0  # accesses recorded since the last halving
        self.resets = 0

    # How a key finds its counters: hash() of an int is the int itself, so the hash is
    # mixed (two multiply-xorshift rounds) for neighbouring keys to land on unrelated
    # counters, and seeded so that nobody can pick keys that collide on purpose. Its
    # halves x and odd y give seven probes x + i*y (double hashing, Kirsch and
    # Mitzenmacher): i = 0..2 are doorkeeper bits, i = 3..6 one counter in each row.
    # increment() and frequency() inline all of it: they run on every cache read, and
    # every Python call or operation shows in their cost.

    def increment(self, key: Hashable) -> None:
        """Record one access of ``key``."""
        z = ((hash(key) ^ self._seed) * 0x9E3779B97F4A7C15) & _M64
        z = ((z ^ (z >> 31)) * 0xBF58476D1CE4E5B9) & _M64
        x = z >> 32
        y = (z & _M32) | 1
        self.additions += 1
        if self.additions >= self.sample_size:
            self.reset()
        door = self._door
        dm = self._door_mask
        p0 = x & dm
        p1 = (x + y) & dm
        p2 = (x + 2 * y) & dm
        b0 = 1 << (p0 & 7)
        b1 = 1 << (p1 & 7)
        b2 = 1 << (p2 & 7)
        p0 >>= 3
        p1 >>= 3
        p2 >>= 3
        if not (door[p0] & b0 and door[p1] & b1 and door[p2] & b2):
            # First access this period: the doorkeeper takes it, the counters do not.
            door[p0] |= b0
            door[p1] |= b1
            door[p2] |= b2
            return
        # Row 0 in the low nibbles of the first half of the table, row 1 in its high
        # nibbles, rows 2 and 3 likewise in the second half.
        mask = self._mask
        w = self._width
        t = self._table
        i0 = (x + 3 * y) & mask
        i1 = (x + 4 * y) & mask
        i2 = w + ((x + 5 * y) & mask)
        i3 = w + ((x + 6 * y) & mask)
        v0 = t[i0] & 15
        v1 = t[i1] >> 4
        v2 = t[i2] & 15
        v3 = t[i3] >> 4
        m = min(v0, v1, v2, v3)
        if m == MAX_COUNT:
            return
        # Conservative update: only the counters at the minimum grow, which keeps the
        # over-estimates of count-min small without ever under-estimating.
        if v0 == m:
            t[i0] += 1
        if v1 == m:
            t[i1] += 16
        if v2 == m:
            t[i2] += 1
        if v3 == m:
            t[i3] += 16

    def frequency(self, key: Hashable) -> int:
        """Estimated accesses of ``key`` since the last halving plus what survived it;
        never below the true count since the halving (up to the cap of 16)."""
        z = ((hash(key) ^ self._seed) * 0x9E3779B97F4A7C15) & _M64
        z = ((z ^ (z >> 31)) * 0xBF58476D1CE4E5B9) & _M64
        x = z >> 32
        y = (z & _M32) | 1
        door = self._door
        dm = self._door_mask
        p0 = x & dm
        p1 = (x + y) & dm
        p2 = (x + 2 * y) & dm
        seen = (
            door[p0 >> 3] & (1 << (p0 & 7))
            and door[p1 >> 3] & (1 << (p1 & 7))
            and door[p2 >> 3] & (1 << (p2 & 7))
        )
        mask = self._mask
        w = self._width
        t = self._table
        # The doorkeeper holds the first access of this period, the counters the rest.
        return (1 if seen else 0) + min(
            t[(x + 3 * y) & mask] & 15,
            t[(x + 4 * y) & mask] >> 4,
            t[w + ((x + 5 * y) & mask)] & 15,
            t[w + ((x + 6 * y) & mask)] >> 4,
        )

    def reset(self) -> None:
        """Age the history: halve every counter, forget the doorkeeper's keys."""
        self._table = self._table.translate(_HALVE)
        self._door = bytearray(len(self._door))
        self.additions //= 2
        self.resets += 1
