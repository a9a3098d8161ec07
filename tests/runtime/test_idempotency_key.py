"""The Idempotency-Key header (RFC 8941 String) and the request fingerprint."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from microforge.runtime.idempotency.key import (
    MAX_KEY_LENGTH,
    InvalidIdempotencyKey,
    fingerprint,
    parse_idempotency_key,
)

PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=80)


def serialize(key: str) -> str:
    """How a client writes a key as an sf-string."""
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


@given(PRINTABLE)
def test_every_printable_key_round_trips(key: str) -> None:
    assert parse_idempotency_key(serialize(key)) == key


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ('"8e03978e-40d5-43e8-bc93-6894a57f9324"', "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        ('  "abc"  ', "abc"),
        ('"a\\"b\\\\c"', 'a"b\\c'),
        ('"abc";created=1700000000', "abc"),
        ('"abc";source="retry";n=1.5;ok=?1;tok=x/y;b=:AAE=:;flag', "abc"),
    ],
)
def test_valid_headers(header: str, key: str) -> None:
    assert parse_idempotency_key(header) == key


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ("8e03978e-40d5-43e8-bc93-6894a57f9324", "quoted string"),
        ('""', "must not be empty"),
        ('"abc', "no closing quote"),
        ('"a\\nb"', "backslash"),
        ('"caf\u00e9"', "printable ASCII"),
        ('"tab\there"', "printable ASCII"),
        ('"abc" "def"', "only parameters"),
        ('"abc";Upper=1', "parameter name"),
        ('"abc";n=@', "parameter value"),
        ('"' + "k" * (MAX_KEY_LENGTH + 1) + '"', "at most"),
    ],
)
def test_malformed_headers_are_refused_with_the_fix(header: str, says: str) -> None:
    with pytest.raises(InvalidIdempotencyKey, match=says):
        parse_idempotency_key(header)


@given(st.text(max_size=40))
def test_anything_either_parses_or_raises_the_one_error(header: str) -> None:
    try:
        key = parse_idempotency_key(header)
    except InvalidIdempotencyKey:
        return
    assert 1 <= len(key) <= MAX_KEY_LENGTH


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=5), JSON, max_size=6))
def test_json_bodies_match_by_meaning(document: dict[str, object]) -> None:
    compact = orjson.dumps(document)
    reordered = orjson.dumps(dict(reversed(list(document.items()))), option=orjson.OPT_INDENT_2)
    one = fingerprint("POST", "/orders", compact, "application/json")
    assert one == fingerprint("post", "/orders", reordered, "application/json; charset=utf-8")


@given(JSON, JSON)
def test_different_payloads_differ(a: object, b: object) -> None:
    same = orjson.dumps(a, option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        b, option=orjson.OPT_SORT_KEYS
    )
    prints = [fingerprint("POST", "/orders", orjson.dumps(x), "application/json") for x in (a, b)]
    assert (prints[0] == prints[1]) == same


def test_method_path_and_raw_bodies_count() -> None:
    base = fingerprint("POST", "/orders", b'{"a":1}', "application/json")
    assert fingerprint("PATCH", "/orders", b'{"a":1}', "application/json") != base
    assert fingerprint("POST", "/payments", b'{"a":1}', "application/json") != base
    assert fingerprint("POST", "/orders", b"a=1", "text/plain") != fingerprint(
        "POST", "/orders", b"a=2", "text/plain"
    )
    # Not JSON after all: compared byte for byte, not rejected.
    broken = fingerprint("POST", "/orders", b"{oops", "application/json")
    assert broken == fingerprint("POST", "/orders", b"{oops", "application/json")
    assert broken != fingerprint("POST", "/orders", b"{oops ", "application/json")


def test_json_nested_deeper_than_orjson_writes_is_compared_byte_for_byte() -> None:
    deep = b'{"a":' * 300 + b"1" + b"}" * 300
    same = fingerprint("POST", "/orders", deep, "application/json")
    assert same == fingerprint("POST", "/orders", deep, "application/json")
    assert same != fingerprint("POST", "/orders", deep.replace(b"1", b"2"), "application/json")


def test_if_match_is_part_of_the_request() -> None:
    body = b'{"a":1}'
    before = fingerprint("PATCH", "/orders/1", body, "application/json", '"v1-abc"')
    after = fingerprint("PATCH", "/orders/1", body, "application/json", '"v2-def"')
    assert before != after
