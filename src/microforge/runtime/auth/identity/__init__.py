"""The identity service: accounts, sessions, API keys and the JWKS.

``identity_router`` serves the endpoints; ``IdentityTables`` are the tables it works on
(``build_identity_tables`` is their canonical layout); ``create_user`` makes a first
admin from the command line.
"""

from .config import IdentityConfig
from .router import identity_router, signup_model
from .service import IdentityError, create_user
from .tables import IdentityTables, build_identity_tables

__all__ = [
    "IdentityConfig",
    "IdentityError",
    "IdentityTables",
    "build_identity_tables",
    "create_user",
    "identity_router",
    "signup_model",
]
