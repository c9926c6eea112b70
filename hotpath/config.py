"""One frozen Config, built once in the parent from CLI flags, HOTPATH_* and defaults.

Every option is declared once in OPTIONS: its flag, its environment variable, its
place in the Config tree and its help text. Precedence: CLI flag > HOTPATH_* > default.
An unknown HOTPATH_* variable is an error at start-up, so typos cannot go unnoticed.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import msgspec

from hotpath import compiled

BYBIT_MAINNET_WS = "wss://stream.bybit.com/v5/public/linear"
BYBIT_MAINNET_REST = "https://api.bybit.com"
BYBIT_TESTNET_WS = "wss://stream-testnet.bybit.com/v5/public/linear"
BYBIT_TESTNET_REST = "https://api-testnet.bybit.com"


MIN_SECRET = 32  # bytes of an auth secret (RFC 7518 §3.2: an HS256 key of 256 bits or more)


class ConfigError(Exception):
    """The configuration cannot be used; the message says why."""


class RedisConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: str = ""  # empty: the supervisor starts an embedded redis-server
    namespace: str = "hotpath"
    server_binary: str = "redis-server"
    publish_batch: int = 16  # the ingest's PUBLISHes per write at most (see bus/publisher.py)


class UpstreamConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    mode: Literal["bybit", "sim"] = "bybit"
    testnet: bool = False
    ws_url: str = ""  # empty: derived from mode/testnet
    rest_url: str = ""
    symbols: tuple[str, ...] = ()  # empty: every trading USDT perpetual
    topics_per_connection: int = 200
    eager: tuple[str, ...] = ()  # stream templates always subscribed, e.g. "orderbook:50"
    linger: float = 60.0
    raw: bool = False
    raw_prefix: str = "stream:bybit_"
    instruments_refresh: float = 300.0
    connect_budget: int = 500
    connect_window: float = 300.0
    connect_spacing: float = 0.2
    book_stale_after: float = 60.0
    ping_interval: float = 20.0
    stale_after: float = 30.0
    reconnect_max_delay: float = 60.0
    sim_symbols: int = 300
    sim_seed: int = 1


class GatewayConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 0  # 0: one per CPU
    max_clients: int = 10_000
    max_subscriptions: int = 100
    read_buffer_size: int = 1024  # clients send little; picows grows it for a larger frame
    max_frame_size: int = 65_536
    listen_backlog: int = 4096
    max_ops_per_second: float = 10.0
    max_messages_per_second: float = 100.0
    idle_timeout: float = 300.0
    send_buffer_soft: int = 256 * 1024
    send_buffer_hard: int = 4 * 1024 * 1024
    slow_consumer_timeout: float = 30.0
    max_connections_per_ip: int = 0
    trusted_proxies: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    stream_linger: float = 5.0
    flush_window_ms: float = 0.0
    snapshot_timeout: float = 3.0
    shutdown_grace: float = 0.0
    shutdown_window: float = 10.0
    socket_send_buffer: int = 0  # SO_SNDBUF of client sockets; 0: the kernel's default
    auth: Literal["none", "secret", "jwt"] = "none"
    auth_secret: str = ""  # load() fills it from auth_secret_file when that is given
    auth_secret_file: str = ""
    auth_timeout: float = 5.0
    auth_leeway: float = 5.0


class SchemaConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    compat: Literal["", "mudrex"] = ""
    stream_prefix: str = "hotpath.futures"
    source: str = "hotpath"


class LogConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    redis: RedisConfig = RedisConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    gateway: GatewayConfig = GatewayConfig()
    schema: SchemaConfig = SchemaConfig()
    log: LogConfig = LogConfig()

    @property
    def ws_url(self) -> str:
        if self.upstream.ws_url:
            return self.upstream.ws_url
        return BYBIT_TESTNET_WS if self.upstream.testnet else BYBIT_MAINNET_WS

    @property
    def rest_url(self) -> str:
        if self.upstream.rest_url:
            return self.upstream.rest_url.rstrip("/")
        return BYBIT_TESTNET_REST if self.upstream.testnet else BYBIT_MAINNET_REST

    @property
    def stream_prefix(self) -> str:
        return "mudrex.futures" if self.schema.compat == "mudrex" else self.schema.stream_prefix

    @property
    def source(self) -> str:
        return "mudrex" if self.schema.compat == "mudrex" else self.schema.source

    def worker_count(self) -> int:
        return self.gateway.workers or (os.cpu_count() or 1)


@dataclass(frozen=True)
class Option:
    """One setting: where it lives in Config, and how a user names it."""

    path: str  # "section.field"
    help: str
    flag_only: bool = False  # a CLI flag with no HOTPATH_* variable

    @property
    def flag(self) -> str:
        section, field = self.path.split(".")
        name = f"{section}_{field}" if section in ("redis", "log") else field
        name = _FLAG_RENAMES.get(self.path, name)
        return "--" + name.replace("_", "-")

    @property
    def env(self) -> str:
        return "HOTPATH_" + self.flag[2:].replace("-", "_").upper()

    @property
    def dest(self) -> str:
        return self.path.replace(".", "__")


_FLAG_RENAMES = {
    "upstream.mode": "upstream",
    "upstream.testnet": "testnet",
    "upstream.ws_url": "bybit_ws_url",
    "upstream.rest_url": "bybit_rest_url",
    "redis.server_binary": "redis_server",
}

OPTIONS: tuple[Option, ...] = (
    Option("redis.url", "Redis URL (redis://, rediss://, unix://). Empty: start an embedded redis-server"),
    Option("redis.namespace", "prefix of every Redis channel and key hotpath uses"),
    Option("redis.server_binary", "redis-server binary for the embedded Redis"),
    Option("redis.publish_batch", "PUBLISH commands the ingest queues before it writes them to "
           "Redis without waiting for the end of the event-loop iteration: the most upstream "
           "messages one message waits for"),
    Option("upstream.mode", "bybit: the real exchange; sim: start the built-in Bybit simulator"),
    Option("upstream.testnet", "use Bybit testnet endpoints instead of mainnet"),
    Option("upstream.ws_url", "Bybit public WebSocket URL (overrides --testnet)"),
    Option("upstream.rest_url", "Bybit REST base URL (overrides --testnet)"),
    Option("upstream.symbols", "comma-separated symbols to serve (empty: every trading USDT perpetual)"),
    Option("upstream.topics_per_connection", "upstream topics per Bybit WebSocket connection"),
    Option("upstream.eager", "comma-separated stream templates kept subscribed for every symbol "
           "besides tickers, e.g. orderbook:50,trade,kline:1m (others follow client demand)"),
    Option("upstream.linger", "seconds a topic nobody wants stays subscribed upstream"),
    Option("upstream.raw", "also publish every upstream message unchanged to raw channels"),
    Option("upstream.raw_prefix", "prefix of the raw channels (+ ticker, orderbook, trades, "
           "liquidations, kline)"),
    Option("upstream.instruments_refresh", "seconds between instrument list refreshes"),
    Option("upstream.connect_budget", "new upstream connections allowed per --connect-window"),
    Option("upstream.connect_window", "seconds of the upstream connection budget window"),
    Option("upstream.connect_spacing", "minimum seconds between new upstream connections"),
    Option("upstream.book_stale_after", "seconds without a message before an order book is "
           "resubscribed (0: never)"),
    Option("upstream.ping_interval", "seconds between pings on each upstream connection"),
    Option("upstream.stale_after", "seconds without any upstream message before a connection is replaced"),
    Option("upstream.reconnect_max_delay", "cap of the upstream reconnect backoff, seconds"),
    Option("upstream.sim_symbols", "with --upstream sim: number of simulated USDT perpetuals"),
    Option("upstream.sim_seed", "with --upstream sim: random seed of the simulated market"),
    Option("gateway.host", "address the gateway listens on"),
    Option("gateway.port", "port of the WebSocket and HTTP endpoints (shared by all workers)"),
    Option("gateway.workers", "gateway worker processes (0: one per CPU)"),
    Option("gateway.max_clients", "WebSocket clients per node; beyond it the upgrade gets HTTP 503"),
    Option("gateway.max_subscriptions", "streams one client may subscribe to"),
    Option("gateway.read_buffer_size", "initial read buffer per client connection, bytes"),
    Option("gateway.max_frame_size", "largest inbound client frame, bytes (larger: close 1009)"),
    Option("gateway.listen_backlog", "connections each worker's listener queues before accepting "
           "them (the kernel caps it at net.core.somaxconn)"),
    Option("gateway.max_ops_per_second", "subscribe/unsubscribe ops per second per client (beyond: 429)"),
    Option("gateway.max_messages_per_second", "inbound messages per second per client (beyond: 429)"),
    Option("gateway.idle_timeout", "seconds without any client message (a WebSocket ping counts) "
           "before close 1001"),
    Option("gateway.send_buffer_soft", "unsent bytes per client beyond which ticker and order-book "
           "updates are held back and replaced by a fresh snapshot once drained"),
    Option("gateway.send_buffer_hard", "unsent bytes per client beyond which it is closed 1008"),
    Option("gateway.slow_consumer_timeout", "seconds a client may stay above the soft bound "
           "before it is closed 1008"),
    Option("gateway.max_connections_per_ip", "WebSocket connections per client IP (0: no limit)"),
    Option("gateway.trusted_proxies", "comma-separated proxy IPs whose X-Forwarded-For is believed"),
    Option("gateway.allowed_origins", "comma-separated allowed Origin values (empty: any)"),
    Option("gateway.flush_window_ms", "hold frames this many ms so more go out per write "
           "(0: write at the end of each Redis read)"),
    Option("gateway.stream_linger", "seconds a worker stays subscribed to an unwanted stream"),
    Option("gateway.snapshot_timeout", "seconds to wait for a stream snapshot before asking again"),
    Option("gateway.shutdown_grace", "seconds a stopping node keeps serving while /health says 503"),
    Option("gateway.shutdown_window", "seconds over which a stopping node spreads its client closes"),
    Option("gateway.socket_send_buffer", "kernel send buffer (SO_SNDBUF) of each client socket, "
           "bytes (0: the kernel's default)"),
    Option("gateway.auth", "client authentication: none, secret (a shared token) or jwt "
           "(HS256, with expiry); see the README's Security model"),
    Option("gateway.auth_secret", "the shared token (--auth secret) or the HS256 key (--auth jwt), "
           "at least 32 bytes; prefer --auth-secret-file (argv is visible in ps)"),
    Option("gateway.auth_secret_file", "file holding the auth secret (surrounding whitespace "
           "ignored)"),
    Option("gateway.auth_timeout", "seconds a client may take to authenticate before close 4001"),
    Option("gateway.auth_leeway", "seconds of clock skew allowed on a JWT's exp and nbf"),
    Option("schema.compat", "client schema compatibility: '' or 'mudrex' (stream prefix and source)"),
    Option("schema.stream_prefix", "prefix of the 'stream' field in client messages"),
    Option("schema.source", "'source' field of client messages"),
    Option("log.level", "log level: debug, info, warning, error"),
    Option("log.format", "log format: text or json"),
)

_BY_ENV = {o.env: o for o in OPTIONS}


def _default(path: str) -> Any:
    section, field = path.split(".")
    return getattr(getattr(Config(), section), field)


def _show_default(path: str) -> str:
    value = _default(path)
    if isinstance(value, tuple):
        return ",".join(value) or "(all)"
    if value == "":
        return "(empty)"
    return str(value).lower() if isinstance(value, bool) else str(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every option as a flag; unset flags stay None so env and defaults apply."""
    group = parser.add_argument_group("configuration (flag > HOTPATH_* variable > default)")
    for opt in OPTIONS:
        default = _default(opt.path)
        help_text = f"{opt.help} [env {opt.env}; default {_show_default(opt.path)}]"
        if isinstance(default, bool):
            group.add_argument(opt.flag, dest=opt.dest, action="store_const", const="true",
                               default=None, help=help_text)
        else:
            group.add_argument(opt.flag, dest=opt.dest, default=None, help=help_text,
                               metavar=opt.flag[2:].upper().replace("-", "_"))


