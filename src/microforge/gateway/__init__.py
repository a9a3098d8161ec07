"""The edge gateway that fronts every generated service under `/{service}/`."""

from microforge.gateway.app import create_gateway, parse_route, problem
from microforge.gateway.proxy import UpstreamError

__all__ = ["UpstreamError", "create_gateway", "parse_route", "problem"]
