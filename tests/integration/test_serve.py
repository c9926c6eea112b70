"""``hotpath serve`` as a process tree: start-up, restart, clean stop, embedded Redis."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import psutil
import pytest

from tests.helpers import ROOT, Client, Node, wait_for

pytestmark = pytest.mark.integration


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _roles(node: Node) -> dict[str, list[psutil.Process]]:
    roles: dict[str, list[psutil.Process]] = {}
    for proc in node.descendants():
        try:
            cmd = " ".join(proc.cmdline())
        except psutil.NoSuchProcess:
            continue
        role = ("redis" if "redis-server" in cmd else "sim" if " sim " in cmd + " "
                else "python")
        roles.setdefault(role, []).append(proc)
    return roles


async def test_sigterm_closes_clients_with_1001_and_leaves_no_process(node):
    client = await Client.connect(node.ws_url)
    await client.send({"op": "ping"})
    await client.recv()
    pids = [p.pid for p in node.descendants()]
    assert len(pids) >= 3  # ingest + 2 gateway workers (+ multiprocessing helper)
    node.proc.send_signal(signal.SIGTERM)
    with pytest.raises(Exception):
        while True:
            await client.recv(timeout=15)
    assert client.ws.close_code == 1001
    assert client.ws.close_reason == "going away"
    assert node.proc.wait(30) == 0
    alive = [pid for pid in pids if _running(pid)]
    assert alive == [], f"left behind: {alive}"


async def test_crashed_gateway_worker_is_restarted_and_logged(node):
    workers = [p for p in node.descendants() if "spawn_main" in " ".join(p.cmdline())]
    assert len(workers) == 3  # ingest + two gateways
    victim = workers[-1]
    victim.kill()
    wait_for(lambda: "restarting gateway-1" in node.log() or "restarting gateway-0" in node.log()
             or "restarting ingest" in node.log(), 15, "the restart to be logged")
    assert f"pid {victim.pid}) exited with -9" in node.log()
    wait_for(lambda: len([p for p in node.descendants()
                          if "spawn_main" in " ".join(p.cmdline())]) == 3,
             15, "three children again")
    node.wait_healthy()


def test_embedded_redis_starts_and_stops_with_the_supervisor(sim, namespace, tmp_path):
    with Node.start(redis_url=None, sim=sim, namespace=namespace, workers=1,
                    log_path=tmp_path / "serve.log") as node:
        redis = [p for p in node.descendants() if p.name() == "redis-server"]
        assert len(redis) == 1
        listening = [c for c in redis[0].net_connections(kind="all")
                     if c.status in (psutil.CONN_LISTEN, psutil.CONN_NONE) and c.laddr]
        assert [c for c in listening if c.family != socket.AF_UNIX] == []  # no TCP at all
        sock = next(c.laddr for c in listening if c.family == socket.AF_UNIX)
        assert os.stat(sock).st_mode & 0o077 == 0
        assert os.stat(os.path.dirname(sock)).st_mode & 0o077 == 0
        redis_pid = redis[0].pid
        assert node.stop() == 0
    assert not psutil.pid_exists(redis_pid) or \
        psutil.Process(redis_pid).status() == psutil.STATUS_ZOMBIE
    assert not os.path.exists(sock)


def test_missing_redis_binary_exits_2_with_advice(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "hotpath", "serve", "--redis-server", "/nonexistent/redis-server",
         "--port", "0"], capture_output=True, text=True, timeout=30, cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("HOTPATH_")})
    assert result.returncode == 2
    assert "apt-get install redis-server" in result.stderr
    assert "--redis-url" in result.stderr


def test_unknown_hotpath_variable_is_an_error():
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTPATH_")}
    env["HOTPATH_PROT"] = "9000"
    result = subprocess.run([sys.executable, "-m", "hotpath", "serve"], capture_output=True,
                            text=True, timeout=30, cwd=ROOT, env=env)
    assert result.returncode == 2
    assert "HOTPATH_PROT" in result.stderr


def test_unreachable_upstream_health_503_names_it(redis_url, namespace, tmp_path):
    from tests.helpers import free_port, http_get
    dead = free_port()  # nothing listens there: the ingest keeps retrying
    extra = ["--bybit-ws-url", f"ws://127.0.0.1:{dead}/v5/public/linear",
             "--bybit-rest-url", f"http://127.0.0.1:{dead}", "--log-format", "json"]
    with Node.start(redis_url=redis_url, sim=None, namespace=namespace, workers=1,
                    log_path=tmp_path / "serve.log", extra=extra, wait_healthy=False) as node:
        def answered():
            try:
                status, body = http_get(node.url + "/health", timeout=1)
            except OSError:
                return None
            return (status, body) if body.get("ingest_age") is not None else None
        status, body = wait_for(answered, 20, "/health with an ingest report")
        assert status == 503 and body["down"] == ["upstream"]
        wait_for(lambda: "instrument list" in node.log(), 20, "a REST retry to be logged")
        assert node.proc.poll() is None  # never exits because the upstream is unreachable
    lines = [line for line in node.log().splitlines() if line.strip()]
    import json
    records = [json.loads(line) for line in lines]  # --log-format json: every line is JSON
    assert {"ts", "level", "process", "logger", "msg"} <= set(records[0])
    assert any(r["process"] == "ingest" and "retrying" in r["msg"] for r in records)


async def test_symbols_flag_narrows_the_universe(redis_url, sim, namespace, tmp_path):
    with Node.start(redis_url=redis_url, sim=sim, namespace=namespace, workers=1,
                    log_path=tmp_path / "serve.log",
                    extra=["--symbols", "btcusdt,ETHUSDT,NOSUCHUSDT"]) as node:
        client = await Client.connect(node.ws_url)
        try:
            await client.send({"op": "subscribe", "args": ["ticker:ETHUSDT", "ticker:SOLUSDT"]})
            reply = await client.recv()
            assert reply["args"] == ["ticker:ETHUSDT"]
            assert reply["rejected"] == [{"arg": "ticker:SOLUSDT",
                                          "reason": "Unknown symbol 'SOLUSDT'"}]
        finally:
            await client.close()
        assert "ignoring 1 unknown symbol(s): NOSUCHUSDT" in node.log()
        assert "serving 2" in node.log()


def test_check_reports_what_it_reaches(redis_url, sim):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTPATH_")}
    good = subprocess.run([sys.executable, "-m", "hotpath", "check", "--redis-url", redis_url,
                           "--bybit-ws-url", sim.ws_url, "--bybit-rest-url", sim.rest_url],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert good.returncode == 0, good.stdout + good.stderr
    lines = good.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["ok"] * 4
    assert "20 trading USDT perpetuals" in good.stdout and "snapshot after" in good.stdout
    bad = subprocess.run([sys.executable, "-m", "hotpath", "check", "--redis-url",
                          "redis://127.0.0.1:1/0", "--bybit-rest-url", "http://127.0.0.1:1"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert bad.returncode == 1
    assert "FAIL redis" in bad.stdout and "FAIL upstream REST" in bad.stdout


def test_version():
    out = subprocess.run([sys.executable, "-m", "hotpath", "--version"], capture_output=True,
                         text=True, timeout=30, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.startswith("hotpath ")
