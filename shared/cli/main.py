"""Command line: `python -m shared <command> ...`.

Commands live in COMMANDS (name -> Command); add one with `register(...)`. Exit codes: 0 when the
command ran (whatever the diagnosis found), 2 with one "error: ..." line for bad input or an
unreachable peer, 1 with one line for anything unexpected. Never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.common.errors import BotError, InputError

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Handler


COMMANDS: dict[str, Command] = {}


def register(
    name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]
) -> Callable[[Handler], Handler]:
    """Decorator: add a subcommand (other modules register fix, proposals, rollback, ...)."""

    def wrap(handler: Handler) -> Handler:
        COMMANDS[name] = Command(help, add_arguments, handler)
        return handler

    return wrap


def _read_json(path: str, what: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{what} file not found: {path}") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path; UnicodeDecodeError
        raise InputError(f"cannot read {what} file {path!r}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} file {path} is not JSON: {exc.msg} (line {exc.lineno})") from None


def _write(text: str, out: str | None) -> None:
    if out:
        try:
            Path(out).write_text(text, encoding="utf-8")
        except ValueError as exc:  # a NUL in the path
            raise InputError(f"cannot write {out!r}: {exc}") from None
    else:
        sys.stdout.write(text)


# ---- diagnose ----


def _diagnose_arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--gateway", metavar="FILE", help="gateway JSON (ARM or az CLI form)")
    source.add_argument("--gateway-id", metavar="ID", help="read gateway and health through ARM")
    p.add_argument("--health", metavar="FILE", help="backend health JSON (with --gateway)")
    p.add_argument("--no-probe", action="store_true", help="do not connect to the backends")
    p.add_argument("--format", choices=("json", "text"), default="text")
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="TLS handshake timeout per backend (default PROBE_TIMEOUT_SECONDS)",
    )
    p.add_argument("--pool", help="pool name to report first (the alert's hint)")
    p.add_argument("--settings", help="HTTP settings name to report first")


def _load_from_files(args: argparse.Namespace) -> tuple[Any, Any]:
    if not args.health:
        raise InputError("--health FILE is required with --gateway")
    return _read_json(args.gateway, "gateway"), _read_json(args.health, "health")


def _load_from_arm(args: argparse.Namespace) -> tuple[Any, Any]:
    from shared.cloud.arm import ArmClient
    from shared.common.ids import parse_gateway_id
    from shared.common.settings import load_settings

    gid = parse_gateway_id(args.gateway_id)
    client = ArmClient(load_settings())
    return client.get_gateway(gid).doc, client.backend_health(gid)


def _timeout(args: argparse.Namespace) -> float:
    if args.timeout is not None:
        if not 0 < args.timeout <= 60:
            raise InputError("--timeout must be between 0 and 60 seconds")
        return float(args.timeout)
    from shared.common.settings import load_settings

    return float(load_settings()["PROBE_TIMEOUT_SECONDS"])


@register(
    "diagnose", "explain why each backend is unhealthy and what would fix it", _diagnose_arguments
)
def _diagnose(args: argparse.Namespace) -> int:
    from shared.core.diagnosis import diagnose, probe_requests, route_hosts
    from shared.core.gateway import parse_gateway
    from shared.core.health import parse_backend_health
    from shared.core.report import to_json, to_text
    from shared.probe.tls import capture_all

    doc, health_doc = _load_from_arm(args) if args.gateway_id else _load_from_files(args)
    gw = parse_gateway(doc)
    health = parse_backend_health(health_doc)
    hosts = route_hosts(doc) if isinstance(doc, dict) else None
    captures = None
    if not args.no_probe:
        captures = capture_all(probe_requests(gw, health, hosts=hosts), timeout=_timeout(args))
    hint = (args.pool, args.settings) if args.pool and args.settings else None
    result = diagnose(gw, health, captures, now=datetime.now(UTC), hint=hint, hosts=hosts)
    if args.format == "json":
        sys.stdout.write(json.dumps(to_json(result), indent=2) + "\n")
    else:
        sys.stdout.write(to_text(result))
    return 0


# ---- export-cert ----


def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", required=True, help="host name or IP to connect to")
    p.add_argument("--port", required=True, type=int)
    p.add_argument("--sni", default=None, help="SNI name to send (default: none)")
    p.add_argument("--chain", action="store_true", help="export the whole presented chain")
    p.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S")


@register(
    "export-cert", "Base-64 CER (PEM) of the certificate a backend presents", _export_arguments
)
def _export_cert(args: argparse.Namespace) -> int:
    from shared.core.certs import to_pem
    from shared.probe.tls import capture

    if not 0 < args.port < 65536:
        raise InputError(f"--port must be 1-65535, got {args.port}")
    # inf and nan parse as floats; inf once overflowed the socket deadline (exit 1).
    if not 0 < args.timeout <= 60:
        raise InputError("--timeout must be between 0 and 60 seconds")
    cap = capture(args.address, args.port, args.sni, timeout=args.timeout)
    if cap.error is not None or not cap.chain:
        raise InputError(
            f"no certificate from {args.address}:{args.port}: "
            f"{cap.error.value if cap.error else 'empty chain'} ({cap.detail})"
        )
    certs = cap.chain if args.chain else cap.chain[:1]
    _write("".join(to_pem(c.der) for c in certs), args.out)
    if args.out:
        sys.stderr.write(f"wrote {len(certs)} certificate(s), leaf SHA-1 {cap.chain[0].sha1}\n")
    return 0


# ---- entry point ----


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, no usage dump
        raise InputError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m shared", description=__doc__.splitlines()[0] if __doc__ else None
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, command in COMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.help, description=command.help))
    return parser


def _one_line(message: object) -> str:
    return " ".join(str(message).split()) or "unexpected failure"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(COMMANDS[args.command].handler(args))
    except (BotError, OSError) as exc:
        # Bad input is an InputError (a BotError) by the time it gets here. A bare ValueError is a
        # bug, not bad input: it falls through to "unexpected" (exit 1) so tests can tell.
        sys.stderr.write(f"error: {_one_line(exc)}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 1
    except Exception as exc:  # noqa: BLE001 - last resort: one line, never a traceback
        sys.stderr.write(f"error: unexpected {type(exc).__name__}: {_one_line(exc)}\n")
        return 1
