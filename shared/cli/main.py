"""Command line: `appgw-cert-bot <command> ...` (or `python -m shared <command> ...`).

Commands live in COMMANDS (name -> Command); add one with `register(...)` in a module that
shared/cli/commands.py imports. Exit codes (shared.cli.exit_codes): 0 done, 1 failed, 2 bad input
or an unreachable peer, 3 waiting on a person; one "error: ..." line, never a traceback (unless
`--debug`).

Standard output is the contract (report, JSON): with `--format json` exactly one JSON document
(shared.cli.output). Commands that wait report their phases on standard error (`[  12.3s] ...`,
shared.cli.progress) through `args.progress`; `--quiet` turns that off, and an error is always the
last line of standard error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import stat
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.cli.output import emit, emitted, json_mode, json_requested
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


# The largest input file read (gateway, health, alert…): a gateway document with hundreds of
# settings is a few MiB; the cap keeps `--gateway /dev/zero` from filling memory or hanging.
MAX_INPUT_BYTES = 16 * 1024 * 1024
_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),  # what Windows PowerShell's `>` writes
    (b"\xfe\xff", "utf-16"),
)


def read_input(path: str, what: str, *, limit: int = MAX_INPUT_BYTES) -> bytes:
    """At most `limit` bytes of a regular file; InputError (exit 2) naming the file otherwise.
    A FIFO, device or socket is refused: opening a FIFO for reading waits for a writer (a hang),
    and a device may never end. The file is opened non-blocking and checked on the open
    descriptor, so nothing can be swapped in between."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError
            if not stat.S_ISREG(mode):
                raise InputError(
                    f"{what} file {path} is not a regular file (a FIFO, device or socket): "
                    "save the JSON to a file first"
                )
            raw = handle.read(limit + 1)
    except FileNotFoundError:
        raise InputError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise InputError(f"{what} file {path} is a directory") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise InputError(f"cannot read {what} file {path!r}: {reason}") from None
    if len(raw) > limit:
        raise InputError(f"{what} file {path} is larger than {limit // (1024 * 1024)} MiB")
    return raw


def decode_json(raw: bytes, source: str) -> Any:
    """JSON from UTF-8 (with or without BOM) or UTF-16/32 with a BOM; InputError naming
    `source` and the reason otherwise."""
    encoding = next((enc for bom, enc in _BOMS if raw.startswith(bom)), None)
    try:
        text = raw.decode(encoding or "utf-8")
    except UnicodeDecodeError as exc:
        hint = "" if encoding else "; save it as UTF-8 (or UTF-16 with a byte order mark)"
        raise InputError(
            f"{source} is not {encoding or 'UTF-8'} text (byte {exc.start}){hint}"
        ) from None
    if "\x00" in text and not encoding:
        raise InputError(f"{source} holds NUL characters: UTF-16 without a byte order mark?")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{source} is not JSON: {exc.msg} (line {exc.lineno})") from None
    except RecursionError:
        raise InputError(f"{source} is not JSON this tool reads: nested too deeply") from None
    except ValueError:  # an integer longer than Python converts (sys.get_int_max_str_digits)
        raise InputError(
            f"{source} is not JSON this tool reads: a number with more than "
            f"{sys.get_int_max_str_digits()} digits"
        ) from None


def _read_json(path: str, what: str) -> Any:
    return decode_json(read_input(path, what), f"{what} file {path}")


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
    args.progress(f"reading the gateway {gid.name}")
    doc = client.get_gateway(gid).doc
    args.progress("reading backend health (an ARM operation)")
    return doc, client.backend_health(gid)


