// The JS client's `token` option against a live `hotpath serve --auth jwt`.
// Run: node --experimental-websocket --test tests/js/

import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { after, afterEach, before, describe, test } from "node:test";

import { HotpathClient } from "../../hotpath/static/client.mjs";
import { Server, nextEvent } from "./live.mjs";

const SECRET = randomBytes(32).toString("hex");
const b64url = (data) => Buffer.from(data).toString("base64url");

/** An HS256 JWT made here, independently of hotpath's own signer. */
function jwt(claims, key = SECRET) {
  const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const input = `${header}.${b64url(JSON.stringify(claims))}`;
  return `${input}.${createHmac("sha256", key).update(input).digest("base64url")}`;
}
const fresh = (ttl = 600) => jwt({ sub: "js", exp: Math.floor(Date.now() / 1000) + ttl });

describe("HotpathClient with a token", () => {
  /** @type {Server} */
  let server;
  let dir;
  /** @type {HotpathClient[]} */
  let clients = [];

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "hotpath-js-auth-"));
    const file = path.join(dir, "secret");
    writeFileSync(file, `${SECRET}\n`, { mode: 0o600 });
    server = await Server.start(0, ["--auth", "jwt", "--auth-secret-file", file]);
  });

  after(async () => {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  afterEach(() => {
    clients.forEach((c) => c.close());
    clients = [];
  });

  function connect(options) {
    const client = new HotpathClient(server.wsUrl,
      { reconnect: { baseDelay: 100, maxDelay: 1000 }, ...options });
    clients.push(client);
    return client;
  }

  test("a good token (from a function) gets data", async () => {
    let calls = 0;
    const token = () => {
      calls += 1;
      return fresh();
    };
    const client = connect({ streams: ["ticker:BTCUSDT"], token });
    const event = await nextEvent(client, "data", (e) => e.type === "snapshot", 15000);
    assert.equal(event.stream, "ticker:BTCUSDT");
    assert.equal(calls, 1);
  });

  test("a bad token is an error event and a 4001 close", async () => {
    const client = connect({ streams: ["ticker:BTCUSDT"], token: fresh(600).slice(0, -2) + "AA",
      autoConnect: false });
    const error = nextEvent(client, "error", (e) => e.code === 401, 15000);
    const closed = nextEvent(client, "disconnected", (e) => e.code === 4001, 15000);
    client.connect();
    assert.equal((await error).error, "UNAUTHORIZED");
    assert.equal((await closed).reason, "unauthorized");
  });

  test("without a token the node refuses the client", async () => {
    const client = connect({ streams: ["ticker:BTCUSDT"], autoConnect: false });
    const error = nextEvent(client, "error", (e) => e.code === 401, 15000);
    client.connect();
    assert.match((await error).message, /authentication required/);
  });
});
