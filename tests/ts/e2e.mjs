// e2e.mjs drives a running gantry dev with the official TypeScript MCP SDK
// client, once over streamable HTTP (bearer token header) and once over
// stdio (spawning `gantry mcp`): it lists the tools, deploys a service,
// waits for get_service to show it running, reads it as a resource, lists
// the prompts, reads service_logs and removes it, asserting on the
// structured content of every result.
//
// Run by e2e/ts_sdk_test.go with Node 22 from scripts/node-tools.sh:
//   GANTRY_ADDR=http://127.0.0.1:PORT/mcp  the MCP endpoint
//   GANTRY_TOKEN=...                        its bearer token
//   GANTRY_BIN=/path/to/gantry              for the stdio transport
//   GANTRY_E2E_IMAGE=host:port/repo:tag     a busybox image
//   GANTRY_NODE_TOOLS=.cache/node           where the SDK is installed
// It prints one JSON summary line and exits non-zero on the first failure.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const addr = env("GANTRY_ADDR");
const token = env("GANTRY_TOKEN");
const gantryBin = env("GANTRY_BIN");
const image = env("GANTRY_E2E_IMAGE");
const tools = env("GANTRY_NODE_TOOLS");
const require = createRequire(join(tools, "package.json"));
const { Client } = require("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = require("@modelcontextprotocol/sdk/client/streamableHttp.js");
const { StdioClientTransport, getDefaultEnvironment } = require("@modelcontextprotocol/sdk/client/stdio.js");
const { ResourceUpdatedNotificationSchema } = require("@modelcontextprotocol/sdk/types.js");
// Not require(".../package.json"): the SDK's exports map that to dist/.
const sdkVersion = JSON.parse(readFileSync(join(tools, "node_modules/@modelcontextprotocol/sdk/package.json"), "utf8")).version;

function assert(cond, what, detail) {
  if (!cond) throw new Error(`assertion failed: ${what}${detail === undefined ? "" : ": " + JSON.stringify(detail).slice(0, 2000)}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function text(res) {
  return (res.content || []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
}

// call calls a tool and returns its structured content; a tool error throws.
async function call(client, name, args) {
  const res = await client.callTool({ name, arguments: args });
  if (res.isError) throw new Error(`${name} failed: ${text(res)}`);
  assert(res.structuredContent && typeof res.structuredContent === "object", `${name} returns structured content`, res);
  return res.structuredContent;
}

async function poll(what, timeoutMs, fn) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last.done) return last.value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}: ${JSON.stringify(last.value).slice(0, 2000)}`);
    await sleep(200);
  }
}

