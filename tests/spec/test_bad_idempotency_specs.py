"""Bad `idempotency` sections: each problem names the file, line, path and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from microforge.spec import load_spec_text

from .test_bad_specs import Case, case, check_case

P = "services.orders.entities.Order"

HEAD = """
name: shop
services:
  orders:
    entities:
      Order:
        fields: {number: string}
"""


def idem_case(id: str, body: str, path: str, *words: str) -> Case:
    return case(id, HEAD + body, path, *words)


CASES = [
    idem_case(
        "unknown-mode",
        "        idempotency: {create: always} #<\n",
        f"{P}.idempotency.create",
        "optional",
        "required",
    ),
    idem_case(
        "unknown-shorthand",
        "        idempotency: mandatory #<\n",
        f"{P}.idempotency.create",  # the shorthand sets the POST mode
        "required",
        "got 'mandatory'",
    ),
    idem_case(
        "unknown-outcome",
        "        idempotency: {outcomes: [success, timeout]} #<\n",
        f"{P}.idempotency.outcomes[1]",
        "client_error",
    ),
    idem_case(
        "repeated-outcome",
        "        idempotency:\n          outcomes: [success, success] #<\n",
        f"{P}.idempotency.outcomes",
        "listed once",
    ),
    idem_case(
        "outcomes-without-success",
        "        idempotency:\n          outcomes: [client_error] #<\n",
        f"{P}.idempotency.outcomes",
        "must include success",
    ),
    idem_case(
        "no-outcomes",
        "        idempotency:\n          outcomes: [] #<\n",
        f"{P}.idempotency.outcomes",
        "at least 1",
    ),
    idem_case(
        "lease-longer-than-retention",
        "        idempotency:\n          retention: 600\n          lease: 600 #<\n",
        f"{P}.idempotency.lease",
        "shorter than the retention",
    ),
    idem_case(
        "retention-not-longer-than-the-default-lease",
        "        idempotency:\n          retention: 60 #<\n",
        f"{P}.idempotency.retention",
        "lease (60 s) must be shorter than the retention (60 s)",
    ),
    idem_case(
        "retention-too-short",
        "        idempotency: {retention: 5} #<\n",
        f"{P}.idempotency.retention",
        "60",
    ),
    idem_case(
        "unknown-store",
        "        idempotency: {store: memcached} #<\n",
        f"{P}.idempotency.store",
        "database",
        "redis",
    ),
    idem_case(
        "update-with-write-back",
        "        cache: {strategy: write-back}\n"
        "        idempotency:\n"
        "          update: optional #<\n",
        f"{P}.idempotency.update",
        "write-back",
        "update: off",
    ),
    idem_case(
        "unknown-if-match",
        "        if_match: always #<\n",
        f"{P}.if_match",
        "required",
    ),
]


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.id)
def test_bad_idempotency_spec(tmp_path: Path, c: Case) -> None:
    check_case(tmp_path, c)


def _idempotency(body: str) -> tuple[str, str, int, float, float, list[str], str]:
    spec = load_spec_text(HEAD + body, "spec.yaml")
    idem = spec.services["orders"].entities["Order"].idempotency
    return (
        idem.create,
        idem.update,
        idem.retention,
        idem.lease,
        idem.wait,
        idem.outcomes,
        idem.store,
    )


def test_defaults_make_post_optional_and_patch_off() -> None:
    assert _idempotency("") == (
        "optional",
        "off",
        86400,
        60,
        5,
        ["success", "client_error"],
        "database",
    )


def test_shorthands() -> None:
    assert _idempotency("        idempotency: required\n")[:2] == ("required", "off")
    assert _idempotency("        idempotency: true\n")[:2] == ("optional", "off")
    assert _idempotency("        idempotency: false\n")[:2] == ("off", "off")
