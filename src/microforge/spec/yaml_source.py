"""Load YAML into plain Python data while remembering where every value came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from .errors import Path, SpecError, SpecIssue

_MERGE_TAG = "tag:yaml.org,2002:merge"
_OPENERS = {
    "while parsing a flow sequence": "'['",
    "while parsing a flow mapping": "'{'",
    "while scanning a quoted scalar": "quote",
}


@dataclass
class Source:
    """Parsed YAML plus the line/column of each path (1-based), for error messages.

    ``positions`` holds where each value starts, ``key_positions`` where the key naming it is
    written (mapping entries only).
    """

    file: str
    data: Any
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: Path, *, key: bool = False) -> tuple[int | None, int | None]:
        """Where path is written; a missing path points at the key of its deepest known parent.

        With ``key=True`` an existing mapping entry points at its key rather than its value.
        """
        if key and path in self.key_positions:
            return self.key_positions[path]
        if path in self.positions:
            return self.positions[path]
        probe = path
        while probe:
            probe = probe[:-1]
            if probe in self.key_positions:
                return self.key_positions[probe]
            if probe in self.positions:
                return self.positions[probe]
        return None, None

    def issue(self, path: Path, message: str, *, key: bool = False) -> SpecIssue:
        line, column = self.locate(path, key=key)
        return SpecIssue(message=message, path=path, file=self.file, line=line, column=column)


def parse_yaml(text: str, file: str) -> Source:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise SpecError([_yaml_issue(exc, file)]) from None
    except yaml.YAMLError as exc:
        raise SpecError([SpecIssue(f"invalid YAML: {exc}", (), file)]) from None
    if root is None:
        raise SpecError(
            [
                SpecIssue(
                    "the spec is empty; expected a mapping with 'name' and 'services'",
                    (),
                    file,
                    1,
                    1,
                )
            ]
        )
    source = Source(file=file, data=None)
    issues: list[SpecIssue] = []
    source.data = _convert(root, (), source, issues, set())
    if issues:
        raise SpecError(issues)
    return source


def _yaml_issue(exc: yaml.MarkedYAMLError, file: str) -> SpecIssue:
    """Turn a PyYAML error into one issue at the most useful place, in plain words."""
    problem = exc.problem or "malformed YAML"
    context = exc.context or ""
    mark = exc.problem_mark or exc.context_mark
    opener = _OPENERS.get(context)
    if opener is not None and exc.context_mark is not None and exc.problem_mark is not None:
        # An unclosed bracket or quote is only noticed later (often at the end of the file):
        # the place it was opened is the one to fix.
        where = f"line {exc.problem_mark.line + 1}, column {exc.problem_mark.column + 1}"
        return SpecIssue(
            f"invalid YAML: this {opener} is never closed ({problem} at {where})",
            (),
            file,
            exc.context_mark.line + 1,
            exc.context_mark.column + 1,
        )
    if "'\\t'" in problem:
        message = "invalid YAML: a tab character; YAML indentation must use spaces"
    elif "expected <block end>" in problem or "mapping values are not allowed" in problem:
        message = f"invalid YAML: {problem} (check the indentation of this line)"
    else:
        message = "invalid YAML: " + " ".join(p for p in (context, problem) if p)
    line = mark.line + 1 if mark else None
    column = mark.column + 1 if mark else None
    return SpecIssue(message, (), file, line, column)


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _convert(
    node: yaml.Node, path: Path, source: Source, issues: list[SpecIssue], active: set[int]
) -> Any:
    source.positions[path] = _pos(node)
    if id(node) in active:
        issues.append(_at(source.file, node, path, "a YAML alias refers to itself"))
        return None
    if isinstance(node, yaml.MappingNode):
        active.add(id(node))
        try:
            return _convert_mapping(node, path, source, issues, active)
        finally:
            active.discard(id(node))
    if isinstance(node, yaml.SequenceNode):
        active.add(id(node))
        try:
            return [
                _convert(item, (*path, i), source, issues, active)
                for i, item in enumerate(node.value)
            ]
        finally:
            active.discard(id(node))
    if not isinstance(node, yaml.ScalarNode):
        issues.append(_at(source.file, node, path, "unsupported YAML construct"))
        return None
    try:
        return SafeConstructor().construct_object(node)
    except ConstructorError as exc:
        issues.append(_at(source.file, node, path, f"invalid value: {exc.problem}"))
        return None


def _convert_mapping(
    node: yaml.MappingNode, path: Path, source: Source, issues: list[SpecIssue], active: set[int]
) -> dict[str, Any]:
    # Keys are names: take them as written, so `on:` or `yes:` stay strings, not booleans.
    merged: list[tuple[yaml.Node, yaml.Node]] = []
    explicit: list[tuple[yaml.Node, yaml.Node]] = []
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _MERGE_TAG:
            merged.extend(_merge_entries(value_node, path, source, issues))
        else:
            explicit.append((key_node, value_node))
    out: dict[str, Any] = {}
    written: set[str] = set()
    # `<<: *base` entries come first; keys written in the mapping itself override them.
    for from_merge, entries in ((True, merged), (False, explicit)):
        for key_node, value_node in entries:
            if not isinstance(key_node, yaml.ScalarNode):
                issues.append(
                    _at(source.file, key_node, path, "a mapping key must be a plain name")
                )
                continue
            key = str(key_node.value)
            child = (*path, key)
            if key in written:
                if not from_merge:
                    issues.append(_at(source.file, key_node, child, f"duplicate key '{key}'"))
                continue
            if not from_merge:
                written.add(key)
            source.key_positions[child] = _pos(key_node)
            out.pop(key, None)
            out[key] = _convert(value_node, child, source, issues, active)
    return out


def _merge_entries(
    value: yaml.Node, path: Path, source: Source, issues: list[SpecIssue]
) -> list[tuple[yaml.Node, yaml.Node]]:
    """The entries a `<<:` merge key brings in (an alias to a mapping, or a list of them)."""
    sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
    entries: list[tuple[yaml.Node, yaml.Node]] = []
    # Earlier mappings in a merge list win over later ones.
    for item in reversed(sources):
        if not isinstance(item, yaml.MappingNode):
            issues.append(_at(source.file, item, path, "'<<' must merge a mapping"))
            continue
        entries.extend(item.value)
    return entries


def _at(file: str, node: yaml.Node, path: Path, message: str) -> SpecIssue:
    line, column = _pos(node)
    return SpecIssue(message, path, file, line, column)
