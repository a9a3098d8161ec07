"""The Idempotency-Key header and the request fingerprint.

The IETF draft "The Idempotency-Key HTTP Header Field" defines the header as a Structured
Field Item (RFC 8941) whose value is a String: `Idempotency-Key: "8e03978e-40d5-43e8"`.
`parse_idempotency_key` reads exactly that grammar: a quoted string of printable ASCII
with `\\"` and `\\\\` escapes, optionally followed by parameters, which are parsed (so a
malformed one is refused) and ignored. A bare token such as an unquoted UUID is not a
String, so it is refused, as the draft's grammar says, with a message showing the fix.

`fingerprint` identifies what a request asks for: a retry must send the same method,
path and body to get the stored answer back; the same key with another payload is a
client error (422). JSON bodies are compared by meaning (key order and whitespace do not
count), other bodies byte for byte.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any

import orjson

MAX_KEY_LENGTH = 255  # characters of the key itself; longer keys are refused

_KEY_CHARS = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]*")
_PARAM_KEY = re.compile(r"[a-z*][a-z0-9_.*-]*")
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_NUMBER = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,3})?")
_BYTES = re.compile(r":[A-Za-z0-9+/=]*:")


def new_idempotency_key() -> str:
    """A fresh Idempotency-Key header value: a random UUID as a Structured Field String."""
    return f'"{uuid.uuid4()}"'


class InvalidIdempotencyKey(ValueError):
    """The header is not a Structured Field String; the message says how to send one."""


def parse_idempotency_key(value: str) -> str:
    """The key in an Idempotency-Key header value, or `InvalidIdempotencyKey`."""
    text = value.strip(" ")
    if not text.startswith('"'):
        raise InvalidIdempotencyKey(
            'Idempotency-Key must be a quoted string, e.g. Idempotency-Key: "<a UUID>"'
        )
    key, rest = _string(text)
    if not key:
        raise InvalidIdempotencyKey("Idempotency-Key must not be empty.")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidIdempotencyKey(
            f"Idempotency-Key is {len(key)} characters long; at most {MAX_KEY_LENGTH} are allowed."
        )
    _parameters(rest)
    return key


def _string(text: str) -> tuple[str, str]:
    """A leading sf-string of `text` (which starts with a quote), and what follows it."""
    out: list[str] = []
    i = 1
    while i < len(text):
        char = text[i]
        if char == "\\":
            if i + 1 >= len(text) or text[i + 1] not in '"\\':
                raise InvalidIdempotencyKey(
                    'Idempotency-Key: inside the quotes, a backslash may only escape " or \\.'
                )
            out.append(text[i + 1])
            i += 2
        elif char == '"':
            return "".join(out), text[i + 1 :]
        elif _KEY_CHARS.fullmatch(char):
            out.append(char)
            i += 1
        else:
            raise InvalidIdempotencyKey(
                "Idempotency-Key may only contain printable ASCII characters."
            )
    raise InvalidIdempotencyKey("Idempotency-Key has no closing quote.")


def _parameters(rest: str) -> None:
    """Check `;name=value` parameters after the string (RFC 8941 section 3.1.2)."""
    while rest:
        if not rest.startswith(";"):
            raise InvalidIdempotencyKey(
                "Idempotency-Key: only parameters (;name=value) may follow the quoted key."
            )
        rest = rest[1:].lstrip(" ")
        name = _PARAM_KEY.match(rest)
        if name is None:
            raise InvalidIdempotencyKey("Idempotency-Key has a malformed parameter name.")
        rest = rest[name.end() :]
        if rest.startswith("="):
            rest = _bare_item(rest[1:])


def _bare_item(text: str) -> str:
    """Skip one bare item (string, token, number, byte sequence, boolean); the rest."""
    if text.startswith('"'):
        return _string(text)[1]
    for pattern in (_NUMBER, _BYTES, _TOKEN):
        found = pattern.match(text)
        if found is not None:
            return text[found.end() :]
    if text[:2] in ("?0", "?1"):
        return text[2:]
    raise InvalidIdempotencyKey("Idempotency-Key has a malformed parameter value.")


def fingerprint(
    method: str, path: str, body: bytes, content_type: str = "", if_match: str = ""
) -> str:
    """What a request asks for, as a hex digest: method, path, precondition and payload.

    If-Match is part of it: a PATCH refused with 412 and retried after a fresh GET (a new
    ETag) is a new operation, not a replay of the refusal.
    """
    digest = hashlib.sha256()
    digest.update(method.upper().encode())
    digest.update(b"\x00")
    digest.update(path.encode("utf-8", "surrogatepass"))
    digest.update(b"\x00")
    digest.update(if_match.encode("latin-1", "replace"))
    digest.update(b"\x00")
    digest.update(_canonical(body, content_type))
    return digest.hexdigest()


def _canonical(body: bytes, content_type: str) -> bytes:
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        try:
            parsed: Any = orjson.loads(body)
            return b"json:" + orjson.dumps(parsed, option=orjson.OPT_SORT_KEYS)
        except (orjson.JSONDecodeError, orjson.JSONEncodeError):
            # Not JSON, or nested deeper than orjson writes: compared byte for byte.
            return b"raw:" + body
    return b"raw:" + body
