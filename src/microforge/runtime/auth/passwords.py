"""Password hashing (argon2id via pwdlib) and the password policy.

Argon2 is deliberately slow and memory-hungry CPU work: it runs on a small dedicated
thread pool so the event loop keeps serving other requests, and so a burst of logins
cannot claim more than a few argon2 memory blocks (64 MiB each) at once.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError
from pwdlib.hashers.argon2 import Argon2Hasher

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # argon2 accepts more; a cap keeps one request's work bounded

_hasher = PasswordHash((Argon2Hasher(),))
_T = TypeVar("_T")

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_dummy_hash: str | None = None


def password_problem(password: str) -> str | None:
    """Why ``password`` is not acceptable as a new password, or None when it is."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"must be at least {MIN_PASSWORD_LENGTH} characters long"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"must be at most {MAX_PASSWORD_LENGTH} characters long"
    if not password.strip():
        return "may not consist of whitespace only"
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode (it contains a lone surrogate)"
    return None


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            workers = max(2, min(8, os.cpu_count() or 2))
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        return _pool


async def _off_loop(work: Callable[[], _T]) -> _T:
    return await asyncio.get_running_loop().run_in_executor(_executor(), work)


async def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (policy is checked by the caller)."""
    return await _off_loop(lambda: _hasher.hash(password))


async def verify_password(password: str, stored_hash: str) -> tuple[bool, str | None]:
    """Whether ``password`` matches ``stored_hash``, and a new hash when it should be
    replaced (its parameters are older than the current ones); (False, None) otherwise.

    A hash no hasher recognises (corrupt row) is a mismatch, not a server error.
    """

    def check() -> tuple[bool, str | None]:
        try:
            return _hasher.verify_and_update(password, stored_hash)
        except (UnknownHashError, UnicodeEncodeError):
            return False, None

    return await _off_loop(check)


async def verify_dummy(password: str) -> None:
    """Spend the time of a real verification, for a login name that does not exist.

    Without it, "unknown user" would answer in microseconds and "wrong password" after
    an argon2 run: the difference would tell which e-mail addresses have accounts.
    """
    global _dummy_hash
    if _dummy_hash is None:
        # Made once, from a random password nobody knows; a race only makes two.
        _dummy_hash = await hash_password(secrets.token_urlsafe(24))
    await verify_password(password, _dummy_hash)
