// Sign-in through a real OpenID provider (npm oidc-provider, started here): authorization
// code with PKCE, an RS256 access token Countersign verifies from the provider's JWKS, roles
// read from Keycloak's `realm_access.roles`, the token kept in memory and renewed silently.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, test } from 'node:test';
import { startProvider } from './oidc-provider.mjs';
import { api, launch, openConsole, screenshot, startServer } from './harness.mjs';

const CLIENT = 'countersign-console';
const AUDIENCE = 'urn:countersign';
let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser.close(); });

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** A provider and a Countersign whose console signs in through it. */
async function withProvider({ accessTokenTtl = 3600 } = {}) {
  const port = await freePort();
  const redirectUri = `http://127.0.0.1:${port}/`;
  const idp = await startProvider({
    clientId: CLIENT,
    redirectUri,
    audience: AUDIENCE,
    rolesClaim: 'realm_access.roles',
    users: { oscar: { name: 'Oscar Finance', email: 'oscar@example.com', roles: ['finance'] } },
    accessTokenTtl,
  });
  const server = await startServer({
    env: {
      COUNTERSIGN_BIND: `127.0.0.1:${port}`,
      COUNTERSIGN_JWT_ISSUER: idp.issuer,
      COUNTERSIGN_JWT_AUDIENCE: AUDIENCE,
      // HS256 too, so the demo people's tokens still file the request below.
      COUNTERSIGN_JWT_ALGORITHMS: 'RS256,HS256',
      COUNTERSIGN_JWT_JWKS_FILE: idp.jwksFile,
      COUNTERSIGN_JWT_ROLES_CLAIM: 'realm_access.roles',
      COUNTERSIGN_OIDC_ISSUER: idp.issuer,
      COUNTERSIGN_OIDC_CLIENT_ID: CLIENT,
      COUNTERSIGN_OIDC_RESOURCE: AUDIENCE,
    },
  }).catch(async (err) => {
    await idp.close();
    throw err;
  });
  return { idp, server };
}

test('an OIDC sign-in lands in the queue with the roles from the provider, and renews', async () => {
  // A short-lived token is renewed halfway through its life: within seconds here.
  const { idp, server } = await withProvider({ accessTokenTtl: 16 });
  try {
    await api(server, server.tokens.alice,
      'mutation($input: SubmitRequestInput!) { submitRequest(input: $input) { request { id } } }',
      { input: { policy: 'refund', title: 'Refund for a finance person', amount: '75.00', currency: 'EUR', payload: { orderId: 'o-9' } } });

    const page = await openConsole(browser, server);
    const renewals = [];
    const bearers = [];
    let sockets = 0;
    page.on('websocket', () => { sockets += 1; });
    page.on('request', (request) => {
      if (request.method() === 'POST' && (request.postData() || '').includes('grant_type=refresh_token')) renewals.push(request.url());
      if (request.url().endsWith('/graphql')) bearers.push(request.headers().authorization);
    });
    await page.getByRole('button', { name: 'Sign in with your organisation account' }).click();
    await page.locator('input[name="login"]').fill('oscar');
    await page.locator('input[name="password"]').fill('anything');
    await page.locator('button[type="submit"]').click();
    await page.locator('button[type="submit"]').click(); // consent
    await page.getByRole('heading', { name: 'My queue' }).waitFor({ timeout: 10000 });
    assert.equal(new URL(page.url()).search, '', 'the code is gone from the address bar');
    assert.match(await page.locator('.who').innerText(), /Oscar Finance \(finance\)/);
    // finance decides refunds: the queue holds alice's request.
    await page.getByRole('link', { name: 'Refund for a finance person' }).waitFor();
    await page.locator('[data-live="live"]').waitFor();
    await screenshot(page, 'oidc-signed-in');

    const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
    assert.doesNotMatch(stored, /eyJ/, 'no token in web storage');

    // Silent renewal: the console asks for a new token before this one lapses, and goes on.
    for (let i = 0; i < 60 && renewals.length === 0; i += 1) await page.waitForTimeout(250);
    assert.equal(renewals.length, 1, 'renewed once, halfway through the token’s life');
    const first = bearers[0];
    // Every call from the renewal's answer on carries the new token.
    for (let i = 0; i < 20; i += 1) {
      await page.getByRole('link', { name: i % 2 ? 'My queue' : 'All requests' }).click();
      await page.getByRole('link', { name: 'Refund for a finance person' }).waitFor();
      if (bearers.at(-1) !== first) break;
      await page.waitForTimeout(250);
    }
    assert.notEqual(bearers.at(-1), first, 'calls after the renewal carry the new token');
    // At the first token's expiry the server closes the socket it opened (4403); the
    // console opens another with the renewed token and stays signed in.
    assert.equal(sockets, 1);
    for (let i = 0; i < 100 && sockets < 2; i += 1) await page.waitForTimeout(250);
    assert.equal(sockets, 2, 'a second socket, after the first token expired');
    await page.locator('[data-live="live"]').waitFor({ timeout: 10000 });
    assert.equal(await page.getByRole('heading', { name: 'Sign in to Countersign' }).count(), 0);
    await page.getByRole('link', { name: 'My queue' }).click();
    await page.getByRole('link', { name: 'Refund for a finance person' }).waitFor();
    assert.deepEqual(page.problems, []);
    await page.context().close();
  } finally {
    await server.stop();
    await idp.close();
  }
});

