// A real client against a real server: the npm `graphql-ws` client subscribes to
// requestEvents, receives an event, disconnects, and resumes by cursor after three more
// changes, expecting exactly those three, in order.
//
//   node resume.mjs <path to the countersign binary>
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const binary = resolve(process.argv[2]);
const work = mkdtempSync(join(tmpdir(), "countersign-node-"));
const server = spawn(binary, ["serve"], {
  cwd: work,
  env: { PATH: process.env.PATH, DATABASE_URL: `sqlite://${work}/cs.db?mode=rwc`, COUNTERSIGN_BIND: "127.0.0.1:0" },
  stdio: ["ignore", "pipe", "inherit"],
});
const fail = (message) => {
  console.error(`FAIL: ${message}`);
  server.kill("SIGTERM");
  rmSync(work, { recursive: true, force: true });
  process.exit(1);
};
setTimeout(() => fail("timed out"), 60_000).unref();

// Read the banner: the address and the personas' tokens.
const tokens = {};
let address;
for await (const line of createInterface({ input: server.stdout })) {
  const listening = line.match(/^Countersign listening on (http:\/\/\S+)/);
  if (listening) address = listening[1];
  const persona = line.match(/^ {2}(\w+)\s+\S+\s+(\S+)$/);
  if (persona) tokens[persona[1]] = persona[2];
  if (line.startsWith("Open GraphiQL")) break;
}
if (!address || !tokens.frank) fail("no banner");

async function graphql(token, query, variables) {
  const response = await fetch(`${address}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors) fail(JSON.stringify(body.errors));
  return body.data;
}
const submit = async (title) =>
  (await graphql(tokens.alice, `mutation($input: SubmitRequestInput!) { submitRequest(input: $input) { request { id } } }`, {
    input: { policy: "refund", title, amount: "250.00", currency: "EUR", payload: { orderId: title } },
  })).submitRequest.request.id;

// Collects `count` events from a fresh client, then disconnects it.
function collect(after, count) {
  return new Promise((resolve, reject) => {
    const client = createClient({
      url: `${address.replace("http", "ws")}/graphql/ws`,
      webSocketImpl: WebSocket,
      connectionParams: { Authorization: `Bearer ${tokens.frank}` },
      retryAttempts: 0,
    });
    const events = [];
    client.subscribe(
      { query: "subscription($after: String) { requestEvents(after: $after) { cursor kind request { id } } }", variables: { after } },
      {
        next: ({ data, errors }) => {
          if (errors) return reject(new Error(JSON.stringify(errors)));
          events.push(data.requestEvents);
          if (events.length === count) {
            client.dispose();
            resolve(events);
          }
        },
        error: reject,
        complete: () => {},
      },
    );
  });
}

const head = (await graphql(tokens.frank, "{ verifyAuditChain { headSequence } }")).verifyAuditChain.headSequence;
const firstSeen = collect(String(head), 1);
const first = await submit("order-1");
const [seen] = await firstSeen;
if (seen.kind !== "SUBMITTED" || seen.request.id !== first) fail(`unexpected first event ${JSON.stringify(seen)}`);

const second = await submit("order-2");
const third = await submit("order-3");
await graphql(tokens.bob, `mutation($id: ID!) { approveRequest(input: { id: $id }) { request { status } } }`, { id: first });

const resumed = await collect(seen.cursor, 3);
const got = resumed.map((e) => `${e.kind}:${e.request.id}`);
const want = [`SUBMITTED:${second}`, `SUBMITTED:${third}`, `APPROVED:${first}`];
if (JSON.stringify(got) !== JSON.stringify(want)) fail(`resumed ${JSON.stringify(got)}, wanted ${JSON.stringify(want)}`);

console.log("ok: graphql-ws client received, disconnected and resumed by cursor with no gap or duplicate");
server.kill("SIGTERM");
rmSync(work, { recursive: true, force: true });
process.exit(0);
