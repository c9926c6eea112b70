"""Start and stop what a benchmark needs: redis-server, the Bybit simulator,
``hotpath serve``, the baseline server and the C floor. Every child dies with us
(``PR_SET_PDEATHSIG``), every wait is time-boxed, and :class:`Stack` stops whatever it
started, in reverse order, even when a step fails."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import psutil

from hotpath.embedded import die_with_parent

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


class StackError(RuntimeError):
    """A process did not start, or died while it was needed."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def http_json(url: str, timeout: float = 3.0) -> tuple[int, Any]:
    """(status, decoded JSON body); (0, None) when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, None
    except (OSError, ValueError):
        return 0, None


def wait_until(check: Callable[[], Any], timeout: float, what: str,
               proc: Proc | None = None, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and not proc.alive:
            raise StackError(f"{proc.name} exited ({proc.popen.returncode}) while waiting for "
                             f"{what}; log: {proc.log_path}\n{proc.tail()}")
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Proc:
    """A child process with its log file."""

    def __init__(self, name: str, args: list[str], log_dir: Path,
                 env: dict[str, str] | None = None, stdout_pipe: bool = False,
                 cwd: Path = ROOT, cpus: set[int] | None = None) -> None:
        self.name = name
        self.args = args
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")  # this run only: restarts are read from it

        def before_exec() -> None:
            die_with_parent()
            if cpus:  # set before exec: every thread and child process inherits it
                os.sched_setaffinity(0, cpus)

        self.popen = subprocess.Popen(
            args, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self._log, stderr=self._log,
            env=env, preexec_fn=before_exec)
        self.pid = self.popen.pid
        self.crashed = False  # set by stop() when it exited before we asked it to

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def read_line(self, prefix: bytes, timeout: float) -> bytes:
        """The first stdout line starting with ``prefix`` (needs ``stdout_pipe``)."""
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.popen.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not sel.select(max(0.0, deadline - time.monotonic())):
                    break
                line = self.popen.stdout.readline()
                if not line:
                    raise StackError(f"{self.name} exited before printing {prefix!r}:\n"
                                     f"{self.tail()}")
                if line.startswith(prefix):
                    return line.strip()
        raise StackError(f"{self.name}: no {prefix!r} line within {timeout:.0f}s")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait, then SIGKILL the whole tree. Returns the exit code."""
        if self.popen.poll() is not None:
            self.crashed = self.popen.returncode not in (0, -signal.SIGTERM)
        else:
            try:
                kids = psutil.Process(self.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                kids = []
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                for kid in kids:
                    try:
                        kid.kill()
                    except psutil.NoSuchProcess:
                        pass
                self.popen.kill()
                self.popen.wait(5)
        if self.popen.stdout is not None:
            self._log.write(self.popen.stdout.read())  # what it printed after the ready line
            self.popen.stdout.close()
        self._log.close()
        return int(self.popen.returncode)


class Stack:
    """The processes of one benchmark phase; a context manager that stops them all."""

    def __init__(self, log_dir: Path, hotpath_home: Path | None = None) -> None:
        """``hotpath_home``: run ``python -m hotpath`` from this source tree (e.g. one
        made by :func:`build_compiled`) instead of this checkout."""
        self.log_dir = log_dir
        self.hotpath_home = hotpath_home or ROOT
        self.procs: list[Proc] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="hotpath-bench-"))

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(self, name: str, args: list[str], **kw: Any) -> Proc:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOTPATH_")}
        if args[1:3] == ["-m", "hotpath"]:  # the working directory comes first on sys.path
            kw.setdefault("cwd", self.hotpath_home)
        proc = Proc(name, args, self.log_dir, env=env, **kw)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> int:
        code = proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)
        return code

    def stop_all(self) -> None:
        while self.procs:
            self.stop(self.procs[-1])
        shutil.rmtree(self.tmp, ignore_errors=True)

    def check_alive(self) -> list[str]:
        """Names of started processes that have died."""
        return [p.name for p in self.procs if not p.alive]

    # -- the components -----------------------------------------------------------------

    def redis(self) -> tuple[Proc, str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError("redis-server is not installed (apt-get install redis-server)")
        sock = self.tmp / "redis.sock"
        proc = self.start("redis", [
            binary, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
            "--save", "", "--appendonly", "no", "--dir", str(self.tmp),
            "--loglevel", "warning", "--client-output-buffer-limit", "pubsub 256mb 64mb 60"])
        wait_until(lambda: _redis_ping(sock), 10, "redis-server to answer PING", proc)
        return proc, f"unix://{sock}"

    def sim(self, args: list[str]) -> tuple[Proc, int]:
        proc = self.start("sim", [sys.executable, "-m", "hotpath", "sim", "--host", "127.0.0.1",
                                  "--port", "0", "--log-level", "warning", *args],
                          stdout_pipe=True)
        line = proc.read_line(b"SIM_READY port=", 60)
        return proc, int(line.split(b"=", 1)[1])

    def hotpath(self, redis_url: str, sim_port: int, namespace: str, workers: int,
                extra: list[str] | None = None, timeout: float = 60,
                cpus: set[int] | None = None) -> tuple[Proc, int]:
        """``cpus``: the CPUs the whole node (supervisor, ingest, workers) may run on."""
        port = free_port()
        proc = self.start("hotpath", [
            sys.executable, "-m", "hotpath", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--redis-url", redis_url, "--redis-namespace", namespace,
            "--bybit-ws-url", f"ws://127.0.0.1:{sim_port}/v5/public/linear",
            "--bybit-rest-url", f"http://127.0.0.1:{sim_port}", "--shutdown-window", "2",
            *(extra or [])], cpus=cpus)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_json(url + "/health", 1)[0] == 200, timeout,
                   "hotpath /health to answer 200", proc)
        wait_until(lambda: _all_workers_up(url, workers), timeout,
                   "every gateway worker to report its pid", proc)
        return proc, port

    def baseline(self, redis_url: str, namespace: str, processes: int,
                 extra: list[str] | None = None) -> tuple[Proc, int]:
        port = free_port()
        proc = self.start("baseline", [
            sys.executable, str(BENCH / "baseline_server.py"), "--host", "127.0.0.1",
            "--port", str(port), "--redis-url", redis_url, "--redis-namespace", namespace,
            "--processes", str(processes), *(extra or [])])
        wait_until(lambda: _tcp_open(port) and _baseline_ready(proc, processes), 30,
                   "the baseline server to listen", proc)
        return proc, port

    def floor(self, binary: Path, args: list[str]) -> tuple[Proc, int]:
        port = free_port()
        proc = self.start("floor", [str(binary), "--port", str(port), *args], stdout_pipe=True)
        proc.read_line(b"FLOOR_READY", 10)
        return proc, port


