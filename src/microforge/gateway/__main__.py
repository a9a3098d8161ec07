"""`python -m microforge.gateway --route catalog=http://127.0.0.1:8101 ...`

Argument errors are reported by argparse (usage line + message, exit code 2).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvicorn

from microforge.gateway.app import (
    GATEWAY_MAX_BODY_BYTES,
    check_base_url,
    check_origin,
    create_gateway,
    parse_route,
)
from microforge.runtime.auth.tokens import RemoteJwks, TokenVerifier


def _route(value: str) -> tuple[str, str]:
    try:
        return parse_route(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _url(value: str) -> str:
    try:
        return check_base_url(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _origin(value: str) -> str:
    try:
        return check_origin(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {value!r}: expected 0-65535")
    return port


def _byte_count(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1024:
        raise argparse.ArgumentTypeError(f"invalid size {value!r}: expected bytes >= 1024")
    return count


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"invalid duration {value!r}: expected seconds > 0")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m microforge.gateway",
        description="Run the microforge edge gateway in front of the generated services.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=_port, default=8000, help="port to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--route",
        dest="routes",
        action="append",
        type=_route,
        required=True,
        metavar="NAME=URL",
        help="serve the service at URL under /NAME/ (repeat for each service)",
    )
    parser.add_argument(
        "--timeout", type=_seconds, default=30.0, help="upstream read/write timeout in seconds"
    )
    parser.add_argument(
        "--connect-timeout", type=_seconds, default=5.0, help="upstream connect timeout in seconds"
    )
    parser.add_argument("--title", default="microforge gateway", help="name shown at /")
    parser.add_argument(
        "--max-body-bytes",
        type=_byte_count,
        default=GATEWAY_MAX_BODY_BYTES,
        help="larger request bodies are refused with 413 (default: %(default)s)",
    )
    auth = parser.add_argument_group(
        "access tokens",
        "verify bearer tokens at the edge (the services verify them too); "
        "--issuer and --audience are required with --jwks-url",
    )
    auth.add_argument("--jwks-url", type=_url, metavar="URL", help="the identity service's JWKS")
    auth.add_argument("--issuer", help="expected token issuer (iss)")
    auth.add_argument("--audience", help="expected token audience (aud)")
    parser.add_argument(
        "--cors-origin",
        dest="cors_origins",
        action="append",
        type=_origin,
        default=[],
        metavar="ORIGIN",
        help="allow browser calls from ORIGIN, e.g. https://app.example.com (repeatable; "
        "CORS is closed without it)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    routes: dict[str, str] = {}
    for name, url in args.routes:
        if name in routes:
            parser.error(f"argument --route: service {name!r} is given more than once")
        routes[name] = url
    verifier = None
    if args.jwks_url:
        if not args.issuer or not args.audience:
            parser.error("--jwks-url needs --issuer and --audience")
        verifier = TokenVerifier(RemoteJwks(args.jwks_url), args.issuer, args.audience)
    elif args.issuer or args.audience:
        parser.error("--issuer and --audience only apply with --jwks-url")
    app = create_gateway(
        routes,
        timeout=args.timeout,
        connect_timeout=args.connect_timeout,
        title=args.title,
        token_verifier=verifier,
        cors_origins=args.cors_origins,
        max_body_bytes=args.max_body_bytes,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        workers=1,
        access_log=args.access_log,
        log_level=args.log_level,
        # We are the edge: the peer address is the client, and X-Forwarded-For is ours to
        # extend, not for uvicorn to trust and rewrite.
        proxy_headers=False,
        # Upstream Server/Date headers are relayed as-is; uvicorn would add duplicates.
        server_header=False,
        date_header=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
