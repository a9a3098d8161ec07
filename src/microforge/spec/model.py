"""The spec as users write it: services (bounded contexts) made of entities made of fields.

These models are the user-facing contract; the JSON Schema in schema/ is generated from them.
Cross-object rules (relations resolve, names do not collide, ...) live in validate.py.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, WrapValidator, model_validator
from pydantic_core import PydanticCustomError

from .errors import suggest

Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


RoleList = list[Identifier]
_RULE_WORDS = ("public", "authenticated")
_ROLE_LIST: TypeAdapter[list[str]] = TypeAdapter(RoleList)


def _action_rule(value: Any, handler: Any) -> Any:
    # Validated here rather than by the plain union, whose errors would name each union
    # member (`read.literal[...]`, `read.list[...]`) instead of the path the user wrote.
    if isinstance(value, list):
        return _ROLE_LIST.validate_python(value)  # errors keep their `[index]`
    if isinstance(value, str) and value in _RULE_WORDS:
        return value
    hint = suggest(value, _RULE_WORDS) if isinstance(value, str) else ""
    raise PydanticCustomError(
        "action_rule",
        "expected `public`, `authenticated` or a list of roles{hint}",
        {"hint": hint},
    )


ActionRule = Annotated[Literal["public", "authenticated"] | RoleList, WrapValidator(_action_rule)]
_ACTION = (
    "Who may {}: `public` (anyone, no token), `authenticated` (any valid token) or a list of "
    "roles. Default: the auth section's admin_roles."
)


class FieldAccess(_Strict):
    """Roles that may see or set one field; omitted means whoever the entity rules allow."""

    read: RoleList | None = Field(
        None, description="Roles that see the field in responses; others get it left out."
    )
    write: RoleList | None = Field(
        None,
        description="Roles that may set the field on create or update; others get 403 "
        "naming the field. An empty list makes it read-only through the API.",
    )


class _Column(_Strict):
    """Options every stored scalar field accepts."""

    required: bool = Field(
        True,
        description="Create requests must include it and the column is NOT NULL; "
        "false makes it optional (nullable).",
    )
    unique: bool = Field(
        False, description="No two rows may hold the same value (409 on conflict)."
    )
    default: Any = Field(
        None,
        description="Value used when a create request omits the field; "
        "must pass the field's own validation.",
    )
    indexed: bool = Field(False, description="Add a database index on this column.")
    sortable: bool = Field(True, description="Allow `sort=` on this field in list queries.")
    description: str | None = Field(None, description="Shown in the OpenAPI docs.")
    example: Any = Field(None, description="Example value for docs and generated tests.")
    access: FieldAccess | None = Field(None, description="Field-level read and write rules.")


_SEARCHABLE = "Included in the free-text `q=` list filter (case-insensitive substring match)."
_MIN = "Smallest allowed value (inclusive)."
_MAX = "Largest allowed value (inclusive)."


class StringField(_Column):
    """Short text stored as VARCHAR(max_length)."""

    type: Literal["string"]
    max_length: int = Field(
        255, ge=1, le=16383, description="Maximum number of characters (the VARCHAR length)."
    )
    min_length: int | None = Field(None, ge=0, description="Minimum number of characters.")
    pattern: str | None = Field(
        None,
        description="Regular expression the value must contain a match of (anchor it with "
        "^...$ for the whole value); no look-around or backreferences.",
    )
    searchable: bool = Field(False, description=_SEARCHABLE)


class TextField(_Column):
    """Long text stored as TEXT; cannot be unique or indexed."""

    type: Literal["text"]
    max_length: int | None = Field(
        None, ge=1, description="Maximum number of characters, checked by the API."
    )
    searchable: bool = Field(False, description=_SEARCHABLE)
    sortable: bool = Field(False, description="Allow `sort=` on this field in list queries.")


class EmailField(_Column):
    """An e-mail address, syntax-checked, stored as VARCHAR(320)."""

    type: Literal["email"]
    searchable: bool = Field(False, description=_SEARCHABLE)


class UrlField(_Column):
    """An http(s) URL, stored as VARCHAR(2048)."""

    type: Literal["url"]
    searchable: bool = Field(False, description=_SEARCHABLE)


class IntegerField(_Column):
    """A whole number: integer is 32-bit, bigint 64-bit."""

    type: Literal["integer", "bigint"]
    min: int | None = Field(None, description=_MIN)
    max: int | None = Field(None, description=_MAX)


class DecimalField(_Column):
    """An exact number (money, quantities) stored as NUMERIC(precision, scale)."""

    type: Literal["decimal"]
    precision: int = Field(12, ge=1, le=38, description="Total number of digits.")
    scale: int = Field(
        2, ge=0, le=38, description="Digits after the decimal point (at most precision)."
    )
    min: Decimal | None = Field(None, description=_MIN)
    max: Decimal | None = Field(None, description=_MAX)


class FloatField(_Column):
    """A binary floating-point number; not for money."""

    type: Literal["float"]
    min: float | None = Field(None, description=_MIN)
    max: float | None = Field(None, description=_MAX)


class BooleanField(_Column):
    """true or false."""

    type: Literal["boolean"]


class DateField(_Column):
    """A calendar date, YYYY-MM-DD."""

    type: Literal["date"]


class DateTimeField(_Column):
    """A point in time, stored in UTC."""

    type: Literal["datetime"]


class UuidField(_Column):
    """A UUID value (not a relation)."""

    type: Literal["uuid"]


class EnumField(_Column):
    """One value out of a fixed list, stored as VARCHAR."""

    type: Literal["enum"]
    values: list[str] = Field(
        default_factory=list,
        description="Allowed values: at least one, distinct, 1 to 64 characters each.",
    )


class EnumListField(_Column):
    """Any number of values out of a fixed list, stored as a JSON array; not indexable."""

    type: Literal["enum_list"]
    values: list[str] = Field(
        default_factory=list,
        description="Allowed values: at least one, distinct, 1 to 64 characters each.",
    )
    sortable: bool = Field(False, description="Cannot be enabled: lists do not sort.")


class JsonField(_Column):
    """Any JSON value (object, array, string, number, ...), stored as JSON; not indexable."""

    type: Literal["json"]
    sortable: bool = Field(False, description="Cannot be enabled: JSON values do not sort.")


OnDelete = Literal["restrict", "cascade", "set_null"]


class RelationField(_Strict):
    """A foreign key (or link table) to an entity of the same service."""

    type: Literal["relation"]
    to: str = Field(description="Target entity in the same service (may be this entity).")
    cardinality: Literal["many_to_one", "one_to_one", "many_to_many"] = Field(
        "many_to_one",
        description="many_to_one: a `<field>_id` column; one_to_one: a unique `<field>_id` "
        "column; many_to_many: a link table with link sub-routes.",
    )
    on_delete: OnDelete | None = Field(
        None,
        description="What deleting the target row does to this one: restrict (409 while "
        "referenced), cascade (delete it too) or set_null (needs required: false). "
        "Default: restrict when required, set_null when optional. Not for many_to_many.",
    )
    required: bool = Field(
        True, description="`<field>_id` must be given on create (NOT NULL); to-one only."
    )
    indexed: bool = Field(True, description="Add a database index on the `<field>_id` column.")
    sortable: bool = Field(True, description="Allow `sort=<field>_id` in list queries.")
    description: str | None = Field(None, description="Shown in the OpenAPI docs.")
    access: FieldAccess | None = Field(None, description="Field-level read and write rules.")


class ReferenceField(_Strict):
    """The id of an entity in another service: no foreign key crosses databases."""

    type: Literal["reference"]
    to: str = Field(
        pattern=r"^[^.]+\.[^.]+$",
        description="`service.Entity` of another service; the field stores that entity's id.",
    )
    required: bool = Field(True, description="Create requests must include it; NOT NULL.")
    indexed: bool = Field(True, description="Add a database index on this column.")
    sortable: bool = Field(True, description="Allow `sort=` on this field in list queries.")
    description: str | None = Field(None, description="Shown in the OpenAPI docs.")
    access: FieldAccess | None = Field(None, description="Field-level read and write rules.")


FieldSpec = Annotated[
    StringField
    | TextField
    | EmailField
    | UrlField
    | IntegerField
    | DecimalField
    | FloatField
    | BooleanField
    | DateField
    | DateTimeField
    | UuidField
    | EnumField
    | EnumListField
    | JsonField
    | RelationField
    | ReferenceField,
    Field(discriminator="type"),
]

FIELD_MODELS: dict[str, type[BaseModel]] = {
    "string": StringField,
    "text": TextField,
    "email": EmailField,
    "url": UrlField,
    "integer": IntegerField,
    "bigint": IntegerField,
    "decimal": DecimalField,
    "float": FloatField,
    "boolean": BooleanField,
    "date": DateField,
    "datetime": DateTimeField,
    "uuid": UuidField,
    "enum": EnumField,
    "enum_list": EnumListField,
    "json": JsonField,
    "relation": RelationField,
    "reference": ReferenceField,
}
FIELD_TYPES = tuple(FIELD_MODELS)


class EntityAccess(_Strict):
    """Who may do what to an entity's rows; needs the top-level `auth` section."""

    create: ActionRule | None = Field(None, description=_ACTION.format("create rows"))
    read: ActionRule | None = Field(None, description=_ACTION.format("get one row by id"))
    list: ActionRule | None = Field(
        None, description=_ACTION.format("list rows") + " Default here: the read rule."
    )
    update: ActionRule | None = Field(
        None, description=_ACTION.format("update rows and change many-to-many links")
    )
    delete: ActionRule | None = Field(None, description=_ACTION.format("delete rows"))
    own: str | None = Field(
        None,
        description="Owner field: callers outside all_rows only reach rows whose field holds "
        "their user id, and rows they create get it. A reference to the user entity, a "
        "relation to it inside the identity service, or `id` on the user entity itself.",
    )
    where: dict[str, Any] = Field(
        default_factory=dict,
        description="Rows callers outside all_rows see: field: value (or a list of values), "
        "e.g. `{status: active}`.",
    )
    all_rows: RoleList = Field(
        # not `list`: inside this class that name is the list action's rule
        default_factory=lambda: [],
        description="Roles exempt from `own` and `where` (not from tenant).",
    )
    tenant: bool = Field(
        False,
        description="Rows belong to the caller's tenant (a `tenant_id` column set on create); "
        "no request reaches another tenant's rows. Needs `auth.tenancy: true`.",
    )


