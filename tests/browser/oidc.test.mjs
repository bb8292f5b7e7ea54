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

test('an OIDC sign-in lands in the queue with the roles from the provider, and renews', async () => {
  const port = await freePort();
  const redirectUri = `http://127.0.0.1:${port}/`;
  const idp = await startProvider({
    clientId: CLIENT,
    redirectUri,
    audience: AUDIENCE,
    rolesClaim: 'realm_access.roles',
    users: { oscar: { name: 'Oscar Finance', email: 'oscar@example.com', roles: ['finance'] } },
    // A short-lived token is renewed halfway through its life: within seconds here.
    accessTokenTtl: 16,
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
  });
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
