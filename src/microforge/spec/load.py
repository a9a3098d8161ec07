"""Read a spec file: YAML with positions, then the models, then the cross-object rules."""

from __future__ import annotations

import difflib
from pathlib import Path as FsPath
from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import Path, SpecError, SpecIssue
from .model import FIELD_MODELS, FIELD_TYPES, Entity, Service, Spec
from .validate import validate_spec
from .yaml_source import Source, parse_yaml


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
    source = parse_yaml(text, file)
    if not isinstance(source.data, dict):
        raise SpecError([source.issue((), "expected a mapping with 'name' and 'services'")])
    try:
        spec = Spec.model_validate(source.data)
    except ValidationError as exc:
        raise SpecError(_translate(exc, source)) from None
    issues = validate_spec(spec, source)
    if issues:
        raise SpecError(issues)
    return spec


def _model_at(path: Path, data: Any) -> type[BaseModel] | None:
    """Which spec model sits at a path (for listing the keys it accepts)."""
    n = len(path)
    if n == 0:
        return Spec
    if n == 2 and path[0] == "services":
        return Service
    if n == 4 and path[2] == "entities":
        return Entity
    if n == 6 and path[4] == "fields":
        node = data
        for part in path:
            node = node[part] if isinstance(node, dict) else {}
        kind = node.get("type") if isinstance(node, dict) else None
        return FIELD_MODELS.get(kind) if isinstance(kind, str) else None
    return None


def _suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _translate(exc: ValidationError, source: Source) -> list[SpecIssue]:
    issues: list[SpecIssue] = []
    for err in exc.errors():
        loc: Path = tuple(err["loc"])
        # Discriminated unions add the tag ('decimal') to the location; users never wrote it.
        if len(loc) > 6 and loc[4] == "fields" and loc[6] in FIELD_TYPES:
            loc = loc[:6] + loc[7:]
        kind = err["type"]
        if kind == "extra_forbidden":
            key = str(loc[-1])
            model = _model_at(loc[:-1], source.data)
            allowed = sorted(model.model_fields) if model else []
            hint = _suggest(key, allowed)
            listing = f" (expected one of: {', '.join(allowed)})" if allowed and not hint else ""
            issues.append(source.issue(loc, f"unknown key '{key}'{hint}{listing}", key=True))
        elif kind == "union_tag_invalid":
            tag = str(err["ctx"]["tag"])
            issues.append(
                source.issue(
                    (*loc, "type"),
                    f"unknown field type '{tag}'{_suggest(tag, FIELD_TYPES)}"
                    f" (expected one of: {', '.join(FIELD_TYPES)})",
                )
            )
        elif kind == "union_tag_not_found":
            issues.append(
                source.issue(loc, f"missing 'type' (expected one of: {', '.join(FIELD_TYPES)})")
            )
        elif kind == "missing":
            issues.append(source.issue(loc, f"missing required key '{loc[-1]}'"))
        elif kind == "model_type" or kind == "dict_type":
            issues.append(source.issue(loc, f"expected a mapping, got {_describe(err['input'])}"))
        elif kind == "string_pattern_mismatch":
            issues.append(
                source.issue(
                    loc,
                    f"invalid name {err['input']!r}: expected lowercase letters, digits and "
                    "underscores, starting with a letter"
                    if "a-z" in str(err["ctx"].get("pattern", ""))
                    else f"{err['msg']}",
                )
            )
        else:
            issues.append(source.issue(loc, f"{err['msg']} (got {_describe(err['input'])})"))
    return issues


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return repr(value)
