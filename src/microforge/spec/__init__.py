"""The domain spec: its model, loading with precise errors, and naming rules."""

from .errors import SpecError, SpecIssue
from .load import load_spec, load_spec_text
from .model import Entity, FieldSpec, Service, Spec

__all__ = [
    "Entity",
    "FieldSpec",
    "Service",
    "Spec",
    "SpecError",
    "SpecIssue",
    "load_spec",
    "load_spec_text",
]
