"""`Caller` for projects without an auth section: every request is anonymous.

The generated routes take a caller either way, so one code path serves both kinds of project;
this dependency costs no header parsing and adds no security scheme to the OpenAPI document.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from .principal import ANONYMOUS, Principal


async def anonymous(request: HTTPConnection) -> Principal:
    request.state.caller = ANONYMOUS  # as with auth: hooks find the caller here
    return ANONYMOUS


Caller = Annotated[Principal, Depends(anonymous)]
