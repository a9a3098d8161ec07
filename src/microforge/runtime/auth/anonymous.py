"""`Caller` for projects without an auth section: every request is anonymous.

The generated routes take a caller either way, so one code path serves both kinds of project;
this dependency costs no header parsing and adds no security scheme to the OpenAPI document.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from .principal import ANONYMOUS, Principal


async def anonymous() -> Principal:
    return ANONYMOUS


Caller = Annotated[Principal, Depends(anonymous)]
