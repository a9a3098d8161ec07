"""If-Match on PATCH and DELETE: optimistic concurrency (RFC 9110 section 13.1.1).

A row's ETag names its version (``"v7-<hash of the body>"``, see
:func:`microforge.runtime.jsonio.row_etag`), so the precondition is checked by the write
itself: ``UPDATE ... WHERE version IN (...)``. There is no read before the write, hence
no window in which another writer's change could slip in between check and write.

The comparison is strong: a weak tag (``W/"..."``) never matches. A tag matches when the
version it names is the row's current one; the hash part only keeps the representations
of one version apart (callers who may see different fields get different tags).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .problems import Problem

# One element of the If-Match list: OWS [W/] DQUOTE *etagc DQUOTE OWS, then "," or the end.
# etagc is %x21 / %x23-7E / obs-text: anything visible but DQUOTE (commas included, so
# the header cannot simply be split on them). An element may be empty (RFC 9110 5.6.1).
_ELEMENT = re.compile(r'[ \t]*(?:(W/)?"([^"\x00-\x20\x7f]*)")?[ \t]*(,|\Z)')
_VERSIONED = re.compile(r"v([1-9][0-9]{0,9})-")
_MAX_VERSION = 2**31 - 1  # the version column is a 32-bit integer

STALE = "urn:microforge:problem:stale"


class Stale(Problem):
    """A conditional write found the row at a version its If-Match did not name: 412."""

    def __init__(self, entity: str, id: Any, expected: Iterable[int], current: int) -> None:
        sent = sorted(expected)
        named = (
            f"version {', '.join(map(str, sent))}"
            if sent
            else "no version of it (weak or unknown tags never match)"
        )
        super().__init__(
            412,
            f"{entity} {id} changed since you read it: If-Match named {named}, and it is at "
            f"version {current} now. GET it again, re-apply your change to what it holds "
            "now, and send the new ETag in If-Match.",
            title="The row changed",
            type=STALE,
            current_version=current,
            sent_versions=sent,
        )
        self.current = current
        self.expected = frozenset(sent)


@dataclass(frozen=True, slots=True)
class IfMatch:
    """The If-Match of one request, as a route uses it."""

    sent: bool
    # The versions a write may change; None: any (no If-Match, or `*`).
    versions: frozenset[int] | None

    def absent(self, problem: Problem) -> Problem:
        """The answer when the row is missing: ``problem`` (the route's 404), or 412 when
        If-Match was sent, since no current row can match it (RFC 9110, even for `*`)."""
        if not self.sent:
            return problem
        return Problem(
            412,
            f"{problem.detail} If-Match needs a current row to compare with.",
            title="Precondition Failed",
        )


NO_CONDITION = IfMatch(sent=False, versions=None)


def if_match(header: str | None, *, required: bool = False) -> IfMatch:
    """Read an If-Match header (``request.headers.get("if-match")``).

    400 for a value that is not an If-Match; 428 when ``required`` and there is none.
    """
    if header is None:
        if required:
            raise Problem(
                428,
                "Send If-Match with the ETag of a GET of this row: changes must say which "
                "version they apply to, so that none overwrites another it has not seen.",
                title="Precondition Required",
            )
        return NO_CONDITION
    if header.strip() == "*":
        return IfMatch(sent=True, versions=None)
    return IfMatch(sent=True, versions=frozenset(_versions(header)))


def _versions(header: str) -> list[int]:
    versions: list[int] = []
    tags = 0
    position = 0
    while True:
        match = _ELEMENT.match(header, position)
        if match is None:
            raise Problem(
                400,
                'If-Match must be "*" or a comma-separated list of quoted ETags, '
                'e.g. If-Match: "v3-5d41402abc4b2a76b9719d91".',
                title="Malformed If-Match",
            )
        weak, opaque, separator = match.groups()
        if opaque is not None:
            tags += 1
            version = _VERSIONED.match(opaque)
            if weak is None and version is not None and int(version[1]) <= _MAX_VERSION:
                versions.append(int(version[1]))
        if not separator:  # the end of the header
            break
        position = match.end()
    if not tags:
        raise Problem(400, "If-Match names no ETag.", title="Malformed If-Match")
    return versions


def if_match_parameter(*, required: bool) -> dict[str, Any]:
    """The OpenAPI description of the If-Match header of a PATCH or DELETE."""
    need = "Required" if required else "Optional"
    return {
        "name": "If-Match",
        "in": "header",
        "required": required,
        "schema": {"type": "string"},
        "description": f"{need}. The ETag of a GET of the row: the change is made only if "
        "the row is still at that version (else 412). `*` matches any existing row.",
    }
