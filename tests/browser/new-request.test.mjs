// The new-request form reads a policy's payload schema as data: a field whose name every
// JavaScript object inherits (`constructor`, `toString`, `__proto__`) or an empty name is
// a field like any other — shown empty, filled only by the person, sent as typed.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { api, launch, openConsole, signInAs, startServer } from './harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser.close(); });

// JSON text, not an object literal: in a literal `"__proto__": …` sets the prototype.
const SCHEMA = JSON.parse(`{
  "type": "object",
  "required": ["constructor", "__proto__"],
  "properties": {
    "constructor": { "type": "string" },
    "toString": { "type": "string" },
    "__proto__": { "type": "string" },
    "hasOwnProperty": { "type": "integer" },
    "": { "type": "string" }
  }
}`);

test('a schema with inherited property names files exactly what was typed', async () => {
  const server = await startServer();
  try {
    await api(server, server.tokens.grace,
      'mutation($input: UpsertPolicyInput!) { upsertPolicy(input: $input) { policy { key } } }',
      { input: { key: 'oddities', name: 'Oddities', description: 'Field names objects inherit.', expiresAfterSeconds: 3600,
        payloadSchema: SCHEMA, stages: [{ name: 'Review', approverRoles: ['finance'], requiredApprovals: 1 }] } });

    const alice = await openConsole(browser, server);
    await signInAs(alice, 'alice');
    await alice.getByRole('link', { name: 'New request' }).click();
    await alice.getByLabel('Policy').selectOption('oddities');
    await alice.getByRole('group', { name: 'Oddities details' }).waitFor();
    const fields = {
      constructor: alice.getByLabel('Constructor (required)'),
      toString: alice.getByLabel('To string'),
      proto: alice.getByLabel('Proto (required)'),
      hasOwnProperty: alice.getByLabel('Has own property'),
      unnamed: alice.getByLabel('Unnamed field'),
    };
    for (const [name, field] of Object.entries(fields)) {
      assert.equal(await field.inputValue(), '', `${name} starts empty`);
    }

    await alice.getByLabel('Title (required)').fill('Odd names');
    await alice.getByLabel('Amount (required)').fill('12.00');
    await fields.constructor.fill('c-1');
    await fields.proto.fill('p-1');
    await fields.unnamed.fill('nameless');
    await alice.getByRole('button', { name: 'File request' }).click();
    await alice.waitForURL(/#\/requests\/[\w-]+$/);

    const { requests } = await api(server, server.tokens.grace, '{ requests { edges { node { title payload } } } }');
    const filed = requests.edges.map((e) => e.node).find((r) => r.title === 'Odd names');
    assert.ok(filed, 'the request was filed');
    // Own properties only, exactly those typed: nothing inherited was sent unasked.
    assert.deepEqual(Object.entries(filed.payload).sort(), [['', 'nameless'], ['__proto__', 'p-1'], ['constructor', 'c-1']]);
    assert.deepEqual(alice.problems, []);
    await alice.context().close();
  } finally {
    await server.stop();
  }
});
