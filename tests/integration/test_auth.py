"""Optional client authentication over real sockets: ?token= at the upgrade, the first
message {"op":"auth"}, the auth timeout, tokens that expire while connected, and the
shared-secret mode. Every node here is a real ``hotpath serve`` tree."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from urllib.parse import quote

import pytest
import websockets

from hotpath.client import HotpathClient
from hotpath.gateway.auth import make_token
from tests.helpers import ROOT, Client, Node, http_get, wait_for

pytestmark = pytest.mark.integration

SECRET = "s3cret-" + "x" * 40
CLOSE_UNAUTHORIZED = 4001
AUTH_TIMEOUT = 3.0


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("auth") / "secret"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    return path


def _start(redis_url, sim, tmp_path_factory, extra, env=None):
    return Node.start(redis_url=redis_url, sim=sim, namespace="t" + uuid.uuid4().hex[:10],
                      workers=2, log_path=tmp_path_factory.mktemp("node") / "serve.log",
                      extra=extra, env=env)


@pytest.fixture(scope="module")
def jwt_node(redis_url, sim, secret_file, tmp_path_factory):
    extra = ["--auth", "jwt", "--auth-secret-file", str(secret_file),
             "--auth-timeout", str(AUTH_TIMEOUT), "--auth-leeway", "0"]
    with _start(redis_url, sim, tmp_path_factory, extra) as node:
        yield node


@pytest.fixture(scope="module")
def secret_node(redis_url, sim, tmp_path_factory):
    env = {"HOTPATH_AUTH": "secret", "HOTPATH_AUTH_SECRET": SECRET}  # the environment way
    with _start(redis_url, sim, tmp_path_factory, [], env) as node:
        yield node


def _token(ttl: float = 3600, key: str = SECRET) -> str:
    return make_token(key, ttl, claims={"sub": "test"})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _alg_none() -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    claims = _b64(json.dumps({"exp": int(time.time()) + 3600}).encode())
    return f"{header}.{claims}."


def _tampered() -> str:
    head, _, sig = _token().split(".")
    forged = _b64(json.dumps({"sub": "admin", "exp": int(time.time()) + 10**6}).encode())
    return f"{head}.{forged}.{sig}"


async def _closed(client: Client, timeout: float = 15) -> tuple[int, str, list]:
    """Read until the server closes; (code, reason, messages seen before the close)."""
    seen = []
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            seen.append(await client.recv(timeout))
    return client.ws.close_code, client.ws.close_reason, seen


async def _refused_upgrade(url: str) -> tuple[int, dict]:
    with pytest.raises(websockets.InvalidStatus) as exc:
        await websockets.connect(url, open_timeout=10)
    response = exc.value.response
    return response.status_code, json.loads(response.body)


async def _works(client: Client, stream: str = "ticker:BTCUSDT") -> None:
    """The connection is in: a subscribe is answered and the snapshot follows."""
    await client.send({"op": "subscribe", "args": [stream], "req_id": "s"})
    reply = await client.recv_until(lambda m: m.get("op") in ("subscribe", "error"))
    assert reply["op"] == "subscribe" and reply["args"] == [stream], reply
    snapshot = await client.recv_until(lambda m: "stream" in m)
    assert snapshot["type"] == "snapshot"


def _auth_failures(node: Node) -> int:
    status, body = http_get(node.url + "/stats")
    assert status == 200
    return body["totals"]["auth_failures"]


# -- off by default ----------------------------------------------------------------------

async def test_auth_is_off_by_default(node):
    assert http_get(node.url + "/")[1]["auth"] == "none"
    client = await Client.connect(node.ws_url)
    try:
        await _works(client)
        # A client configured with a token still works against an open node.
        await client.send({"op": "auth", "token": "anything", "req_id": 7})
        reply = await client.recv_until(lambda m: m.get("op") in ("auth", "error"))
        assert reply == {"op": "auth", "success": True, "req_id": 7}
    finally:
        await client.close()


# -- ?token= at the upgrade -----------------------------------------------------------------

async def test_query_token_lets_the_client_in(jwt_node):
    assert http_get(jwt_node.url + "/")[1]["auth"] == "jwt"
    client = await Client.connect(f"{jwt_node.ws_url}?token={_token()}")
    try:
        await _works(client)
    finally:
        await client.close()


@pytest.mark.parametrize("make, reason", [
    (lambda: _token(ttl=-30), "token expired"),
    (_alg_none, "token algorithm must be HS256"),
    (_tampered, "bad token signature"),
    (lambda: _token(key="another-key-" + "y" * 32), "bad token signature"),
    (lambda: "not.a.jwt!", "malformed token"),
    (lambda: "", "missing token"),
    (lambda: SECRET, "malformed token"),
])
async def test_bad_query_token_gets_401_at_the_upgrade(jwt_node, make, reason):
    status, body = await _refused_upgrade(f"{jwt_node.ws_url}?token={quote(make())}")
    assert status == 401
    assert body == {"error": "UNAUTHORIZED", "message": f"Unauthorized: {reason}"}


async def test_streams_in_the_url_with_a_query_token(jwt_node):
    client = await Client.connect(f"{jwt_node.ws_url}?streams=ticker:ETHUSDT&token={_token()}")
    try:
        reply = await client.recv()
        assert reply["op"] == "subscribe" and reply["args"] == ["ticker:ETHUSDT"]
        assert (await client.recv())["type"] == "snapshot"
    finally:
        await client.close()


# -- the first message --------------------------------------------------------------------

async def test_first_message_auth(jwt_node):
    token = _token(ttl=600)
    exp = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["exp"]
    client = await Client.connect(jwt_node.ws_url)
    try:
        await client.send({"op": "auth", "token": token, "req_id": "a1"})
        assert await client.recv() == {"op": "auth", "success": True, "expires": exp,
                                       "req_id": "a1"}
        await _works(client)
    finally:
        await client.close()


@pytest.mark.parametrize("make, reason", [
    (lambda: _token(ttl=-30), "token expired"),
    (_tampered, "bad token signature"),
    (_alg_none, "token algorithm must be HS256"),
])
async def test_bad_first_message_token_gets_401_then_close(jwt_node, make, reason):
    client = await Client.connect(jwt_node.ws_url)
    await client.send({"op": "auth", "token": make(), "req_id": 5})
    code, why, seen = await _closed(client)
    assert seen == [{"op": "error", "message": f"Unauthorized: {reason}", "code": 401,
                     "error": "UNAUTHORIZED", "req_id": 5}]
    assert (code, why) == (CLOSE_UNAUTHORIZED, "unauthorized")


@pytest.mark.parametrize("first", [
    {"op": "subscribe", "args": ["ticker:BTCUSDT"], "req_id": 3},
    {"op": "ping", "req_id": 3},
    {"op": "auth", "req_id": 3},  # no token
    "not json",
])
async def test_any_other_first_message_gets_401_then_close(jwt_node, first):
    client = await Client.connect(jwt_node.ws_url)
    await client.send(first)
    with contextlib.suppress(websockets.ConnectionClosed):  # the close may be here already
        await client.send({"op": "auth", "token": _token()})  # too late: ignored
    code, why, seen = await _closed(client)
    assert len(seen) == 1, seen  # no subscribe reply, no data, no pong
    error = seen[0]
    assert (error["op"], error["code"], error["error"]) == ("error", 401, "UNAUTHORIZED")
    assert "authentication required" in error["message"]
    assert (code, why) == (CLOSE_UNAUTHORIZED, "unauthorized")


async def test_no_auth_within_the_timeout_closes(jwt_node):
    client = await Client.connect(jwt_node.ws_url)
    started = time.monotonic()
    code, why, seen = await _closed(client, timeout=AUTH_TIMEOUT + 15)
    assert (code, why, seen) == (CLOSE_UNAUTHORIZED, "auth timeout", [])
    assert time.monotonic() - started >= AUTH_TIMEOUT - 1.0  # not at once: the timeout


async def test_streams_in_the_url_wait_for_auth(jwt_node):
    url = f"{jwt_node.ws_url}?streams=ticker:BTCUSDT,ticker:SOLUSDT"
    client = await Client.connect(url)
    try:
        # Had the URL's streams been subscribed at connect, their reply would come first.
        await client.send({"op": "auth", "token": _token(), "req_id": 1})
        assert (await client.recv())["op"] == "auth"
        reply = await client.recv()
        assert reply["op"] == "subscribe"
        assert reply["args"] == ["ticker:BTCUSDT", "ticker:SOLUSDT"]
        firsts = {}
        while len(firsts) < 2:
            msg = await client.recv()
            firsts.setdefault(msg["stream"], msg["type"])
        assert set(firsts.values()) == {"snapshot"}
    finally:
        await client.close()
    refused = await Client.connect(url)
    await refused.send({"op": "auth", "token": _tampered()})
    code, _, seen = await _closed(refused)
    assert code == CLOSE_UNAUTHORIZED and [m["op"] for m in seen] == ["error"]


# -- expiry while connected -------------------------------------------------------------------

async def test_token_expiring_while_connected_closes_the_client(jwt_node):
    token = _token(ttl=6)  # room for a slow upgrade: it must not expire before that
    exp = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["exp"]
    client = await Client.connect(f"{jwt_node.ws_url}?token={token}")
    await client.send({"op": "subscribe", "args": ["ticker:BTCUSDT"]})
    code, why, seen = await _closed(client, timeout=20)
    assert (code, why) == (CLOSE_UNAUTHORIZED, "token expired")
    assert time.time() >= exp
    assert any(m.get("type") == "snapshot" for m in seen)  # it was served until then


async def test_a_fresh_token_extends_the_connection(jwt_node):
    short = _token(ttl=5)
    exp = json.loads(base64.urlsafe_b64decode(short.split(".")[1] + "=="))["exp"]
    client = await Client.connect(f"{jwt_node.ws_url}?token={short}")
    try:
        await client.send({"op": "auth", "token": _token(ttl=600), "req_id": "refresh"})
        reply = await client.recv()
        assert reply["op"] == "auth" and reply["expires"] > exp + 500
        await client.send({"op": "subscribe", "args": ["ticker:BTCUSDT"]})
        # Read the stream until well past the first token's expiry (and a housekeeping
        # round or two): the connection stays open.
        await client.recv_until(lambda m: "stream" in m and time.time() > exp + 2, timeout=30)
        await client.send({"op": "ping", "req_id": "still"})
        pong = await client.recv_until(lambda m: m.get("op") == "pong")
        assert pong["req_id"] == "still"
    finally:
        await client.close()


async def test_a_bad_fresh_token_closes_the_client(jwt_node):
    client = await Client.connect(f"{jwt_node.ws_url}?token={_token()}")
    await client.send({"op": "auth", "token": _tampered(), "req_id": 9})
    code, why, seen = await _closed(client)
    assert (code, why) == (CLOSE_UNAUTHORIZED, "unauthorized")
    assert [(m["op"], m["code"]) for m in seen] == [("error", 401)]


# -- what stays public, and what is counted --------------------------------------------------

async def test_http_endpoints_stay_public_and_failures_are_counted(jwt_node):
    for path in ("/health", "/stats", "/metrics", "/", "/symbols"):
        assert http_get(jwt_node.url + path)[0] == 200, path
    before = _auth_failures(jwt_node)
    assert (await _refused_upgrade(f"{jwt_node.ws_url}?token={_tampered()}"))[0] == 401
    client = await Client.connect(jwt_node.ws_url)
    await client.send({"op": "ping"})
    await _closed(client)
    wait_for(lambda: _auth_failures(jwt_node) >= before + 2, 10, "auth_failures to count both")
    status, text = http_get(jwt_node.url + "/metrics")
    counted = sum(int(line.split()[-1]) for line in text.splitlines()
                  if line.startswith("hotpath_auth_failures_total{"))
    assert counted >= before + 2


# -- the shared-secret mode -------------------------------------------------------------------

async def test_shared_secret_mode(secret_node):
    client = await Client.connect(f"{secret_node.ws_url}?token={quote(SECRET)}")
    try:
        await _works(client)
    finally:
        await client.close()
    client = await Client.connect(secret_node.ws_url)
    try:
        await client.send({"op": "auth", "token": SECRET, "req_id": 1})
        assert await client.recv() == {"op": "auth", "success": True, "req_id": 1}
        await _works(client, "ticker:ETHUSDT")
    finally:
        await client.close()
    for bad in (SECRET + "x", SECRET[:-1], make_token(SECRET, 60)):
        status, body = await _refused_upgrade(f"{secret_node.ws_url}?token={quote(bad)}")
        assert (status, body["message"]) == (401, "Unauthorized: bad token")


# -- the Python client ---------------------------------------------------------------------

async def test_python_client_sends_its_token(jwt_node):
    calls = []

    def fresh() -> str:
        calls.append(1)
        return _token()
    async with HotpathClient(jwt_node.ws_url, token=fresh) as client:
        reply = await client.subscribe(["ticker:BTCUSDT"])
        assert reply.op == "subscribe" and reply.args == ["ticker:BTCUSDT"]
        msg = await asyncio.wait_for(client.__aiter__().__anext__(), 15)
        assert msg.type == "snapshot" and calls == [1]


async def test_python_client_with_a_bad_token_gets_a_401(jwt_node):
    client = HotpathClient(jwt_node.ws_url, token=_tampered(), max_delay=5)
    await client.connect()
    try:
        reply = await client.subscribe(["ticker:BTCUSDT"])
        assert (reply.op, reply.code, reply.error) == ("error", 401, "UNAUTHORIZED")
    finally:
        await client.close()


# -- start-up ------------------------------------------------------------------------------

def test_auth_without_a_secret_fails_at_start_up():
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTPATH_")}
    env["HOTPATH_AUTH"] = "jwt"
    proc = subprocess.run([sys.executable, "-m", "hotpath", "serve"], cwd=ROOT, env=env,
                          capture_output=True, timeout=60)
    assert proc.returncode == 2
    assert b"--auth jwt needs a secret" in proc.stderr


def test_hotpath_watch_with_a_token_file(jwt_node, tmp_path):
    import subprocess
    import sys
    token_file = tmp_path / "token"
    token_file.write_text(_token() + "\n")
    cmd = [sys.executable, "-m", "hotpath", "watch", "ticker:BTCUSDT", "--url", jwt_node.ws_url,
           "--seconds", "2"]
    refused = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert "closed by server: 4001" in refused.stderr
    result = subprocess.run(cmd + ["--token-file", str(token_file)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert '"op":"auth"' in lines[0] and '"success":true' in lines[0]
    assert any(" snapshot " in line and "ticker.BTCUSDT" in line for line in lines[1:])
