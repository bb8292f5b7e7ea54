// The ops console in a real browser against the real binary: the acceptance of the console
// issue. `node --test tests/browser/` (after `cargo build`); COUNTERSIGN_BROWSER_BACKENDS
// (default `sqlite,postgres`) says where the main flow runs; everything else runs on SQLite.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { api, launch, openConsole, screenshot, signInAs, startServer } from './harness.mjs';

const BACKENDS = (process.env.COUNTERSIGN_BROWSER_BACKENDS || 'sqlite,postgres').split(',').map((b) => b.trim()).filter(Boolean);
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser.close(); });

async function withServer(backend, body) {
  const server = await startServer({ backend });
  try {
    await body(server);
  } finally {
    await server.stop();
  }
}

const DETAIL = `query($id: ID!) { request(id: $id) { status decisions { verdict comment approver { subject } }
  auditTrail { action actor } stages { position state } } }`;

/** Files a refund through the generated form; resolves to the new request's id. */
async function fileRefund(page, { title, amount, orderId }) {
  await page.getByRole('link', { name: 'New request' }).click();
  await page.getByLabel('Policy').selectOption('refund');
  await page.getByLabel('Title (required)').fill(title);
  await page.getByLabel('Amount (required)').fill(amount);
  await page.getByLabel('Order id (required)').fill(orderId);
  await page.getByRole('button', { name: 'File request' }).click();
  await page.getByRole('heading', { level: 1, name: title }).waitFor();
  return page.url().split('#/requests/')[1];
}

async function submitRefund(server, title, amount) {
  const data = await api(server, server.tokens.alice,
    'mutation($input: SubmitRequestInput!) { submitRequest(input: $input) { request { id } } }',
    { input: { policy: 'refund', title, amount, currency: 'EUR', payload: { orderId: `o-${title}` } } });
  return data.submitRequest.request.id;
}

/**
 * The network between a page and the server's socket, which a test can cut and restore:
 * while cut, every connection attempt is refused. Records each `subscribe`'s `after`.
 */
async function cuttableNetwork(page) {
  const network = { down: false, sockets: [], afters: [] };
  await page.routeWebSocket(/\/graphql\/ws$/, (ws) => {
    if (network.down) {
      ws.close({ code: 4500, reason: 'network down' });
      return;
    }
    network.sockets.push(ws);
    const upstream = ws.connectToServer();
    ws.onMessage((message) => {
      const parsed = JSON.parse(String(message));
      if (parsed.type === 'subscribe') network.afters.push(parsed.payload.variables.after);
      upstream.send(message);
    });
    upstream.onMessage((message) => ws.send(message));
  });
  network.cut = async () => {
    network.down = true;
    for (const ws of network.sockets.splice(0)) await ws.close({ code: 4500, reason: 'network down' });
  };
  network.restore = () => { network.down = false; };
  return network;
}

/** Lets a test hold back the events the server pushes to a page (`feed.holding = true`). */
async function holdableFeed(page) {
  const feed = { holding: false };
  await page.routeWebSocket(/\/graphql\/ws$/, (ws) => {
    const upstream = ws.connectToServer();
    upstream.onMessage((message) => { if (!feed.holding || !String(message).includes('"next"')) ws.send(message); });
    ws.onMessage((message) => upstream.send(message));
  });
  return feed;
}

function assertNoProblems(...pages) {
  for (const page of pages) assert.deepEqual(page.problems, [], 'no errors in the browser console');
}