def _warn(message: str) -> None:
    """A warning line on stderr (not progress: --quiet keeps it)."""
    sys.stderr.write(f"warning: {_one_line(message)}\n")


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
    from shared.core.probe_order import slow_first
    from shared.core.report import to_json, to_text
    from shared.probe.tls import capture_all, detect_vantage
    from shared.probe.well_known import load_well_known

    doc, health_doc = _load_from_arm(args) if args.gateway_id else _load_from_files(args)
    gw = parse_gateway(doc)
    health = parse_backend_health(health_doc)
    hosts = route_hosts(doc) if isinstance(doc, dict) else None
    captures = None
    if not args.no_probe:
        # Files or ARM, the handshakes run from here: say where, and warn when that is not the
        # gateway's network (a proxy here may answer for a pool address; issue 13).
        requests = slow_first(list(dict.fromkeys(probe_requests(gw, health, hosts=hosts))), health)
        vantage = detect_vantage()
        timeout = _timeout(args)
        if requests and not vantage.in_gateway_network:
            _warn(
                f"probing {len(requests)} pool address(es) from {vantage.describe()}: what "
                "answers here may not be what the gateway sees (--no-probe to skip)"
            )
        args.progress(f"probing {len(requests)} backend handshake(s) from {vantage.describe()}")
        captures = capture_all(requests, timeout=timeout, vantage=vantage)
    hint = (args.pool, args.settings) if args.pool and args.settings else None
    # The well-known CA store judges v2 settings without trusted roots (WELL_KNOWN_CA_BUNDLE).
    store = load_well_known(os.environ.get("WELL_KNOWN_CA_BUNDLE")) if captures else ()
    result = diagnose(
        gw, health, captures, now=datetime.now(UTC), hint=hint, hosts=hosts, well_known=store
    )
    result = _with_expiring(result, gw, captures, read_vault=bool(args.gateway_id))
    if args.format == "json":
        emit(to_json(result), indent=2)
    else:
        sys.stdout.write(to_text(result))
    return 0


def _with_expiring(result: Any, gw: Any, captures: Any, *, read_vault: bool) -> Any:
    """The diagnosis with its `expiring` list (shared.core.expiry): the gateway's stored
    certificates, what the backends presented and, through ARM, the trusted-source Key Vault
    certificates when one is configured (a vault that cannot be read is a warning)."""
    from dataclasses import replace

    from shared.common.settings import load_settings
    from shared.core.expiry import expiring

    settings = load_settings()
    vault: list[bytes] = []
    if read_vault and settings["KEY_VAULT_URL"] and settings["TRUSTED_CERT_NAMES"]:
        from shared.cloud.arm import make_credential
        from shared.cloud.keyvault import trusted_source

        try:
            vault = [bytes(d) for d in trusted_source(settings, make_credential(settings))()]
        except Exception as exc:  # noqa: BLE001 - the report goes on without the vault
            _warn(f"Key Vault not read for the expiry watch: {exc}")
    days = int(settings["EXPIRY_WARNING_DAYS"])
    soon = expiring(gw, captures, now=datetime.now(UTC), key_vault=vault, warning_days=days)
    return replace(result, expiring=soon)


# ---- export-cert ----


def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", required=True, help="host name or IP to connect to")
    p.add_argument("--port", required=True, type=int)
    p.add_argument("--sni", default=None, help="SNI name to send (default: none)")
    p.add_argument("--chain", action="store_true", help="export the whole presented chain")
    p.add_argument(
        "--out", metavar="FILE", help="write to this new file instead of standard output"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="with --out: replace an existing file (a symbolic link is replaced, not followed)",
    )
    p.add_argument("--timeout", type=float, default=10.0, metavar="S")


@register(
    "export-cert", "Base-64 CER (PEM) of the certificate a backend presents", _export_arguments
)
def _export_cert(args: argparse.Namespace) -> int:
    from shared.cli.output_file import check_new_file, write_new_file
    from shared.core.certs import to_pem
    from shared.probe.tls import capture, detect_vantage

    if not 0 < args.port < 65536:
        raise InputError(f"--port must be 1-65535, got {args.port}")
    # inf and nan parse as floats; inf once overflowed the socket deadline (exit 1).
    if not 0 < args.timeout <= 60:
        raise InputError("--timeout must be between 0 and 60 seconds")
    if args.out:
        check_new_file(args.out, force=args.force)  # before connecting anywhere
    vantage = detect_vantage()
    sni = f"SNI {args.sni}" if args.sni else "no SNI"
    args.progress(f"connecting to {args.address}:{args.port} ({sni}) from {vantage.describe()}")
    cap = capture(args.address, args.port, args.sni, timeout=args.timeout, vantage=vantage)
    if cap.error is not None or not cap.chain:
        raise InputError(
            f"no certificate from {args.address}:{args.port} (tried from {vantage.describe()}): "
            f"{cap.error.value if cap.error else 'empty chain'} ({cap.detail})"
        )
    certs = cap.chain if args.chain else cap.chain[:1]
    pem = "".join(to_pem(c.der) for c in certs)
    if args.out:
        write_new_file(args.out, pem, force=args.force)
    elif not json_requested(args):
        sys.stdout.write(pem)
    if json_requested(args):
        emit({"certificates": len(certs), "sha1": cap.chain[0].sha1, "out": args.out, "pem": pem})
    # Always say where the certificate was captured: from outside the gateway's network it may
    # be a proxy's, not the backend's.
    sys.stderr.write(
        f"captured from {vantage.describe()}"
        + (f"; wrote {len(certs)} certificate(s) to {args.out}" if args.out else "")
        + f", leaf SHA-1 {cap.chain[0].sha1}\n"
    )
    if not vantage.in_gateway_network:
        _warn(
            "the gateway connects from its own network; a proxy or DNS on this machine's path may "
            "present another certificate: compare the SHA-1 with the gateway's backend health"
        )
    return 0