CacheStrategy = Literal[
    "cache-aside", "read-through", "write-through", "write-back", "write-around"
]
EvictionPolicy = Literal["lru", "lfu", "ttl", "tinylfu"]


class HttpCaching(_Strict):
    """Cache-Control of GET responses; every GET also carries an ETag and answers
    If-None-Match with 304."""

    max_age: int = Field(
        0,
        ge=0,
        le=31536000,
        description="Seconds a client may reuse a GET response without asking again; 0 makes "
        "it revalidate every time (a cheap 304 when nothing changed). Responses to callers "
        "with a token are always `private`; only anonymous reads of public entities are "
        "`public`.",
    )
    stale_while_revalidate: int = Field(
        0,
        ge=0,
        le=86400,
        description="Seconds past max_age a client may show the old response while it "
        "revalidates in the background.",
    )


class WriteBack(_Strict):
    """How the write-back strategy batches changes to the database."""

    delay: float = Field(
        1.0,
        gt=0,
        le=60,
        description="Longest time (seconds) a change waits in the cache before it is "
        "written to the database: what a crash (kill -9) can lose.",
    )
    max_pending: int = Field(
        1000,
        ge=1,
        le=1000000,
        description="Rows with unwritten changes; at this many, the next write waits for a "
        "flush (backpressure).",
    )


