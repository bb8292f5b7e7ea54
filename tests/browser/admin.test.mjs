// The admin and auditor screens change real things: a policy's stages (a new version), a
// role's grants, a dead webhook delivery replayed; and the new-request form shows the
// server's own field errors on their field.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, test } from 'node:test';
import { api, launch, openConsole, screenshot, signInAs, startServer } from './harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser.close(); });

/** An address where nothing listens: a webhook pointed there fails at once. */
function deadAddress() {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(`http://127.0.0.1:${port}/hook`));
    });
  });
}

test('grace edits a policy\'s stages, grants and revokes a permission, and replays a dead letter', async () => {
  const server = await startServer({ env: { COUNTERSIGN_WEBHOOK_MAX_ATTEMPTS: '1', COUNTERSIGN_WEBHOOK_POLL: '100ms' } });
  try {
    const grace = await openConsole(browser, server);
    await signInAs(grace, 'grace');

    // Stages: a third stage for refunds; saving makes version 2.
    await grace.getByRole('link', { name: 'Administration' }).click();
    await grace.getByRole('button', { name: 'Edit stages of Refund' }).click();
    await grace.getByRole('button', { name: 'Add a stage' }).click();
    await grace.getByLabel('Name').nth(2).fill('Controller sign-off');
    await grace.getByLabel('Approver roles (comma-separated)').nth(2).fill('admin');
    await grace.getByRole('button', { name: 'Save new version' }).click();
    await grace.getByRole('cell', { name: /^v2,/ }).first().waitFor();
    await grace.getByRole('button', { name: 'Versions of Refund' }).click();
    await grace.getByText(/Version 2, .* Controller sign-off \(admin\)/).waitFor();
    await grace.getByText(/Version 1, .* Finance lead sign-off/).waitFor();
    await screenshot(grace, 'admin-policy-versions');
    const policy = (await api(server, server.tokens.grace, '{ policies { key version stages { name approverRoles } } }'))
      .policies.find((p) => p.key === 'refund');
    assert.equal(policy.version, 2);
    assert.deepEqual(policy.stages.map((s) => s.name), ['Finance review', 'Finance lead sign-off', 'Controller sign-off']);

    // Grants: ops may now view refunds; then not again.
    await grace.getByRole('link', { name: 'Role permissions' }).click();
    await grace.getByLabel('Role').fill('ops');
    await grace.getByRole('button', { name: 'Show' }).click();
    await grace.getByLabel('Action').selectOption('REQUEST_VIEW');
    await grace.getByLabel('Policy').selectOption('refund');
    await grace.getByRole('button', { name: 'Grant', exact: true }).click();
    const revoke = grace.getByRole('button', { name: 'Revoke REQUEST_VIEW on refund from ops' });
    await revoke.waitFor();
    const grants = async () => (await api(server, server.tokens.grace, '{ rolePermissions(role: "ops") { action policy } }'))
      .rolePermissions.filter((g) => g.policy === 'refund');
    assert.deepEqual(await grants(), [{ action: 'REQUEST_VIEW', policy: 'refund' }]);
    await revoke.click();
    await revoke.waitFor({ state: 'detached' });
    assert.deepEqual(await grants(), []);

    // A webhook that cannot be reached: one attempt, then a dead letter; replay it.
    await api(server, server.tokens.grace,
      'mutation($input: CreateWebhookInput!) { createWebhook(input: $input) { webhook { id } } }',
      { input: { url: await deadAddress(), events: ['SUBMITTED'], secret: 'a-long-random-signing-secret' } });
    await api(server, server.tokens.alice,
      'mutation($input: SubmitRequestInput!) { submitRequest(input: $input) { request { id } } }',
      { input: { policy: 'refund', title: 'Hook bait', amount: '5.00', currency: 'EUR', payload: { orderId: 'o-1' } } });
    const deliveries = async () => (await api(server, server.tokens.grace, '{ webhookDeliveries { edges { node { id status attempts } } } }'))
      .webhookDeliveries.edges.map((e) => e.node);
    for (let i = 0; i < 100 && (await deliveries()).every((d) => d.status !== 'DEAD'); i += 1) await grace.waitForTimeout(100);
    await grace.getByRole('link', { name: 'Operations' }).click();
    const replay = grace.getByRole('button', { name: /^Replay delivery / });
    await replay.waitFor();
    await screenshot(grace, 'operations-dead-letter');
    await replay.click();
    const replays = async () => (await api(server, server.tokens.grace, '{ auditEvents { edges { node { action actor } } } }'))
      .auditEvents.edges.map((e) => e.node).filter((e) => /replay/.test(e.action));
    for (let i = 0; i < 50 && (await replays()).length === 0; i += 1) await grace.waitForTimeout(100);
    assert.deepEqual((await replays()).map((e) => e.actor), ['grace'], 'one replay, by grace, audited');
    assert.deepEqual(grace.problems, []);
    await grace.context().close();
  } finally {
    await server.stop();
  }
});

test('the server\'s field errors land on their field', async () => {
  const server = await startServer();
  try {
    const alice = await openConsole(browser, server);
    await signInAs(alice, 'alice');
    await alice.getByRole('link', { name: 'New request' }).click();
    await alice.getByLabel('Policy').selectOption('refund');
    await alice.getByLabel('Title (required)').fill('Refund in a currency nobody pays in');
    await alice.getByLabel('Amount (required)').fill('10.00');
    // Three letters pass the form's own check; the server knows XXX is not money.
    await alice.getByLabel('Currency').fill('XXX');
    await alice.getByLabel('Order id (required)').fill('o-2');
    await alice.getByRole('button', { name: 'File request' }).click();
    const error = alice.locator('#new-currency-error');
    await error.waitFor();
    assert.match(await error.innerText(), /XXX is not a currency requests can be made in/);
    assert.equal(await alice.getByLabel('Currency').getAttribute('aria-invalid'), 'true');
    assert.equal(await alice.evaluate(() => document.activeElement.id), 'new-currency');
    const stored = await api(server, server.tokens.grace, '{ requests { edges { node { id } } } }');
    assert.deepEqual(stored.requests.edges, [], 'nothing was filed');
    assert.deepEqual(alice.problems, []);
    await alice.context().close();
  } finally {
    await server.stop();
  }
});
