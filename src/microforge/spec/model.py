"""The spec as users write it: services (bounded contexts) made of entities made of fields.

These models are the user-facing contract; the JSON Schema in schema/ is generated from them.
Cross-object rules (relations resolve, names do not collide, ...) live in validate.py.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Column(_Strict):
    """Options every stored scalar field accepts."""

    required: bool = Field(True, description="Reject create requests that omit it; NOT NULL.")
    unique: bool = Field(False, description="No two rows may hold the same value (409 on conflict).")
    default: Any = Field(None, description="Value used when a create request omits the field.")
    indexed: bool = Field(False, description="Add a database index on this column.")
    sortable: bool = Field(True, description="Allow `sort=` on this field in list queries.")
    description: str | None = Field(None, description="Shown in the OpenAPI docs.")


class StringField(_Column):
    type: Literal["string"]
    max_length: int = Field(255, ge=1, le=16383, description="VARCHAR length.")
    min_length: int | None = Field(None, ge=0)
    pattern: str | None = Field(None, description="Regular expression the value must match.")
    searchable: bool = Field(False, description="Included in the free-text `q=` list filter.")


class TextField(_Column):
    type: Literal["text"]
    max_length: int | None = Field(None, ge=1)
    searchable: bool = False
    sortable: bool = False


class EmailField(_Column):
    type: Literal["email"]
    searchable: bool = False


class UrlField(_Column):
    type: Literal["url"]
    searchable: bool = False


class IntegerField(_Column):
    type: Literal["integer", "bigint"]
    min: int | None = None
    max: int | None = None


class DecimalField(_Column):
    type: Literal["decimal"]
    precision: int = Field(12, ge=1, le=38, description="Total number of digits.")
    scale: int = Field(2, ge=0, le=38, description="Digits after the decimal point.")
    min: Decimal | None = None
    max: Decimal | None = None


class FloatField(_Column):
    type: Literal["float"]
    min: float | None = None
    max: float | None = None


class BooleanField(_Column):
    type: Literal["boolean"]


class DateField(_Column):
    type: Literal["date"]


class DateTimeField(_Column):
    type: Literal["datetime"]


class UuidField(_Column):
    type: Literal["uuid"]


class EnumField(_Column):
    type: Literal["enum"]
    values: list[str] = Field(default_factory=list, description="Allowed values (at least one).")


class EnumListField(_Column):
    type: Literal["enum_list"]
    values: list[str] = Field(default_factory=list)
    sortable: bool = False


class JsonField(_Column):
    type: Literal["json"]
    sortable: bool = False


OnDelete = Literal["restrict", "cascade", "set_null"]


class RelationField(_Strict):
    """A foreign key (or link table) to an entity of the same service."""

    type: Literal["relation"]
    to: str = Field(description="Entity name in the same service.")
    cardinality: Literal["many_to_one", "one_to_one", "many_to_many"] = "many_to_one"
    on_delete: OnDelete | None = Field(
        None, description="What deleting the target does: restrict (409), cascade, set_null."
    )
    required: bool = True
    indexed: bool = True
    sortable: bool = True
    description: str | None = None


class ReferenceField(_Strict):
    """The id of an entity in another service: no foreign key crosses databases."""

    type: Literal["reference"]
    to: str = Field(pattern=r"^[^.]+\.[^.]+$", description="service.Entity")
    required: bool = True
    indexed: bool = True
    sortable: bool = True
    description: str | None = None


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


class Entity(_Strict):
    plural: Identifier | None = Field(None, description="Collection name; derived when omitted.")
    description: str | None = None
    id: Literal["uuid", "integer"] = Field(
        "uuid", description="Primary key kind: random UUID or auto-increment integer."
    )
    soft_delete: bool = Field(False, description="DELETE sets deleted_at instead of removing.")
    unique_together: list[list[str]] = Field(default_factory=list)
    indexes: list[list[str]] = Field(default_factory=list)
    fields: dict[str, FieldSpec]
    seed: list[dict[str, Any]] = Field(
        default_factory=list, description="Rows loaded by `microforge seed`."
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
        return data


class Service(_Strict):
    description: str | None = None
    database: str = Field(
        "sqlite",
        description="'sqlite' (a file under the data folder) or a SQLAlchemy async URL.",
    )
    entities: dict[str, Entity]


class Spec(_Strict):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"title": "microforge spec"},
    )

    name: Identifier = Field(description="Project name (lowercase identifier).")
    description: str | None = None
    version: str = Field("0.1.0", description="Version shown in the OpenAPI docs.")
    services: dict[str, Service] = Field(description="One bounded context (and database) each.")