class EntityCache(_Strict):
    """Caching of GET one and list responses; `cache: true` takes every default."""

    strategy: CacheStrategy = Field(
        "cache-aside",
        description="cache-aside: the service checks the cache and fills it on a miss; "
        "read-through: the cache loads misses itself; write-through: writes go to the "
        "database and the cache before the response; write-back: updates go to the cache "
        "and reach the database within write_back.delay; write-around: writes go to the "
        "database only and drop the cached entry. See docs/caching.md.",
    )
    ttl: int = Field(300, ge=1, le=2592000, description="Seconds an entry stays fresh.")
    max_entries: int = Field(
        10000,
        ge=1,
        le=10000000,
        description="Entries the in-process (memory) backend holds per entity; a Redis or "
        "Memcached server bounds memory with its own settings.",
    )
    eviction: EvictionPolicy = Field(
        "tinylfu",
        description="Which entry the memory backend drops when full: lru (least recently "
        "used), lfu (least frequently used), ttl (soonest to expire) or tinylfu (W-TinyLFU: "
        "admits a new entry only if it is likely to be used more than the one it replaces).",
    )
    backend: Literal["memory", "redis", "memcached"] = Field(
        "memory",
        description="Where entries live: memory (in the service process), redis or "
        "memcached (shared by every instance; the server's address comes from "
        "<SERVICE>_REDIS_URL or <SERVICE>_MEMCACHED_URL).",
    )
    lists: bool = Field(True, description="Cache list pages too, not only GET one.")
    early_refresh: float = Field(
        1.0,
        ge=0,
        le=10,
        description="XFetch beta: a hot entry is reloaded in the background shortly before "
        "it expires, with a probability that grows as expiry nears; higher refreshes "
        "earlier; 0 turns it off.",
    )
    lock: bool = Field(
        False,
        description="Take a Redis read-write lock per entry while loading and writing, so a "
        "slow load cannot put an older row back after a write on another instance; needs "
        "backend: redis.",
    )
    write_back: WriteBack = Field(
        default_factory=lambda: WriteBack(),
        description="Batching of the write-back strategy; only with strategy: write-back.",
    )
    warm: list[str] = Field(
        default_factory=list,
        description="List queries loaded into the cache when the service starts, as query "
        "strings, e.g. `status=active&sort=-created_at`.",
    )
    http: HttpCaching = Field(
        default_factory=lambda: HttpCaching(), description="Cache-Control of GET responses."
    )