async function exercise(transportName, transport) {
  const t0 = Date.now();
  const client = new Client({ name: `gantry-ts-e2e-${transportName}`, version: "1.0.0" });
  const updated = [];
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => { updated.push(n.params.uri); });
  await client.connect(transport);
  try {
    if ("protocolVersion" in transport) {
      // The newest revision this SDK speaks; the server must agree to it.
      assert(transport.protocolVersion === "2025-11-25", "negotiated protocol 2025-11-25", transport.protocolVersion);
    }
    const server = client.getServerVersion();
    assert(server && server.name === "gantry", "server name is gantry", server);

    const { tools } = await client.listTools();
    const byName = new Map(tools.map((t) => [t.name, t]));
    for (const want of ["deploy", "list_services", "get_service", "service_logs", "remove_service", "list_nodes"]) {
      const tool = byName.get(want);
      assert(tool, `tool ${want} is listed`, [...byName.keys()]);
      assert(tool.description && tool.description.length > 20, `tool ${want} has a description`);
      assert(tool.inputSchema && tool.inputSchema.type === "object", `tool ${want} has an object input schema`, tool.inputSchema);
      assert(tool.outputSchema && tool.outputSchema.type === "object", `tool ${want} has an object output schema`, tool.outputSchema);
      assert(tool.annotations && typeof tool.annotations.readOnlyHint === "boolean", `tool ${want} has annotations`, tool.annotations);
    }
    assert(byName.get("get_service").annotations.readOnlyHint === true, "get_service is read-only");
    assert(byName.get("remove_service").annotations.destructiveHint === true, "remove_service is destructive");

    const name = `ts-${transportName}-${process.pid}`;
    const marker = `gantry-ts-sdk-e2e ${transportName} ${process.pid}`;
    // A 2025-11-25 session hears of changes to a subscribed resource
    // (over HTTP on its GET stream; over stdio through gantry mcp).
    const uri = `gantry://services/${name}`;
    await client.subscribeResource({ uri });
    const deployed = await call(client, "deploy", {
      spec: {
        name, image, replicas: 1,
        command: ["/bin/sh", "-c", `echo '${marker}'; exec sleep 3600`],
        stop: { grace: "1s" },
      },
    });
    assert(deployed.service === name, "deploy names the service", deployed);
    assert(deployed.created === true && deployed.version >= 1 && deployed.desired === 1, "deploy created version 1 with 1 replica", deployed);

    const running = await poll(`${name} running`, 90_000, async () => {
      const s = await call(client, "get_service", { name });
      return { done: s.running === 1 && s.instances.length === 1 && s.instances[0].state === "running", value: s };
    });
    assert(running.name === name && running.image === image, "get_service shows the spec", running);
    await poll(`notifications/resources/updated for ${uri}`, 10_000, async () => ({ done: updated.includes(uri), value: updated }));
    await client.unsubscribeResource({ uri });
    const instance = running.instances[0].id;

    // The same status as a resource, and the prompts, through the SDK.
    const res = await client.readResource({ uri: `gantry://services/${name}` });
    const content = res.contents && res.contents[0];
    assert(content && content.mimeType === "application/json", "the service resource is JSON", res);
    const asResource = JSON.parse(content.text);
    assert(asResource.name === name && asResource.running === 1, "the service resource shows it running", asResource);
    const { prompts } = await client.listPrompts();
    assert(prompts.length > 0 && prompts.every((p) => p.name && p.description), "prompts are listed with descriptions", prompts);
    assert(typeof instance === "string" && instance.length > 0, "the instance has an id", running);

    const logs = await poll(`${name} logs`, 30_000, async () => {
      const l = await call(client, "service_logs", { name, tail: 20 });
      const lines = (l.instances || []).flatMap((b) => b.lines || []);
      return { done: lines.some((x) => x.includes(marker)), value: l };
    });
    assert(logs.service === name && logs.truncated === false, "service_logs names the service, not truncated", logs);
    assert(logs.instances.length === 1 && logs.instances[0].instance === instance, "service_logs has the one instance", logs);

    const removed = await call(client, "remove_service", { name });
    assert(removed.service === name && removed.removed === true && removed.stopped === 1, "remove_service stops the instance", removed);
    await poll(`${name} gone`, 60_000, async () => {
      const res = await client.callTool({ name: "get_service", arguments: { name } });
      return { done: res.isError === true && /not found/i.test(text(res)), value: res };
    });
    const list = await call(client, "list_services", {});
    assert(Array.isArray(list.services) && !list.services.some((s) => s.name === name), "list_services no longer has it", list);
    return { ok: true, service: name, protocol: transport.protocolVersion, ms: Date.now() - t0 };
  } finally {
    await client.close();
  }
}

const summary = { sdk: sdkVersion, node: process.versions.node };
try {
  summary.http = await exercise("http", new StreamableHTTPClientTransport(new URL(addr), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  }));
  summary.stdio = await exercise("stdio", new StdioClientTransport({
    command: gantryBin,
    args: ["mcp"],
    env: { ...getDefaultEnvironment(), GANTRY_ADDR: addr, GANTRY_TOKEN: token },
    stderr: "inherit",
  }));
  console.log(JSON.stringify(summary));
} catch (err) {
  summary.error = String(err && err.stack || err);
  console.log(JSON.stringify(summary));
  process.exit(1);
}