for (const backend of BACKENDS) {
  test(`main flow on ${backend}: alice files through the form, bob sees it live and approves, alice sees it live`, async () => {
    await withServer(backend, async (server) => {
      const alice = await openConsole(browser, server);
      const bob = await openConsole(browser, server);
      await signInAs(alice, 'alice');
      await signInAs(bob, 'bob');
      await bob.getByRole('heading', { name: 'My queue' }).waitFor();
      await bob.getByText('Nothing waits for you right now.').waitFor();

      const id = await fileRefund(alice, { title: 'Broken kettle refund', amount: '250.00', orderId: 'o-1001' });
      await alice.getByText('Pending', { exact: true }).first().waitFor();

      // bob's queue gets it without a reload.
      const row = bob.getByRole('link', { name: 'Broken kettle refund' });
      await row.waitFor({ timeout: 5000 });
      // Said to a screen reader too, not only shown.
      await bob.locator('[aria-live="polite"]', { hasText: '1 new request arrived' }).waitFor({ state: 'attached' });
      await screenshot(bob, `${backend}-queue-live`);
      await row.click();
      await bob.getByLabel('Comment').fill('Receipt checked, refund is due.');
      await bob.getByRole('button', { name: 'Approve' }).click();
      await bob.locator('.summary').getByText('Approved').waitFor();

      // alice's open detail page shows the outcome and bob's decision without a reload.
      await alice.locator('.summary').getByText('Approved').waitFor({ timeout: 5000 });
      await alice.locator('.decision').getByText('Receipt checked, refund is due.').waitFor();
      assert.match(await alice.locator('.decision').innerText(), /Approved by .*bob/);
      await screenshot(alice, `${backend}-detail-approved`);

      const stored = (await api(server, server.tokens.grace, DETAIL, { id })).request;
      assert.equal(stored.status, 'APPROVED');
      assert.deepEqual(stored.decisions, [{ verdict: 'APPROVE', comment: 'Receipt checked, refund is due.', approver: { subject: 'bob' } }]);
      assertNoProblems(alice, bob);
      await alice.context().close();
      await bob.context().close();
    });
  });
}

test('reject needs a comment; a double-clicked Approve decides once', async () => {
  await withServer('sqlite', async (server) => {
    const first = await submitRefund(server, 'Scratched table', '120.00');
    const second = await submitRefund(server, 'Late delivery', '80.00');
    const bob = await openConsole(browser, server);
    const feed = await holdableFeed(bob);
    await signInAs(bob, 'bob');

    await bob.goto(`${server.url}/#/requests/${first}`);
    await bob.getByRole('button', { name: 'Reject' }).click();
    await bob.getByText('a comment is required to reject').waitFor();
    assert.equal(await bob.getByLabel('Comment').getAttribute('aria-invalid'), 'true');
    await screenshot(bob, 'reject-without-comment');
    assert.equal((await api(server, server.tokens.grace, DETAIL, { id: first })).request.status, 'PENDING');

    await bob.goto(`${server.url}/#/requests/${second}`);
    await bob.getByLabel('Comment').fill('Fine.');
    await bob.getByRole('button', { name: 'Approve' }).dblclick();
    await bob.locator('.summary').getByText('Approved').waitFor();
    const stored = (await api(server, server.tokens.grace, DETAIL, { id: second })).request;
    assert.equal(stored.decisions.length, 1, 'one decision');
    assert.equal(stored.auditTrail.filter((e) => e.action === 'request.approved').length, 1, 'one approval in the audit trail');
    assert.equal(stored.auditTrail.filter((e) => e.actor === 'bob').length, 1, 'bob acted once');

    // The approval reaches the server but its answer is lost: "Try again" sends the same
    // call with the same key, and the server replays the outcome instead of deciding twice.
    const third = await submitRefund(server, 'Lost answer', '30.00');
    await bob.goto(`${server.url}/#/requests/${third}`);
    await bob.getByRole('button', { name: 'Approve' }).waitFor();
    // Nor does the live feed tell this page what happened.
    feed.holding = true;
    const sent = [];
    let dropped = false;
    await bob.route('**/graphql', async (route) => {
      const body = route.request().postData() || '';
      if (!body.includes('approveRequest')) return route.continue();
      sent.push(JSON.parse(body).variables.input.idempotencyKey);
      if (dropped) return route.continue();
      dropped = true;
      await route.fetch();
      return route.abort('connectionreset');
    });
    await bob.getByLabel('Comment').fill('Checked twice.');
    await bob.getByRole('button', { name: 'Approve' }).click();
    await bob.getByText('could not be reached').waitFor();
    assert.equal(await bob.getByRole('button', { name: 'Approve' }).isDisabled(), true, 'no second, different decision');
    await bob.getByRole('button', { name: 'Try again' }).click();
    await bob.locator('.summary').getByText('Approved').waitFor();
    assert.equal(sent.length, 2);
    assert.equal(sent[0], sent[1], 'the retry carries the same idempotency key');
    const retried = (await api(server, server.tokens.grace, DETAIL, { id: third })).request;
    assert.equal(retried.decisions.length, 1, 'one decision after a lost answer and a retry');
    const failed = bob.problems.filter((p) => !p.includes('ERR_CONNECTION_RESET'));
    bob.problems.length = 0;
    bob.problems.push(...failed);
    assertNoProblems(bob);
    await bob.context().close();
  });
});