IdempotencyMode = Literal["off", "optional", "required"]
IdempotencyOutcome = Literal["success", "client_error", "server_error"]


def _stored_outcomes() -> list[IdempotencyOutcome]:
    return ["success", "client_error"]


class EntityIdempotency(_Strict):
    """Idempotency-Key handling of an entity's POST (create) and PATCH (update)."""

    create: IdempotencyMode = Field(
        "optional",
        description="POST: required (a request without Idempotency-Key is a 400), optional "
        "(a key is honoured when sent) or off (the header is ignored).",
    )
    update: IdempotencyMode = Field(
        "off",
        description="PATCH, with the same choices; PATCH is idempotent already when "
        "it sends If-Match, so a key only adds a replayed response.",
    )
    retention: int = Field(
        86400,
        ge=60,
        le=2592000,
        description="Seconds a key and its stored response are kept (stated in the "
        "Idempotency-Key-Expires header); a key reused later runs as a new request.",
    )
    lease: float = Field(
        60,
        gt=0,
        le=3600,
        description="Seconds a key stays locked by a request that is still running; after "
        "a crash the key is free again once the lease ends.",
    )
    wait: float = Field(
        5,
        ge=0,
        le=60,
        description="Seconds a repeated request waits for the first one to finish, to "
        "answer with its stored response, before answering 409 with Retry-After.",
    )
    outcomes: list[IdempotencyOutcome] = Field(
        default_factory=_stored_outcomes,
        min_length=1,
        description="Which responses are stored and replayed: success (2xx), client_error "
        "(4xx) and server_error (5xx). An error response rolls its change back; one not "
        "stored also frees its key, so a retry runs again.",
    )
    store: Literal["database", "redis"] = Field(
        "database",
        description="database: the stored response commits in the same transaction as the "
        "change (exactly once, even across crashes); redis: in Redis after the commit (a "
        "crash between the two can run a retry twice; needs <SERVICE>_REDIS_URL).",
    )

    @model_validator(mode="before")
    @classmethod
    def _expand_shorthand(cls, data: Any) -> Any:
        # `idempotency: required` sets the mode of POST.
        if isinstance(data, str):
            return {"create": data}
        return data


class Entity(_Strict):
    """One table and one REST collection."""

    plural: Identifier | None = Field(
        None,
        description="snake_case plural used for the table and the URL (kebab-case); "
        "derived from the name when omitted.",
    )
    description: str | None = Field(None, description="Shown in the OpenAPI docs.")
    id: Literal["uuid", "integer"] = Field(
        "uuid",
        description="Primary key kind: uuid (time-ordered, made by the service) or integer "
        "(auto-increment).",
    )
    soft_delete: bool = Field(
        False,
        description="DELETE sets deleted_at instead of removing the row; deleted rows are "
        "hidden from reads.",
    )
    unique_together: list[list[str]] = Field(
        default_factory=list,
        description="Groups of field names whose values together must be unique (409 on conflict).",
    )
    indexes: list[list[str]] = Field(
        default_factory=list, description="Groups of field names to index together."
    )
    fields: dict[str, FieldSpec] = Field(
        description="The fields by name; `name: string` is shorthand for `name: {type: string}`."
    )
    access: EntityAccess | None = Field(
        None, description="Access rules; without them only auth.admin_roles may use the entity."
    )
    cache: EntityCache | None = Field(
        None, description="Cache GET one and list responses (`cache: true` for the defaults)."
    )
    idempotency: EntityIdempotency = Field(
        default_factory=lambda: EntityIdempotency(),
        description="Idempotency-Key handling of POST and PATCH (`idempotency: required` "
        "requires a key on POST). See docs/reliability.md.",
    )
    if_match: Literal["optional", "required"] = Field(
        "optional",
        description="Optimistic concurrency: PATCH and DELETE with If-Match: <ETag> fail with "
        "412 when the row changed since that GET; required answers 428 to a PATCH or "
        "DELETE without If-Match.",
    )
    seed: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Rows loaded by `microforge seed`: values by field name; a to-one "
        "relation as `<field>_id` or as `<field>: {lookup}` finding one row; `id` optional.",
    )

    @model_validator(mode="before")
    @classmethod
    def _expand_shorthand(cls, data: Any) -> Any:
        # `name: string` is shorthand for `name: {type: string}`.
        if isinstance(data, dict) and isinstance(data.get("fields"), dict):
            fields = {
                k: ({"type": v} if isinstance(v, str) else v) for k, v in data["fields"].items()
            }
            data = {**data, "fields": fields}
        # `cache: true` is shorthand for every default, `cache: false` for none.
        if isinstance(data, dict) and isinstance(data.get("cache"), bool):
            data = {**data, "cache": {} if data["cache"] else None}
        # `idempotency: true` takes the defaults; `false` turns it off for POST and PATCH.
        if isinstance(data, dict) and isinstance(data.get("idempotency"), bool):
            off = {"create": "off", "update": "off"}
            data = {**data, "idempotency": {} if data["idempotency"] else off}
        return data


