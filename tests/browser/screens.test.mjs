// Every screen at 1280 and 390 px: a screenshot under target/console-screenshots/, no
// serious or critical axe-core violation, no error in the browser console, no sideways
// scrolling on a phone, and the keyboard reaches what the mouse does.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { accessibilityProblems, api, launch, openConsole, openGraphiql, runInGraphiql, screenshot, signInAs, startServer, WIDTHS } from './harness.mjs';

let browser;
let server;
before(async () => {
  browser = await launch();
  server = await startServer();
  for (const [title, amount] of [['Duplicate charge', '5000.00'], ['Broken kettle', '49.90']]) {
    await api(server, server.tokens.alice,
      'mutation($input: SubmitRequestInput!) { submitRequest(input: $input) { request { id } } }',
      { input: { policy: 'refund', title, amount, currency: 'EUR', description: 'Customer called twice.', payload: { orderId: 'o-77', reason: 'damaged' } } });
  }
});
after(async () => {
  await browser.close();
  await server.stop();
});

async function check(page, name, problems, { axe = true } = {}) {
  await page.waitForLoadState('networkidle');
  await screenshot(page, name);
  const width = page.viewportSize().width;
  if (axe) for (const problem of await accessibilityProblems(page)) problems.push(`${name} @${width}: ${problem}`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  if (overflow > 0) problems.push(`${name} @${width}: scrolls sideways by ${overflow}px`);
}

for (const width of WIDTHS) {
  test(`every screen at ${width} px`, async () => {
    const problems = [];
    const pages = [];
    const loaded = [];
    const weigh = (page) => page.on('response', (response) => loaded.push(response.body().then((b) => b.length, () => 0)));
    const open = async (who) => {
      const page = await openConsole(browser, server, { width });
      pages.push(page);
      if (who) await signInAs(page, who);
      return page;
    };

    const anonymous = await openConsole(browser, server, { width, beforeLoad: weigh });
    pages.push(anonymous);
    await anonymous.getByRole('heading', { name: 'Sign in to Countersign' }).waitFor();
    await anonymous.waitForLoadState('networkidle');
    const total = (await Promise.all(loaded)).reduce((sum, bytes) => sum + bytes, 0);
    // What README.md reports as the page weight; the budget keeps it a small page.
    console.log(`page weight: ${loaded.length} responses, ${(total / 1024).toFixed(1)} KiB (uncompressed)`);
    assert.ok(total < 250 * 1024, `the console loads ${total} bytes`);
    await check(anonymous, 'sign-in', problems);

    const bob = await open('bob');
    await bob.getByRole('link', { name: 'Duplicate charge' }).waitFor();
    await check(bob, 'my-queue', problems);
    await bob.getByRole('link', { name: 'All requests' }).click();
    await bob.getByRole('button', { name: 'Apply filters' }).waitFor();
    await check(bob, 'all-requests', problems);
    await bob.getByRole('link', { name: 'Duplicate charge' }).click();
    await bob.getByRole('button', { name: 'Approve' }).waitFor();
    await check(bob, 'request-detail', problems);

    const alice = await open('alice');
    await alice.getByRole('link', { name: 'New request' }).click();
    await alice.getByLabel('Policy').selectOption('refund');
    await check(alice, 'new-request', problems);
    // Keyboard only: the amount is refused on its field, with the currency's digits.
    await alice.getByLabel('Title (required)').focus();
    await alice.keyboard.type('Keyboard refund');
    await alice.keyboard.press('Tab');
    await alice.keyboard.type('12.345');
    await alice.keyboard.press('Enter');
    await alice.getByText('at most 2 digits after the point').waitFor();
    assert.equal(await alice.evaluate(() => document.activeElement.id), 'new-amount', 'focus moves to the field in error');
    await check(alice, 'new-request-errors', problems);

    const grace = await open('grace');
    await grace.getByRole('link', { name: 'Administration' }).click();
    await grace.getByRole('button', { name: 'Edit stages of Refund' }).click();
    await check(grace, 'admin-policies', problems);
    await grace.getByRole('link', { name: 'Role permissions' }).click();
    await grace.getByRole('button', { name: /^Revoke/ }).first().waitFor();
    await check(grace, 'admin-permissions', problems);
    await grace.getByRole('link', { name: 'Users' }).click();
    await grace.locator('li.user').first().waitFor();
    await check(grace, 'admin-users', problems);
    await grace.getByRole('link', { name: 'Audit log' }).click();
    await grace.getByRole('button', { name: 'Verify chain' }).click();
    await grace.getByText(/Chain intact: \d+ events checked/).waitFor();
    await check(grace, 'audit-log', problems);
    await grace.getByRole('link', { name: 'Operations' }).click();
    await grace.getByRole('heading', { name: 'Queues' }).waitFor();
    await check(grace, 'operations', problems);

    assert.deepEqual(problems, []);
    for (const page of pages) assert.deepEqual(page.problems, [], 'no errors in the browser console');
    for (const page of pages) await page.context().close();
  });
}

test('GraphiQL works with no network beyond this server', async () => {
  const outside = [];
  const problems = [];
  const grace = await openConsole(browser, server, {
    beforeLoad: (page) => page.context().route((url) => !url.href.startsWith(server.url), (route) => {
      outside.push(route.request().url());
      return route.abort();
    }),
  });
  await signInAs(grace, 'grace');
  grace.context().on('page', (page) => {
    page.on('console', (message) => message.type() === 'error' && problems.push(message.text()));
    page.on('pageerror', (error) => problems.push(error.message));
  });
  const page = await openGraphiql(grace);
  assert.equal(await page.locator('#problem').isVisible(), false, 'no "could not load" notice');
  await runInGraphiql(page, '{ viewer { subject } }', '"subject": "grace"');
  await page.waitForLoadState('networkidle');
  await screenshot(page, 'graphiql');
  assert.deepEqual(outside, [], 'nothing fetched from outside');
  assert.deepEqual(problems, [], 'no errors in GraphiQL (a Content-Security-Policy violation is one)');
  assert.deepEqual(grace.problems, []);
  await grace.context().close();
});