function base64url(json) {
  return Buffer.from(JSON.stringify(json)).toString('base64url');
}

/** The ID token with some claims changed (its signature no longer matches, as a forger's). */
function withClaims(idToken, change) {
  const [header, payload, signature] = idToken.split('.');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  change(claims);
  return [header, base64url(claims), signature].join('.');
}

/** Leaves for the provider and waits until the console has dealt with its answer. */
async function signInThroughProvider(page, { login = false } = {}) {
  await page.getByRole('button', { name: 'Sign in with your organisation account' }).click();
  if (login) {
    await page.locator('input[name="login"]').fill('oscar');
    await page.locator('input[name="password"]').fill('anything');
    await page.locator('button[type="submit"]').click();
    await page.locator('button[type="submit"]').click(); // consent
  }
  await page.locator('.notice, .who').first().waitFor({ timeout: 10000 });
}

test('an ID token not for this sign-in is refused, and a link\'s own error text is never shown', async () => {
  const { idp, server } = await withProvider();
  try {
    const page = await openConsole(browser, server);
    const notice = page.locator('.notice');
    const signedIn = page.locator('.who');

    // Cancelled at the provider: a real refusal, answering this browser's sign-in. The
    // provider's description ("End-User aborted interaction") is not ours to show.
    await page.getByRole('button', { name: 'Sign in with your organisation account' }).click();
    await page.getByRole('link', { name: '[ Cancel ]' }).click();
    await notice.waitFor({ timeout: 10000 });
    assert.equal(await notice.innerText(), 'Sign-in was cancelled or refused.');

    // A link made by anyone, carrying its own words.
    const lure = 'Your account is locked. Call +1 555 0100 to unlock it.';
    for (const error of ['access_denied', 'server_error', 'constructor', 'made_up']) {
      await page.goto(`${server.url}/?error=${error}&error_description=${encodeURIComponent(lure)}&state=guess`);
      await notice.waitFor();
      const shown = await notice.innerText();
      assert.doesNotMatch(shown, /locked|555|made_up|function/, `${error}: only our own words`);
      assert.equal(new URL(page.url()).search, '', 'the error is gone from the address bar');
    }

    // The token endpoint's answer altered on its way to the console: each ID token below
    // is not for this sign-in, so its access token must not be used either.
    let tamper = null;
    await page.route(`${idp.issuer}/token`, async (route) => {
      const response = await route.fetch();
      const body = await response.json();
      if (tamper) tamper(body);
      await route.fulfill({ response, json: body });
    });
    const cases = [
      ['another audience', /another application/, (b) => { b.id_token = withClaims(b.id_token, (c) => { c.aud = 'someone-else'; }); }],
      ['another issuer', /another application/, (b) => { b.id_token = withClaims(b.id_token, (c) => { c.iss = 'http://127.0.0.1:1'; }); }],
      ['expired an hour ago', /already expired/, (b) => { b.id_token = withClaims(b.id_token, (c) => { c.exp = Math.floor(Date.now() / 1000) - 3600; }); }],
      ['several audiences, no azp', /another application/, (b) => { b.id_token = withClaims(b.id_token, (c) => { c.aud = [CLIENT, 'someone-else']; delete c.azp; }); }],
      ['authorized for another party', /another application/, (b) => { b.id_token = withClaims(b.id_token, (c) => { c.aud = [CLIENT, 'someone-else']; c.azp = 'someone-else'; }); }],
      ['no nonce', /did not match this browser's sign-in/, (b) => { b.id_token = withClaims(b.id_token, (c) => { delete c.nonce; }); }],
      ['no ID token at all', /no usable ID token/, (b) => { delete b.id_token; }],
    ];
    let first = true;
    for (const [name, why, change] of cases) {
      tamper = change;
      await page.goto(server.url);
      await signInThroughProvider(page, { login: first });
      first = false;
      assert.equal(await signedIn.count(), 0, `${name}: not signed in`);
      assert.match(await notice.innerText(), why, `${name}: the sign-in screen says why`);
      assert.equal(new URL(page.url()).search, '', `${name}: the code is gone from the address bar`);
    }

    // The same answer untouched signs in: what was refused above was the claims alone.
    tamper = null;
    await page.goto(server.url);
    await signInThroughProvider(page);
    await page.getByRole('heading', { name: 'My queue' }).waitFor();
    assert.match(await signedIn.innerText(), /Oscar Finance/);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  } finally {
    await server.stop();
    await idp.close();
  }
});