class Service(_Strict):
    """A bounded context: one FastAPI app with its own database."""

    description: str | None = Field(None, description="Shown in the OpenAPI docs.")
    database: str = Field(
        "sqlite",
        description="'sqlite' (a file under the data folder) or a SQLAlchemy async URL: "
        "sqlite+aiosqlite, postgresql+asyncpg, mysql+asyncmy or mariadb+asyncmy.",
    )
    entities: dict[str, Entity] = Field(description="The entities by PascalCase name.")
    client_roles: list[Identifier] = Field(
        default_factory=list,
        description="With auth: roles of this service's own API key, used when its code calls "
        "other services (`microforge up` provisions the key).",
    )


class LoginThrottle(_Strict):
    """Brute-force protection of login."""

    attempts: int = Field(
        5, ge=1, le=1000, description="Failed logins allowed per e-mail within the window."
    )
    window: int = Field(
        900, ge=1, le=86400, description="Seconds the failures are counted over (and locked)."
    )


class Auth(_Strict):
    """Identity and access control for every service of the project."""

    service: Identifier = Field(
        description="The identity service: it owns the users, signs the tokens and serves "
        "/auth (signup, login, refresh, API keys) and the JWKS."
    )
    user_entity: str = Field(
        "User",
        description="The entity of the identity service holding users; it needs a unique "
        "`email` field (the login name) and uuid ids.",
    )
    roles: RoleList = Field(description="Every role a user or API key may hold.")
    admin_roles: RoleList = Field(
        default_factory=lambda: ["admin"],
        description="Roles that manage users' roles and API keys; the default rule of every "
        "entity action.",
    )
    signup: bool = Field(True, description="Anyone may create an account at /auth/signup.")
    signup_roles: RoleList = Field(
        default_factory=list, description="Roles a new account gets at signup."
    )
    tenancy: bool = Field(
        False,
        description="Tokens carry a tenant claim (each signup starts a new tenant) and "
        "entities with `access.tenant: true` are isolated per tenant.",
    )
    access_token_ttl: int = Field(
        900, ge=60, le=86400, description="Seconds an access token (JWT) stays valid."
    )
    refresh_token_ttl: int = Field(
        1209600,
        ge=300,
        le=31536000,
        description="Seconds a refresh token stays valid; each refresh rotates it.",
    )
    login_throttle: LoginThrottle = Field(
        default_factory=lambda: LoginThrottle(),
        description="How many failed logins lock an e-mail address, and for how long.",
    )


class Spec(_Strict):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"title": "microforge spec"},
    )

    name: Identifier = Field(description="Project name (lowercase identifier).")
    description: str | None = Field(None, description="Shown in the OpenAPI docs.")
    version: str = Field("0.1.0", description="Version shown in the OpenAPI docs.")
    services: dict[str, Service] = Field(
        description="The services by lowercase name: one bounded context (and database) each."
    )
    auth: Auth | None = Field(
        None,
        description="Identity and access control; without it every endpoint is public.",
    )


def column_name(field_name: str, field: FieldSpec) -> str | None:
    """The column a field is stored in (None for many-to-many link tables)."""
    if isinstance(field, RelationField):
        return None if field.cardinality == "many_to_many" else f"{field_name}_id"
    return field_name
