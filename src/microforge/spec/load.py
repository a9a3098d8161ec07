"""Read a spec file: YAML with positions, then the models, then the cross-object rules."""

from __future__ import annotations

import re
from pathlib import Path as FsPath
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from .errors import Path, SpecError, SpecIssue, suggest
from .model import (
    FIELD_MODELS,
    FIELD_TYPES,
    Auth,
    Entity,
    EntityAccess,
    EntityCache,
    FieldAccess,
    HttpCaching,
    LoginThrottle,
    ReferenceField,
    Service,
    Spec,
    WriteBack,
)
from .validate import validate_spec
from .yaml_source import Source, parse_yaml

_MAPPING_ERRORS = {"model_type", "model_attributes_type", "dict_type"}
_QUOTE_HINT = "YAML reads unquoted yes/no/on/off/true/false as booleans and 1.0 as a number"


def load_spec(path: str | FsPath) -> Spec:
    """Load and fully validate a spec file, raising SpecError with every problem found."""
    file = FsPath(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([SpecIssue("file not found", (), str(file))]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([SpecIssue(f"cannot read the file: {exc}", (), str(file))]) from None
    return load_spec_text(text, str(file))


def load_spec_text(text: str, file: str = "<spec>") -> Spec:
    """Parse and fully validate spec text; file names the source in error messages."""
    source = parse_yaml(text, file)
    if not isinstance(source.data, dict):
        raise SpecError(
            [
                source.issue(
                    (),
                    f"expected a mapping with 'name' and 'services', got {_describe(source.data)}",
                )
            ]
        )
    try:
        spec = Spec.model_validate(source.data)
    except ValidationError as exc:
        raise SpecError(_translate(exc.errors(), source)) from None
    issues = validate_spec(spec, source)
    if issues:
        raise SpecError(issues)
    return spec


def _node(data: Any, path: Path) -> Any:
    for part in path:
        if isinstance(part, str) and isinstance(data, dict):
            data = data.get(part)
        elif isinstance(part, int) and isinstance(data, list) and part < len(data):
            data = data[part]
        else:
            return None
    return data


_CACHE_PARTS: dict[str, type[BaseModel]] = {"http": HttpCaching, "write_back": WriteBack}


def _model_at(path: Path, data: Any) -> type[BaseModel] | None:
    """Which spec model sits at a path (for listing the keys it accepts)."""
    n = len(path)
    if n == 0:
        return Spec
    if path == ("auth",):
        return Auth
    if path == ("auth", "login_throttle"):
        return LoginThrottle
    if n == 2 and path[0] == "services":
        return Service
    if n == 4 and path[2] == "entities":
        return Entity
    if n == 5 and path[2] == "entities" and path[4] == "access":
        return EntityAccess
    if n == 5 and path[2] == "entities" and path[4] == "cache":
        return EntityCache
    if n == 6 and path[2] == "entities" and path[4] == "cache":
        return _CACHE_PARTS.get(str(path[5]))
    if n == 7 and path[4] == "fields" and path[6] == "access":
        return FieldAccess
    if n == 6 and path[4] == "fields":
        node = _node(data, path)
        kind = (
            node if isinstance(node, str) else node.get("type") if isinstance(node, dict) else None
        )
        return FIELD_MODELS.get(kind) if isinstance(kind, str) else None
    return None


def _is_field(loc: Path) -> bool:
    return len(loc) == 6 and loc[0] == "services" and loc[2] == "entities" and loc[4] == "fields"


def _translate(errors: list[ErrorDetails], source: Source) -> list[SpecIssue]:
    issues: list[SpecIssue] = []
    for err in errors:
        loc: Path = tuple(err["loc"])
        # Discriminated unions add the tag ('decimal') to the location; users never wrote it.
        if len(loc) > 6 and _is_field(loc[:6]) and loc[6] in FIELD_TYPES:
            loc = loc[:6] + loc[7:]
        issues.append(_issue(err, loc, source))
    # `fileds:` is reported as unknown with "did you mean 'fields'": not also as missing.
    suggested = {
        (*i.path[:-1], match.group(1))
        for i in issues
        if (match := re.search(r"^unknown key .*; did you mean '([^']+)'\?$", i.message))
    }
    return [
        i
        for i in issues
        if not (i.message.startswith("missing required key") and i.path in suggested)
    ]


def _issue(err: ErrorDetails, loc: Path, source: Source) -> SpecIssue:
    kind = err["type"]
    value = err["input"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        model = _model_at(loc[:-1], source.data)
        allowed = sorted(model.model_fields) if model else []
        if _is_field(loc[:-1]):
            owners = sorted({t for t, m in FIELD_MODELS.items() if key in m.model_fields})
            if owners:
                field_type = _node(source.data, (*loc[:-1], "type"))
                return source.issue(
                    loc,
                    f"unknown key '{key}' for a {field_type} field (an option of: "
                    f"{', '.join(owners)}; expected one of: {', '.join(allowed)})",
                    key=True,
                )
        hint = suggest(key, allowed)
        listing = f" (expected one of: {', '.join(allowed)})" if allowed and not hint else ""
        return source.issue(loc, f"unknown key '{key}'{hint}{listing}", key=True)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = value.get("type") if isinstance(value, dict) else None
        if tag is None:
            return source.issue(
                loc, f"missing 'type' (expected one of: {', '.join(FIELD_TYPES)})", key=True
            )
        hint = suggest(str(tag), FIELD_TYPES)
        expected = ", ".join(FIELD_TYPES)
        return source.issue(
            (*loc, "type"),
            f"unknown field type {_describe(tag)}{hint} (expected one of: {expected})",
        )
    if kind == "missing":
        return source.issue(loc, f"missing required key '{loc[-1]}'")
    if kind in _MAPPING_ERRORS:
        if _is_field(loc):
            return source.issue(
                loc,
                "expected a field type name (e.g. `string`) or a mapping such as "
                f"{{type: string, max_length: 80}}, got {_describe(value)}",
            )
        return source.issue(loc, f"expected a mapping, got {_describe(value)}")
    if kind == "string_pattern_mismatch":
        return source.issue(loc, _pattern_message(loc, value, source))
    if kind == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
        hint = suggest(str(value), allowed) if isinstance(value, str) else ""
        return source.issue(
            loc, f"expected one of: {', '.join(allowed)}, got {_describe(value)}{hint}"
        )
    if kind == "string_type":
        hint = f" ({_QUOTE_HINT}: quote it)" if isinstance(value, (bool, int, float)) else ""
        return source.issue(loc, f"expected a string, got {_describe(value)}{hint}")
    if kind == "list_type" and len(loc) == 6 and loc[4] in ("unique_together", "indexes"):
        return source.issue(
            loc,
            f"expected a list of field names, got {_describe(value)} "
            f"({loc[4]} is a list of lists, e.g. [[name, category]])",
        )
    if kind == "list_type":
        return source.issue(loc, f"expected a list, got {_describe(value)}")
    return source.issue(loc, f"{err['msg']} (got {_describe(value)})")


def _pattern_message(loc: Path, value: Any, source: Source) -> str:
    if (
        len(loc) == 7
        and _is_field(loc[:6])
        and loc[6] == "to"
        and _model_at(loc[:6], source.data) is ReferenceField
    ):
        services = _node(source.data, ("services",))
        owners = [
            name
            for name, svc in (services.items() if isinstance(services, dict) else [])
            if isinstance(svc, dict)
            and isinstance(svc.get("entities"), dict)
            and value in svc["entities"]
        ]
        hint = f"; did you mean '{owners[0]}.{value}'?" if owners else ""
        return f"expected 'service.Entity' (e.g. identity.User), got {_describe(value)}{hint}"
    return (
        f"invalid name {value!r}: expected lowercase letters, digits and underscores, "
        "starting with a letter"
    )


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    return repr(value)
