// A real `hotpath serve --upstream sim` for the JS client tests, and small waiting helpers.

import { spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const PYTHON = process.env.PYTHON || "python3";

/** A TCP port nobody listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Poll `check` until it returns something truthy. */
export async function waitFor(check, what, timeout = 10000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const result = await check();
    if (result) return result;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** The next `name` event of `client` that satisfies `predicate`. */
export function nextEvent(client, name, predicate = () => true, timeout = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off(name, listener);
      reject(new Error(`no matching '${name}' event within ${timeout} ms`));
    }, timeout);
    const listener = (event) => {
      if (!predicate(event)) return;
      clearTimeout(timer);
      client.off(name, listener);
      resolve(event);
    };
    client.on(name, listener);
  });
}

/** `hotpath serve --upstream sim` on 127.0.0.1:port: embedded Redis, simulator, 1 worker. */
export class Server {
  constructor(port, extra) {
    this.port = port;
    this.extra = extra;
    this.output = "";
    this.proc = null;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  /** @param {number} [port] default: a free one @param {string[]} [extra] more flags */
  static async start(port, extra = []) {
    const server = new Server(port || (await freePort()), extra);
    await server.start();
    return server;
  }

  async start() {
    const env = Object.fromEntries(Object.entries(process.env)
      .filter(([k]) => !k.startsWith("HOTPATH_"))); // hotpath refuses unknown HOTPATH_*
    const args = ["-m", "hotpath", "serve", "--upstream", "sim", "--host", "127.0.0.1",
      "--port", String(this.port), "--workers", "1", "--sim-symbols", "20",
      "--shutdown-window", "0.5", ...this.extra];
    this.proc = spawn(PYTHON, args, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    const keep = (chunk) => { this.output = (this.output + chunk).slice(-20000); };
    this.proc.stdout.on("data", keep);
    this.proc.stderr.on("data", keep);
    this.exited = new Promise((resolve) => this.proc.once("exit", resolve));
    await waitFor(() => this._healthy(), "/health to answer 200", 30000);
  }

  async _healthy() {
    if (this.proc.exitCode !== null) {
      throw new Error(`hotpath serve exited ${this.proc.exitCode}:\n${this.output}`);
    }
    try {
      return (await fetch(`${this.url}/health`)).status === 200;
    } catch {
      return false;
    }
  }

  /** SIGTERM, then SIGKILL after 15 s; resolves when the process is gone. */
  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    this.proc.kill("SIGTERM");
    const killer = setTimeout(() => this.proc.kill("SIGKILL"), 15000);
    await this.exited;
    clearTimeout(killer);
  }
}

/** The first snapshot of `stream` seen by a plain WebSocket (independent of the client). */
export function rawSnapshot(wsUrl, stream, timeout = 10000) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl);
    const timer = setTimeout(() => {
      ws.close();
      reject(new Error(`no snapshot of ${stream}`));
    }, timeout);
    ws.onopen = () => ws.send(JSON.stringify({ op: "subscribe", args: [stream] }));
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type !== "snapshot") return;
      clearTimeout(timer);
      ws.close();
      resolve(msg);
    };
  });
}