test('a stale approval shows what changed and the new state', async () => {
  await withServer('sqlite', async (server) => {
    const id = await submitRefund(server, 'Duplicate charge', '5000.00');
    const bob = await openConsole(browser, server);
    // bob's page stays as it was, as a tab would that has not caught up yet.
    const feed = await holdableFeed(bob);
    await signInAs(bob, 'bob');
    await bob.goto(`${server.url}/#/requests/${id}`);
    await bob.getByRole('button', { name: 'Approve' }).waitFor();
    feed.holding = true;

    // Meanwhile carol, in her own tab, approves the first stage.
    await api(server, server.tokens.carol,
      'mutation($id: ID!) { approveRequest(input: { id: $id, comment: "ok" }) { request { status } } }', { id });

    await bob.getByRole('button', { name: 'Approve' }).click();
    const notice = bob.locator('.conflict');
    await notice.waitFor();
    assert.match(await notice.innerText(), /changed while you were looking at it/);
    assert.match(await notice.innerText(), /carol.* approved it: “ok”/i);
    // The page now shows the new state: stage 1 approved, stage 2 (finance lead) being decided.
    await bob.locator('.stage[data-state="APPROVED"]').first().waitFor();
    await bob.locator('.stage[data-state="ACTIVE"]').waitFor();
    assert.equal(await bob.getByRole('button', { name: 'Approve' }).count(), 0, 'bob may not decide stage 2');
    await screenshot(bob, 'stale-approval');
    const stored = (await api(server, server.tokens.grace, DETAIL, { id })).request;
    assert.deepEqual(stored.decisions.map((d) => d.approver.subject), ['carol']);
    assertNoProblems(bob);
    await bob.context().close();
  });
});

test('a 5,000.00 refund walks finance → finance lead on the stage ladder', async () => {
  await withServer('sqlite', async (server) => {
    const alice = await openConsole(browser, server);
    await signInAs(alice, 'alice');
    const id = await fileRefund(alice, { title: 'Warehouse fire refund', amount: '5000.00', orderId: 'o-5000' });
    const stages = alice.locator('.ladder .stage');
    assert.deepEqual(await stages.evaluateAll((els) => els.map((e) => e.dataset.state)), ['ACTIVE', 'WAITING']);
    assert.match(await alice.locator('.amount.big').innerText(), /^5,000\.00 EUR$/);

    for (const [who, states] of [['bob', ['APPROVED', 'ACTIVE']], ['carol', ['APPROVED', 'APPROVED']]]) {
      const decider = await openConsole(browser, server);
      await signInAs(decider, who);
      await decider.getByRole('link', { name: 'Warehouse fire refund' }).click();
      await decider.getByRole('button', { name: 'Approve' }).click();
      await decider.getByRole('button', { name: 'Approve' }).waitFor({ state: 'detached' });
      // alice watches the ladder move without reloading.
      await alice.waitForFunction((want) => [...document.querySelectorAll('.ladder .stage')].map((e) => e.dataset.state).join() === want, states.join());
      await screenshot(alice, `ladder-after-${who}`);
      assertNoProblems(decider);
      await decider.context().close();
    }
    await alice.locator('.summary').getByText('Approved').waitFor();
    assert.equal((await api(server, server.tokens.grace, DETAIL, { id })).request.status, 'APPROVED');
    assertNoProblems(alice);
    await alice.context().close();
  });
});

test('grace disables carol; carol\'s open console signs her out within 5 s', async () => {
  await withServer('sqlite', async (server) => {
    const carol = await openConsole(browser, server);
    await signInAs(carol, 'carol');
    const grace = await openConsole(browser, server);
    await signInAs(grace, 'grace');
    await grace.getByRole('link', { name: 'Administration' }).click();
    await grace.getByRole('link', { name: 'Users' }).click();
    const row = grace.locator('li.user[data-subject="carol"]');
    await row.getByLabel('Reason').fill('Left the company');
    await screenshot(grace, 'admin-users');
    const clicked = Date.now();
    await row.getByRole('button', { name: 'Disable carol' }).click();
    await carol.getByRole('heading', { name: 'Sign in to Countersign' }).waitFor({ timeout: 5000 });
    assert.ok(Date.now() - clicked < 5000);
    await carol.getByText('An administrator has disabled your account').waitFor();
    await row.getByText('Disabled', { exact: true }).waitFor();
    await screenshot(carol, 'signed-out-disabled');
    assertNoProblems(carol, grace);
    await carol.context().close();
    await grace.context().close();
  });
});

