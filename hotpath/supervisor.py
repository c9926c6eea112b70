"""``hotpath serve``: start the process tree, restart what dies, stop it all cleanly.

    supervisor
      ├── redis-server        (embedded, unless --redis-url)
      ├── hotpath sim         (only with --upstream sim)
      ├── ingest              one process
      └── gateway-0..N-1      each binds the shared port with SO_REUSEPORT

Like uvicorn's Multiprocess: signals are queued and handled by the main loop, dead
children are replaced with backoff, and each shutdown step is time-boxed.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import time
from typing import Any, Callable

import msgspec

from hotpath import config as config_mod
from hotpath.config import Config
from hotpath.embedded import EmbeddedRedis, MissingBinary, Simulator, die_with_parent
from hotpath.gateway.shared import NodeStats

log = logging.getLogger("hotpath.supervisor")

BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
STABLE_AFTER = 30.0  # a child that ran this long restarts with the initial backoff
_spawn = multiprocessing.get_context("spawn")


def _child_main(role: str, config_json: bytes, index: int, node: NodeStats | None,
                node_id: str) -> None:
    """Entry point of a spawned child process."""
    die_with_parent()
    # Ctrl-C reaches the whole process group; the supervisor decides the order of the
    # stop and sends each child SIGTERM itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = config_mod.from_json(config_json)
    if role == "ingest":
        from hotpath.ingest.service import main
        code = main(config)
    else:
        from hotpath.gateway.worker import main as gateway_main
        code = gateway_main(config, index, node, node_id)
    raise SystemExit(code)


class Child:
    """One supervised Python child process (ingest or a gateway worker)."""

    def __init__(self, name: str, role: str, index: int, config: Config,
                 node: NodeStats | None = None, node_id: str = "") -> None:
        self.name = name
        self.role = role
        self.index = index
        self.node = node
        self.node_id = node_id
        self.config_json = config_mod.to_json(config)
        self.process: Any = None
        self.started_at = 0.0
        self.backoff = BACKOFF_START
        self.restart_at = 0.0
        self.restarts = 0

    def start(self) -> None:
        self.process = _spawn.Process(target=_child_main, name=f"hotpath-{self.name}",
                                      args=(self.role, self.config_json, self.index,
                                            self.node, self.node_id))
        self.process.start()
        self.started_at = time.monotonic()
        self.restart_at = 0.0
        log.info("started %s (pid %d)", self.name, self.process.pid)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def died(self, now: float) -> None:
        """Record an unexpected exit and schedule the restart."""
        code = self.process.exitcode
        if now - self.started_at > STABLE_AFTER:
            self.backoff = BACKOFF_START
        self.restart_at = now + self.backoff
        log.error("%s (pid %d) exited with %s; restarting in %.1fs", self.name,
                  self.process.pid, code, self.backoff)
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)
        self.process = None

    def terminate(self) -> None:
        if self.alive:
            os.kill(self.process.pid, signal.SIGTERM)


class Supervisor:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.redis: EmbeddedRedis | None = None
        self.sim: Simulator | None = None
        self.children: list[Child] = []
        self.stop_signal: int | None = None
        self.port_reservation: socket.socket | None = None

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            config = self._start_services(self.config)
            self._start_children(config)
            self._watch()
        finally:
            self._shutdown()
        return 0

    def _start_services(self, config: Config) -> Config:
        if not config.redis.url:
            self.redis = EmbeddedRedis(config.redis.server_binary)
            self.redis.start()
            config = _replace(config, "redis", url=self.redis.url)
        if config.upstream.mode == "sim":
            up = config.upstream
            self.sim = Simulator(up.sim_symbols, up.sim_seed, config.log.level, config.log.format)
            self.sim.start()
            config = _replace(config, "upstream", ws_url=self.sim.ws_url, rest_url=self.sim.rest_url)
        if config.gateway.port == 0:
            self.port_reservation = _reserve_port(config.gateway.host)
            config = _replace(config, "gateway",
                              port=self.port_reservation.getsockname()[1])
        return config

    def _start_children(self, config: Config) -> None:
        workers = config.worker_count()
        node = NodeStats(workers)
        node_id = f"{socket.gethostname()}:{config.gateway.port}"
        self.children.append(Child("ingest", "ingest", 0, config))
        for i in range(workers):
            self.children.append(Child(f"gateway-{i}", "gateway", i, config, node, node_id))
        for child in self.children:
            child.start()
        g = config.gateway
        log.info("hotpath serving on ws://%s:%d/ws with %d gateway workers (upstream %s)",
                 g.host, g.port, config.worker_count(), config.ws_url)

    def _watch(self) -> None:
        while self.stop_signal is None:
            sentinels = [c.process.sentinel for c in self.children if c.process is not None]
            multiprocessing.connection.wait(sentinels, timeout=0.25)
            now = time.monotonic()
            for child in self.children:
                if child.process is not None and not child.process.is_alive():
                    child.died(now)
                elif child.process is None and self.stop_signal is None and now >= child.restart_at:
                    child.restarts += 1
                    log.warning("restarting %s (restart #%d)", child.name, child.restarts)
                    child.start()
            self._check_services()

    def _check_services(self) -> None:
        for name, service in (("redis-server", self.redis), ("simulator", self.sim)):
            process = service.process if service is not None else None
            if process is not None and process.poll() is not None and self.stop_signal is None:
                log.error("%s exited with %s; restarting it", name, process.returncode)
                try:
                    service.start()  # type: ignore[union-attr]
                except RuntimeError as exc:
                    log.error("cannot restart %s: %s", name, exc)

    def _shutdown(self) -> None:
        name = signal.Signals(self.stop_signal).name if self.stop_signal else "error"
        log.info("stopping (%s): %d children", name, len(self.children))
        g = self.config.gateway
        # Gateways first: while they drain (grace, then spread closes) the ingest and
        # Redis must keep feeding them.
        gateways = [c for c in self.children if c.role == "gateway"]
        others = [c for c in self.children if c.role != "gateway"]
        self._stop(gateways, g.shutdown_grace + g.shutdown_window + 10.0)
        self._stop(others, 10.0)
        if self.sim is not None:
            self.sim.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.port_reservation is not None:
            self.port_reservation.close()
        _stop_resource_tracker()
        log.info("stopped")

    @staticmethod
    def _stop(children: list[Child], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for child in children:
            child.terminate()
        for child in children:
            if child.process is None:
                continue
            child.process.join(max(0.1, deadline - time.monotonic()))
            if child.process.is_alive():
                log.error("%s did not stop in time; killing it", child.name)
                child.process.kill()
                child.process.join(5)


def _stop_resource_tracker() -> None:
    """multiprocessing's resource tracker (it watches the shared stats table) would
    outlive us by a moment; stop it and wait, so no process is left behind at exit."""
    from multiprocessing import resource_tracker
    try:
        resource_tracker._resource_tracker._stop()  # noqa: SLF001 - no public way to stop it
    except (AttributeError, OSError, ChildProcessError):
        pass


def _replace(config: Config, section: str, **changes: Any) -> Config:
    part = msgspec.structs.replace(getattr(config, section), **changes)
    return msgspec.structs.replace(config, **{section: part})


def _reserve_port(host: str) -> socket.socket:
    """Hold a free port (bound, not listening) that the workers then share."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock


def serve(config: Config, on_missing_redis: Callable[[str], None]) -> int:
    """Run the whole process tree until SIGTERM/SIGINT. Exit code 0 on a clean stop."""
    try:
        return Supervisor(config).run()
    except MissingBinary as exc:
        on_missing_redis(str(exc))
        return 2
    except Exception:
        log.exception("supervisor failed")
        return 1
