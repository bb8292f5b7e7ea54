// GraphiQL keeps the console's promise — tokens in memory only — for the whole origin: the
// console hands its token over without a URL, GraphiQL keeps queries (with their headers)
// in memory, and after using both nothing of the token is in any storage the browser keeps,
// on disk included. Its page carries the console's security headers.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { launch, launchWithProfile, openGraphiql, runInGraphiql, signInAs, startServer } from './harness.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => { await server.stop(); });

/** Every file under `dir`, as bytes. */
function* filesUnder(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* filesUnder(path);
    else if (entry.isFile()) yield [path, readFileSync(path)];
  }
}

/** What a page's scripts can read back of what the browser keeps for this origin. */
async function kept(page) {
  return page.evaluate(async () => ({
    local: JSON.stringify({ ...localStorage }),
    session: JSON.stringify({ ...sessionStorage }),
    indexedDb: (await indexedDB.databases()).map((db) => db.name),
    href: location.href,
  }));
}

test('GraphiQL opened from the console runs as the session, and no token is kept anywhere', async () => {
  const profile = mkdtempSync(join(tmpdir(), 'countersign-profile-'));
  const context = await launchWithProfile(profile);
  // Every token the browser was given or sent: none may be found in what it keeps.
  const tokens = new Set(Object.values(server.tokens));
  context.on('request', (request) => {
    const bearer = (request.headers().authorization || '').match(/^Bearer (\S+)$/);
    if (bearer) tokens.add(bearer[1]);
  });
  context.on('response', async (response) => {
    if (!response.url().endsWith('/console/personas')) return;
    for (const persona of await response.json().catch(() => [])) tokens.add(persona.token);
  });
  const problems = [];
  context.on('page', (page) => {
    page.on('console', (message) => message.type() === 'error' && problems.push(`console: ${message.text()}`));
    page.on('pageerror', (error) => problems.push(`page: ${error.message}`));
    page.on('response', (response) => response.status() >= 400 && problems.push(`HTTP ${response.status()}: ${response.url()}`));
  });
  try {
    const consolePage = await context.newPage();
    await consolePage.goto(server.url);
    // What an older GraphiQL page left behind, headers and all.
    await consolePage.evaluate(() => localStorage.setItem('graphiql:queries',
      JSON.stringify({ queries: [{ query: '{ viewer { subject } }', headers: '{"Authorization":"Bearer left-by-an-older-page"}' }] })));
    await signInAs(consolePage, 'grace');

    const graphiql = await openGraphiql(consolePage);
    assert.equal(new URL(graphiql.url()).hash, '', 'no token in the address');
    // The token arrived by message: the query runs as grace, and goes into GraphiQL's history.
    const answer = await runInGraphiql(graphiql, '{ viewer { subject roles } }', '"subject": "grace"');
    assert.match(answer, /"admin"/);
    await runInGraphiql(graphiql, '{ policies { key } }', '"key": "refund"');
    assert.equal(await graphiql.locator('#hint').isVisible(), false, 'no "no token yet" hint');

    for (const page of [consolePage, graphiql]) {
      const state = await kept(page);
      assert.equal(state.local, '{}', `nothing in localStorage (${page.url()})`);
      assert.equal(state.session, '{}', `nothing in sessionStorage (${page.url()})`);
      assert.deepEqual(state.indexedDb, [], `no IndexedDB database (${page.url()})`);
      assert.doesNotMatch(state.href, /token|eyJ/, 'no token in the address');
    }
    assert.deepEqual(await context.cookies(), [], 'no cookies');
    assert.deepEqual(problems, [], 'no errors in the browser console');
  } catch (err) {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
    throw err;
  }
  // Closing the browser writes out everything it keeps: history, storage, its cache.
  await context.close();
  try {
    assert.ok(tokens.size > 0);
    const found = [];
    for (const [path, bytes] of filesUnder(profile)) {
      for (const token of tokens) {
        // The signature alone: it is what makes the token usable, and it is random enough
        // that storage formats keep it verbatim.
        const signature = token.split('.')[2];
        if (bytes.includes(signature)) found.push(`${path.slice(profile.length)} holds a token`);
      }
    }
    assert.deepEqual(found, [], 'no token in the browser profile on disk');
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
});

test('GraphiQL\'s page carries the console\'s security headers, and no other site can frame it', async () => {
  const graphiql = await fetch(`${server.url}/graphql`);
  const consolePage = await fetch(`${server.url}/`);
  assert.equal(graphiql.status, 200);
  const policy = graphiql.headers.get('content-security-policy');
  assert.ok(policy, 'a Content-Security-Policy');
  assert.equal(policy, consolePage.headers.get('content-security-policy'), 'the console\'s own policy');
  assert.match(policy, /script-src 'self'/);
  assert.doesNotMatch(policy, /unsafe-inline|unsafe-eval/);
  assert.match(policy, /frame-ancestors 'none'/);
  assert.equal(graphiql.headers.get('x-content-type-options'), 'nosniff');
  assert.equal(graphiql.headers.get('referrer-policy'), 'no-referrer');

  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto('about:blank');
    await page.setContent(`<iframe src="${server.url}/graphql"></iframe>`);
    await page.waitForTimeout(1000);
    const frame = page.frames().find((f) => f !== page.mainFrame());
    const framed = await frame.evaluate(() => Boolean(document.querySelector('#graphiql'))).catch(() => false);
    assert.equal(framed, false, 'GraphiQL does not render inside a frame');
  } finally {
    await browser.close();
  }
});

test('GraphiQL says which of its files could not load instead of rendering blank', async () => {
  const browser = await launch();
  try {
    for (const file of ['react-dom.production.min.js', 'graphiql.min.css']) {
      const page = await browser.newPage();
      await page.route(`**/vendor/graphiql/${file}`, (route) => route.abort());
      await page.goto(`${server.url}/graphql`);
      await page.locator('#problem').waitFor();
      assert.match(await page.locator('#failed').innerText(), new RegExp(`Could not load: \\S+/${file.replace(/\./g, '\\.')}$`));
      await page.close();
    }
  } finally {
    await browser.close();
  }
});