# ---- entry point ----


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2, no usage dump
        raise InputError(message)


def build_parser() -> argparse.ArgumentParser:
    import shared
    import shared.cli.commands  # registers every command
    from shared.cli.help import PROG, epilog

    parser = _Parser(
        prog=PROG,
        description="Diagnose and fix Application Gateway backend certificate trust.",
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {shared.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, command in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=command.help,
            description=command.help,
            epilog=epilog(name),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_arguments(p)
        with contextlib.suppress(argparse.ArgumentError):  # a command may define its own
            p.add_argument(
                "--quiet", action="store_true", help="no progress lines on standard error"
            )
        with contextlib.suppress(argparse.ArgumentError):
            p.add_argument(
                "--format",
                choices=("text", "json"),
                default="text",
                help="text for people (default) or one JSON document on standard output",
            )
        p.add_argument(
            "--debug",
            action="store_true",
            help="show the Azure SDK's log (the credential chain) and tracebacks on standard error",
        )
        _add_resource_group(p)
    return parser


def _add_resource_group(p: argparse.ArgumentParser) -> None:
    """Every command taking --gateway-id also takes a bare name: NAME with --resource-group, or
    RG/NAME, in AZURE_SUBSCRIPTION_ID (resolved by _resolve_gateway before the command runs)."""
    options = {o for action in p._actions for o in action.option_strings}
    if "--gateway-id" in options and "--resource-group" not in options:
        p.add_argument(
            "--resource-group",
            metavar="RG",
            help="resource group of a --gateway-id given as a bare name (AZURE_SUBSCRIPTION_ID)",
        )


def _resolve_gateway(args: argparse.Namespace) -> None:
    """A bare --gateway-id name becomes the full resource id (docs/operations.md)."""
    value = getattr(args, "gateway_id", None)
    if not isinstance(value, str) or value.strip().startswith("/"):
        return
    import os

    from shared.common.ids import resolve_gateway

    args.gateway_id = resolve_gateway(
        value,
        resource_group=getattr(args, "resource_group", None),
        subscription=os.environ.get("AZURE_SUBSCRIPTION_ID"),
    ).id


def _one_line(message: object) -> str:
    from shared.cli.progress import printable

    return printable(" ".join(str(message).split())) or "unexpected failure"


def main(argv: Sequence[str] | None = None) -> int:
    from shared.cli.errors import configure_logging, explain
    from shared.cli.progress import StderrProgress

    progress = StderrProgress(enabled=False)
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    configure_logging(debug)
    as_json = False
    try:
        args = build_parser().parse_args(argv)
        as_json = json_requested(args)
        _resolve_gateway(args)
        progress.enabled = not getattr(args, "quiet", False)
        args.progress = progress
        with json_mode(as_json), progress:
            code = int(COMMANDS[args.command].handler(args))
            if progress.used and code == 0:  # after an error line, nothing more
                progress("done")
            return code
    except (BotError, OSError) as exc:
        # Bad input is an InputError (a BotError) by the time it gets here. A bare ValueError is a
        # bug, not bad input: it falls through to "unexpected" (exit 1) so tests can tell.
        return _fail(explain(exc), 2, as_json, debug)
    except RecursionError:
        # Only input nests this deep (files are read whole, then walked): bad input, exit 2.
        return _fail("input is nested too deeply to read", 2, as_json, debug)
    except KeyboardInterrupt:
        return _fail("interrupted", 1, as_json, debug)
    except Exception as exc:  # noqa: BLE001 - last resort: one line, never a traceback
        return _fail(f"unexpected {type(exc).__name__}: {explain(exc)}", 1, as_json, debug)


def _fail(message: str, code: int, as_json: bool, debug: bool) -> int:
    """One error line on stderr (after the traceback with --debug); with --format json, also the
    JSON document when the command printed none."""
    if debug:
        import traceback

        traceback.print_exc(file=sys.stderr)
    line = _one_line(message)
    if as_json and not emitted():
        emit({"error": line, "exit_code": code})
    sys.stderr.write(f"error: {line}\n")
    return code
