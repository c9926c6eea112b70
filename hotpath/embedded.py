"""Child programs the supervisor may start: a private redis-server and the simulator."""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import IO

log = logging.getLogger("hotpath.supervisor")

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux: have the kernel SIGTERM this process when its parent dies (no orphans
    even when the supervisor is killed with -9)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class MissingBinary(RuntimeError):
    pass


class EmbeddedRedis:
    """A redis-server on a private unix socket: no TCP port, no persistence."""

    def __init__(self, binary: str = "redis-server") -> None:
        path = shutil.which(binary)
        if path is None:
            raise MissingBinary(binary)
        self.binary = path
        self.dir = tempfile.mkdtemp(prefix="hotpath-redis-")
        os.chmod(self.dir, 0o700)
        self.socket_path = os.path.join(self.dir, "redis.sock")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self, timeout: float = 10.0) -> None:
        args = [self.binary, "--port", "0", "--unixsocket", self.socket_path,
                "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                "--dir", self.dir, "--loglevel", "warning",
                # a subscriber that stops reading is cut off rather than eating memory
                "--client-output-buffer-limit", "pubsub 256mb 64mb 60"]
        # Redis logs its banner and warnings to stdout; hotpath logs the lifecycle itself.
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if self._ping():
                log.info("embedded redis-server started (pid %d) at %s", self.process.pid,
                         self.url)
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer within {timeout:.0f}s")

    def _ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(0.5)
                sock.connect(self.socket_path)
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            log.info("embedded redis-server stopped")
        shutil.rmtree(self.dir, ignore_errors=True)


class Simulator:
    """``hotpath sim`` as a child process on a free loopback port."""

    def __init__(self, symbols: int, seed: int, log_level: str, log_format: str) -> None:
        self.args = [sys.executable, "-m", "hotpath", "sim", "--host", "127.0.0.1", "--port",
                     "0", "--symbols", str(symbols), "--seed", str(seed),
                     "--log-level", log_level, "--log-format", log_format]
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, timeout: float = 20.0) -> None:
        self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE,
                                        stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        assert self.process.stdout is not None
        self.port = _read_ready_port(self.process.stdout, timeout)
        log.info("simulator started (pid %d) on 127.0.0.1:%d", self.process.pid, self.port)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v5/public/linear"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            log.info("simulator stopped")


def _read_ready_port(stream: IO[bytes], timeout: float) -> int:
    """Read lines until ``SIM_READY port=N``; the sim's only stdout line."""
    import selectors

    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(deadline - time.monotonic()):
                break
            line = stream.readline()
            if not line:
                raise RuntimeError("simulator exited before it was ready")
            if line.startswith(b"SIM_READY port="):
                return int(line.split(b"=", 1)[1])
    raise RuntimeError(f"simulator not ready within {timeout:.0f}s")
