"""How a cached response is stored: a small fixed header, then the JSON body.

The header carries what a reader needs to judge the entry without another round trip:
the entity's epoch and list generation at fill time (counters bumped by clear and by
writes, read in the same request as the entry), the logical expiry, the time the load
took (XFetch's delta) and the body's ETag.
"""

from __future__ import annotations

import math
import random
import struct
from dataclasses import dataclass

# Format version 2 ('N'); anything else is read as a miss. Version 1 ('M') held 32 bytes
# of ETag and rows without their version: after an upgrade they are simply reloaded.
_MAGIC = 0x4E
# The ETag without its quotes, NUL-padded: "v<version>-<24 hex digits>" fits in 48.
_HEADER = struct.Struct("<Bqqdd48s")


@dataclass(frozen=True, slots=True)
class Entry:
    epoch: int
    generation: int
    expires_at: float  # wall-clock seconds: entries are shared between processes
    delta: float  # seconds the load took
    etag: str
    body: bytes

    def encode(self) -> bytes:
        tag = self.etag.strip('"').encode("ascii")
        if len(tag) > 48:
            raise ValueError(f"ETag too long to store: {self.etag}")
        return (
            _HEADER.pack(_MAGIC, self.epoch, self.generation, self.expires_at, self.delta, tag)
            + self.body
        )

    @classmethod
    def decode(cls, raw: bytes) -> Entry | None:
        if len(raw) < _HEADER.size or raw[0] != _MAGIC:
            return None
        _, epoch, generation, expires_at, delta, tag = _HEADER.unpack_from(raw)
        etag = '"' + tag.rstrip(b"\x00").decode("ascii") + '"'
        return cls(epoch, generation, expires_at, delta, etag, raw[_HEADER.size :])

    def refresh_due(self, now: float, beta: float, draw: float | None = None) -> bool:
        """XFetch (Vattani et al., 2015): refresh early with a probability that rises as
        expiry nears and with the cost of a load, so a hot key is reloaded by one reader
        before it expires instead of by every reader after."""
        if beta <= 0 or self.delta <= 0:
            return False
        sample = draw if draw is not None else random.random()
        if sample <= 0:
            return True
        return now - self.delta * beta * math.log(sample) >= self.expires_at