def _redis_ping(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(0.5)
            s.connect(str(path))
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _all_workers_up(url: str, workers: int) -> bool:
    status, body = http_json(url + "/stats", 1)
    if status != 200 or not body:
        return False
    pids = [w.get("pid") for w in body.get("workers", [])]
    return len(pids) == workers and all(pids)


def _baseline_ready(proc: Proc, processes: int) -> bool:
    proc._log.flush()
    try:
        text = proc.log_path.read_text(errors="replace")
    except OSError:
        return False
    return text.count("baseline worker listening") >= processes


def compile_floor(out_dir: Path, flags: tuple[str, ...] = ()) -> Path:
    """Build bench/floor.c with the system compiler (cc, -O2, plus ``flags``)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise StackError("no C compiler found (apt-get install gcc)")
    out = out_dir / "floor"
    result = subprocess.run([cc, "-O2", "-Wall", *flags, "-o", str(out),
                             str(BENCH / "floor.c"), "-lm"],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise StackError(f"compiling floor.c failed:\n{result.stderr}")
    return out


def build_compiled(out_dir: Path) -> Path:
    """A copy of this checkout's ``hotpath`` package with the modules listed in
    hotpath/compiled.py compiled by mypyc, built in place; returns the tree's root, to
    run ``python -m hotpath`` from. Needs mypy (the dev extra) and a C compiler."""
    try:
        import mypyc  # noqa: F401
    except ImportError:
        raise StackError("mypy is not installed (pip install -e '.[dev]')") from None
    home = out_dir / "hotpath-compiled"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copytree(ROOT / "hotpath", home / "hotpath",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, home / name)
    env = {**os.environ, "HOTPATH_COMPILE": "1"}
    result = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
                            cwd=home, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise StackError(f"compiling hotpath with mypyc failed:\n{result.stdout[-3000:]}"
                         f"{result.stderr[-3000:]}")
    return home
