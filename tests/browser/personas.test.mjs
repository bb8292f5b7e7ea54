// The demo people's tokens are handed out only where the demo is: in development with the
// demo on. With COUNTERSIGN_DEMO=0 the console answers as production does, and no answer
// carrying tokens may be kept by a cache.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, openConsole, startServer } from './harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser.close(); });

test('with the demo off, /console/personas mints nothing and the sign-in screen offers no one', async () => {
  const server = await startServer({ env: { COUNTERSIGN_DEMO: '0' } });
  try {
    const personas = await fetch(`${server.url}/console/personas`);
    assert.equal(personas.status, 404);
    assert.doesNotMatch(await personas.text(), /eyJ/, 'no token in the answer');
    assert.match(personas.headers.get('cache-control') || '', /no-store/);
    const settings = await (await fetch(`${server.url}/console/config`)).json();
    assert.equal(settings.personas, false);

    const page = await openConsole(browser, server);
    await page.getByRole('heading', { name: 'Sign in to Countersign' }).waitFor();
    assert.equal(await page.getByRole('heading', { name: /Demo people/ }).count(), 0);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  } finally {
    await server.stop();
  }
});

test('with the demo on, the personas\' tokens are never stored by a cache', async () => {
  const server = await startServer();
  try {
    const personas = await fetch(`${server.url}/console/personas`);
    assert.equal(personas.status, 200);
    const list = await personas.json();
    assert.ok(list.some((p) => p.subject === 'grace' && p.token), 'grace is offered');
    assert.match(personas.headers.get('cache-control') || '', /no-store/);
    assert.equal(personas.headers.get('x-content-type-options'), 'nosniff');
  } finally {
    await server.stop();
  }
});
