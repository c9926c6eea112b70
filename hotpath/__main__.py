"""Command line: ``hotpath serve | ingest | gateway | sim | watch | check | token``
(also ``python -m hotpath``)."""

from __future__ import annotations

import argparse
import os
import sys

from hotpath import __version__
from hotpath import config as config_mod

MISSING_REDIS = """\
hotpath: {binary} not found, and no --redis-url was given.
  Install Redis:  sudo apt-get install redis-server   (Debian/Ubuntu)
                  brew install redis                  (macOS)
  or point hotpath at a running Redis:  hotpath serve --redis-url redis://HOST:6379/0
"""

COMMANDS = {
    "serve": "run everything: Redis (embedded unless --redis-url), ingest, gateway workers",
    "ingest": "run only the ingest process (Bybit -> Redis)",
    "gateway": "run only one gateway worker (Redis -> clients); start several for more cores",
    "sim": "run the Bybit V5 simulator (hotpath sim --help for its options)",
    "watch": "print live messages of some streams from a running hotpath",
    "check": "validate the configuration and check Redis and the upstream; exit 0 when all is well",
    "token": "print an HS256 JWT for a node run with --auth jwt (hotpath token --help)",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hotpath", description="Real-time crypto market-data gateway (Bybit V5 -> Redis "
        "-> WebSocket clients).")
    parser.add_argument("--version", action="version", version=f"hotpath {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        if name in ("sim", "watch", "token"):
            sub.add_parser(name, help=help_text, add_help=False)
            continue
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if name == "gateway":
            cmd.add_argument("--index", type=int, default=0, help="worker number, for logs")
        config_mod.add_arguments(cmd)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "sim":
        from hotpath.sim.cli import main as sim_main
        return sim_main(argv[1:])
    if argv and argv[0] == "watch":
        from hotpath.watch import main as watch_main
        return watch_main(argv[1:])
    if argv and argv[0] == "token":
        return _token(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        config = config_mod.load(args)
    except config_mod.ConfigError as exc:
        print(f"hotpath: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check":
        from hotpath.check import main as check_main
        return check_main(config)
    if args.command == "serve":
        from hotpath import logs
        from hotpath.supervisor import serve
        logs.setup("supervisor", config.log.level, config.log.format)
        return serve(config, lambda binary: print(MISSING_REDIS.format(binary=binary),
                                                  file=sys.stderr))
    if not config.redis.url:
        print("hotpath: --redis-url is required when running a single role", file=sys.stderr)
        return 2
    if args.command == "ingest":
        from hotpath.ingest.service import main as ingest_main
        return ingest_main(config)
    from hotpath.gateway.worker import main as gateway_main
    return gateway_main(config, args.index)


def _token(argv: list[str]) -> int:
    """``hotpath token``: sign a JWT with the node's secret, for clients or for testing."""
    parser = argparse.ArgumentParser(
        prog="hotpath token", description=COMMANDS["token"].split(" (")[0] + ". The secret "
        "comes from --secret-file, else HOTPATH_AUTH_SECRET_FILE, else HOTPATH_AUTH_SECRET.")
    parser.add_argument("--secret-file", default=os.environ.get("HOTPATH_AUTH_SECRET_FILE"),
                        help="file holding the secret the node was given")
    parser.add_argument("--ttl", type=float, default=3600.0,
                        help="seconds until the token expires (default 3600)")
    parser.add_argument("--sub", default="", help="'sub' claim: whom the token is for")
    args = parser.parse_args(argv)
    try:
        secret = (config_mod.read_secret(args.secret_file) if args.secret_file
                  else os.environ.get("HOTPATH_AUTH_SECRET", ""))
    except config_mod.ConfigError as exc:
        print(f"hotpath token: {exc}", file=sys.stderr)
        return 2
    if len(secret.encode()) < config_mod.MIN_SECRET or args.ttl <= 0:
        print(f"hotpath token: needs a secret of at least {config_mod.MIN_SECRET} bytes "
              "(--secret-file) and --ttl > 0", file=sys.stderr)
        return 2
    from hotpath.gateway.auth import make_token
    print(make_token(secret, args.ttl, claims={"sub": args.sub} if args.sub else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