test('a dropped connection shows Reconnecting… and resumes by cursor: no gap, no duplicate', async () => {
  await withServer('sqlite', async (server) => {
    const bob = await openConsole(browser, server);
    // The network between bob's console and the server, which the test can cut.
    const network = await cuttableNetwork(bob);
    await signInAs(bob, 'bob');
    // Cut before this console has received a single event: it resumes from the cursor it
    // read at sign-in.
    await network.cut();
    await bob.locator('[data-live="reconnecting"]').waitFor();
    await screenshot(bob, 'reconnecting');
    await submitRefund(server, 'During the outage 1', '11.00');
    await submitRefund(server, 'During the outage 2', '12.00');
    assert.equal(await bob.getByRole('link', { name: /During the outage/ }).count(), 0);

    network.restore();
    await bob.locator('[data-live="live"]').waitFor({ timeout: 15000 });
    for (const title of ['During the outage 1', 'During the outage 2']) {
      await bob.getByRole('link', { name: title }).waitFor();
    }
    await submitRefund(server, 'After the outage', '13.00');
    await bob.getByRole('link', { name: 'After the outage' }).waitFor();
    const titles = await bob.locator('table.requests tbody a').allInnerTexts();
    assert.deepEqual(titles.sort(), ['After the outage', 'During the outage 1', 'During the outage 2']);
    assertNoProblems(bob);
    await bob.context().close();
  });
});

test('keyboard only: skip to content, reach the decision form, approve', async () => {
  await withServer('sqlite', async (server) => {
    const id = await submitRefund(server, 'Keyboard refund', '15.00');
    const bob = await openConsole(browser, server);
    await signInAs(bob, 'bob');
    await bob.goto(`${server.url}/#/requests/${id}`);
    await bob.getByRole('button', { name: 'Approve' }).waitFor();
    // The page moves focus to its heading once loaded; start from there, then from the top.
    await bob.waitForFunction(() => document.activeElement && document.activeElement.id === 'detail-heading');
    const focused = () => bob.evaluate(() => {
      const el = document.activeElement;
      return el ? (el.id || el.textContent.trim()) : null;
    });
    // From the top of the page, the first stop is the skip link.
    await bob.evaluate(() => { document.body.tabIndex = -1; document.body.focus(); });
    await bob.keyboard.press('Tab');
    assert.equal(await focused(), 'Skip to content');
    await bob.keyboard.press('Enter');
    assert.equal(await focused(), 'main');
    for (let i = 0; i < 40 && (await focused()) !== 'decision-comment'; i += 1) await bob.keyboard.press('Tab');
    assert.equal(await focused(), 'decision-comment', 'Tab reaches the comment');
    await bob.keyboard.type('Checked with the keyboard.');
    await bob.keyboard.press('Tab');
    assert.equal(await focused(), 'Approve');
    await bob.keyboard.press('Enter');
    await bob.locator('.summary').getByText('Approved').waitFor();
    await bob.getByRole('status').getByText('You approved it').waitFor();
    const stored = (await api(server, server.tokens.grace, DETAIL, { id })).request;
    assert.deepEqual(stored.decisions.map((d) => d.comment), ['Checked with the keyboard.']);
    assertNoProblems(bob);
    await bob.context().close();
  });
});

test('after a long outage the console starts again from now and reads its screens afresh', async () => {
  await withServer('sqlite', async (server) => {
    const bob = await openConsole(browser, server, { beforeLoad: (page) => page.clock.install() });
    const network = await cuttableNetwork(bob);
    await signInAs(bob, 'bob');
    const signedInAt = network.afters[0];
    await network.cut();
    await bob.locator('[data-live="reconnecting"]').waitFor();
    await submitRefund(server, 'Filed during a long outage', '21.00');
    const head = (await api(server, server.tokens.bob, '{ requestEventsCursor }')).requestEventsCursor;
    await bob.clock.fastForward('03:00');
    network.restore();
    await bob.locator('[data-live="live"]').waitFor({ timeout: 20000 });
    // Not a replay from the sign-in cursor: the list was read again instead.
    await bob.getByRole('link', { name: 'Filed during a long outage' }).waitFor();
    assert.notEqual(signedInAt, head);
    assert.equal(network.afters.at(-1), head, 'resubscribed from the head, not from the old cursor');
    // And it is live from there.
    await submitRefund(server, 'Filed after the outage', '22.00');
    await bob.getByRole('link', { name: 'Filed after the outage' }).waitFor();
    assertNoProblems(bob);
    await bob.context().close();
  });
});