def _coerce(path: str, raw: str) -> Any:
    if isinstance(_default(path), tuple):
        items = [s.strip() for s in raw.split(",") if s.strip()]
        return [s.upper() for s in items] if path == "upstream.symbols" else items
    return raw


def load(args: argparse.Namespace | None = None,
         environ: Mapping[str, str] | None = None) -> Config:
    """Build the Config: CLI flag > HOTPATH_* > default. Raises ConfigError."""
    environ = os.environ if environ is None else environ
    unknown = sorted(k for k in environ if k.startswith("HOTPATH_") and k not in _BY_ENV
                     and k != compiled.ENV)  # a build setting (setup.py), harmless here
    if unknown:
        known = ", ".join(sorted(_BY_ENV))
        raise ConfigError(f"unknown environment variable(s) {', '.join(unknown)}; known: {known}")
    tree: dict[str, dict[str, Any]] = {}
    for opt in OPTIONS:
        raw = getattr(args, opt.dest, None) if args is not None else None
        if raw is None:
            raw = environ.get(opt.env)
        if raw is None:
            continue
        section, field = opt.path.split(".")
        tree.setdefault(section, {})[field] = _coerce(opt.path, raw)
    try:
        config = msgspec.convert(tree, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(_explain(str(exc))) from None
    config = _with_secret_file(config)
    _validate(config)
    return config


def read_secret(path: str) -> str:
    """The secret in the file at ``path``, without surrounding whitespace. Raises ConfigError."""
    try:
        with open(path, encoding="utf-8") as f:
            secret = f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--auth-secret-file: cannot read {path}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    if not secret:
        raise ConfigError(f"--auth-secret-file: {path} is empty")
    return secret


def _with_secret_file(config: Config) -> Config:
    g = config.gateway
    if not g.auth_secret_file:
        return config
    if g.auth_secret:
        raise ConfigError("give --auth-secret or --auth-secret-file, not both")
    gateway = msgspec.structs.replace(g, auth_secret=read_secret(g.auth_secret_file))
    return msgspec.structs.replace(config, gateway=gateway)


def _explain(message: str) -> str:
    # msgspec says "... - at `$.gateway.port`"; name the flag and variable instead.
    for opt in OPTIONS:
        if message.endswith(f"`$.{opt.path}`"):
            return f"{opt.flag} / {opt.env}: {message.rsplit(' - at ', 1)[0]}"
    return message


def _validate(config: Config) -> None:
    g = config.gateway
    checks: Sequence[tuple[bool, str]] = (
        (0 <= g.port <= 65535, "--port must be 0..65535"),
        (g.workers >= 0, "--workers must be >= 0"),
        (g.max_clients > 0, "--max-clients must be > 0"),
        (g.max_subscriptions > 0, "--max-subscriptions must be > 0"),
        (g.max_frame_size >= 128, "--max-frame-size must be >= 128"),
        (g.listen_backlog >= 1, "--listen-backlog must be >= 1"),
        (g.max_ops_per_second > 0 and g.max_messages_per_second > 0,
         "--max-ops-per-second and --max-messages-per-second must be > 0"),
        (0 < g.send_buffer_soft < g.send_buffer_hard,
         "--send-buffer-soft must be > 0 and below --send-buffer-hard"),
        (g.max_connections_per_ip >= 0, "--max-connections-per-ip must be >= 0"),
        (0 <= g.flush_window_ms <= 1000, "--flush-window-ms must be 0..1000"),
        (g.auth == "none" or bool(g.auth_secret),
         f"--auth {g.auth} needs a secret: --auth-secret-file FILE (or --auth-secret, "
         "HOTPATH_AUTH_SECRET)"),
        (not g.auth_secret or len(g.auth_secret.encode()) >= MIN_SECRET,
         f"the auth secret must be at least {MIN_SECRET} bytes (e.g. openssl rand -hex 32)"),
        (g.auth_timeout > 0 and g.auth_leeway >= 0,
         "--auth-timeout must be > 0 and --auth-leeway >= 0"),
        (config.upstream.topics_per_connection > 0, "--upstream-topics-per-connection must be > 0"),
        (config.upstream.ping_interval > 0, "--ping-interval must be > 0"),
        (config.upstream.connect_budget > 0, "--connect-budget must be > 0"),
        (all(_eager_ok(t) for t in config.upstream.eager),
         "--eager takes stream templates like orderbook:50, trade, kline:1m, liquidation"),
        (config.redis.publish_batch >= 1, "--redis-publish-batch must be >= 1"),
        (bool(config.redis.namespace) and ":" not in config.redis.namespace,
         "--redis-namespace must be non-empty and contain no ':'"),
    )
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def _eager_ok(template: str) -> bool:
    from hotpath.protocol import streams
    try:
        streams.parse(f"{template}:BTCUSDT")
    except streams.StreamError:
        return False
    return True


def to_json(config: Config) -> bytes:
    return msgspec.json.encode(config)


def from_json(data: bytes) -> Config:
    return msgspec.json.decode(data, type=Config)
