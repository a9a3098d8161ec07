"""Load YAML into plain Python data while remembering where every value came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from .errors import Path, SpecError, SpecIssue


@dataclass
class Source:
    """Parsed YAML plus the line/column of each path (1-based), for error messages."""

    file: str
    data: Any
    positions: dict[Path, tuple[int, int]] = field(default_factory=dict)
    key_positions: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: Path, *, key: bool = False) -> tuple[int | None, int | None]:
        """Position of the deepest known prefix of path (a missing key points at its parent)."""
        table = self.key_positions if key else self.positions
        probe = path
        while True:
            if probe in table:
                return table[probe]
            if probe in self.positions:
                return self.positions[probe]
            if not probe:
                return None, None
            probe = probe[:-1]

    def issue(self, path: Path, message: str, *, key: bool = False) -> SpecIssue:
        line, column = self.locate(path, key=key)
        return SpecIssue(message=message, path=path, file=self.file, line=line, column=column)


def parse_yaml(text: str, file: str) -> Source:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        reason = " ".join(p for p in (exc.context, exc.problem) if p)
        raise SpecError(
            [SpecIssue(f"invalid YAML: {reason}", (), file, line, column)]
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError([SpecIssue(f"invalid YAML: {exc}", (), file)]) from None
    source = Source(file=file, data=None)
    if root is None:
        raise SpecError([SpecIssue("the spec is empty; expected a mapping with 'name' and 'services'", (), file, 1, 1)])
    issues: list[SpecIssue] = []
    source.data = _convert(root, (), source, issues)
    if issues:
        raise SpecError(issues)
    return source


def _convert(node: yaml.Node, path: Path, source: Source, issues: list[SpecIssue]) -> Any:
    source.positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                issues.append(_at(source.file, key_node, path, "a mapping key must be a plain name"))
                continue
            key = str(SafeConstructor().construct_object(key_node))
            child = (*path, key)
            if key in out:
                issues.append(_at(source.file, key_node, child, f"duplicate key '{key}'"))
                continue
            source.key_positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _convert(value_node, child, source, issues)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), source, issues) for i, item in enumerate(node.value)]
    if node.tag == "tag:yaml.org,2002:merge" or not isinstance(node, yaml.ScalarNode):
        issues.append(_at(source.file, node, path, "unsupported YAML construct"))
        return None
    try:
        return SafeConstructor().construct_object(node)
    except yaml.constructor.ConstructorError as exc:
        issues.append(_at(source.file, node, path, f"invalid value: {exc.problem}"))
        return None


def _at(file: str, node: yaml.Node, path: Path, message: str) -> SpecIssue:
    return SpecIssue(message, path, file, node.start_mark.line + 1, node.start_mark.column + 1)
