"""Name conversions shared by validation and generation, so both agree on collisions."""

from __future__ import annotations

import re

_IRREGULAR = {
    "person": "people",
    "child": "children",
    "man": "men",
    "woman": "women",
    "mouse": "mice",
    "goose": "geese",
    "tooth": "teeth",
    "foot": "feet",
    "datum": "data",
    "index": "indices",
    "shelf": "shelves",
    "leaf": "leaves",
    "half": "halves",
    "wolf": "wolves",
    "thief": "thieves",
    "loaf": "loaves",
    "calf": "calves",
}
_UNCOUNTABLE = {"equipment", "information", "news", "series", "species", "sheep", "fish", "data"}


def snake(name: str) -> str:
    """OrderItem -> order_item, HTTPLog -> http_log, already_snake -> already_snake."""
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    return s.replace("-", "_").lower()


def kebab(name: str) -> str:
    return snake(name).replace("_", "-")


def pluralize(word: str) -> str:
    """English plural of the last word of a snake_case name (good enough for identifiers)."""
    head, _, last = word.rpartition("_")
    prefix = f"{head}_" if head else ""
    lower = last.lower()
    if lower in _UNCOUNTABLE:
        plural = last
    elif lower in _IRREGULAR:
        plural = _IRREGULAR[lower]
    elif re.search(r"[^aeiou]y$", lower):
        plural = last[:-1] + "ies"
    elif re.search(r"(s|x|z|ch|sh)$", lower):
        plural = last + "es"
    elif re.search(r"[^f]fe$", lower):
        plural = last[:-2] + "ves"
    else:
        plural = last + "s"
    return prefix + plural
