// A real OpenID provider (npm oidc-provider) for the browser tests: the console signs in
// through it exactly as it would through Keycloak or Entra, and Countersign verifies the
// RS256 access tokens it issues against a JWKS file, with no test-only path in the server.
//
// Getting through sign-in in a browser (oidc-provider's development interactions):
//   1. login page:   fill `input[name="login"]` with a users key (e.g. "oscar"); that key is
//                    the account id and the token's `sub`. Fill `input[name="password"]` with
//                    anything (it is required by the form, never checked), then click
//                    `button[type="submit"]` (text "Sign-in").
//   2. consent page: click `button[type="submit"]` (text "Continue").
// The browser then lands on redirectUri with ?code=…&state=…&iss=…. Consent is asked once
// per provider session and client; a second sign-in in the same browser context skips both
// pages. A login name that is not a users key still signs in, as a person with no name,
// email or roles.
//
// Usage from a test:
//   const idp = await startProvider({ clientId, redirectUri, audience, users });
//   // Countersign: COUNTERSIGN_JWT_ISSUER=idp.issuer COUNTERSIGN_JWT_AUDIENCE=audience
//   //   COUNTERSIGN_JWT_ALGORITHMS=RS256 COUNTERSIGN_JWT_JWKS_FILE=idp.jwksFile
//   //   COUNTERSIGN_JWT_ROLES_CLAIM=rolesClaim (the default here is Keycloak's realm_access.roles)
//   await idp.close();
// Run directly for manual use: node tests/browser/oidc-provider.mjs (see the env below).

import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import Provider, { errors } from 'oidc-provider';

// The console's sign-in is the only flow: a public client can't keep a secret, so PKCE is
// what binds the code to the browser that asked for it.
function consoleClient(clientId, redirectUri) {
  return {
    client_id: clientId,
    application_type: 'web',
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: [redirectUri],
  };
}

/** `realm_access.roles` → `{ realm_access: { roles } }`, the shape Keycloak gives them. */
function nestAt(path, value) {
  return path.split('.').reduceRight((inner, key) => ({ [key]: inner }), value);
}

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = randomUUID();
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
  const { kty, n, e } = jwk;
  return { privateJwk: jwk, publicJwk: { kty, n, e, kid, alg: 'RS256', use: 'sig' } };
}

function listen(server, port) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve(server.address().port);
    });
  });
}

export async function startProvider({
  port = 0,
  clientId,
  redirectUri,
  audience,
  rolesClaim = 'realm_access.roles',
  users = {},
  accessTokenTtl = 3600,
}) {
  if (!clientId || !redirectUri || !audience) {
    throw new Error('startProvider needs clientId, redirectUri and audience');
  }
  // RFC 8707: a resource indicator is an absolute URI, so `countersign` alone is refused.
  if (!URL.canParse(audience)) {
    throw new Error(`audience must be an absolute URI (e.g. urn:countersign), not ${audience}`);
  }
  if (accessTokenTtl > 3600) {
    throw new Error('access tokens live one hour at most');
  }
  const consoleOrigin = new URL(redirectUri).origin;

  // The issuer names its own port, which is known only once the socket is bound.
  let handler = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  const server = createServer((req, res) => handler(req, res));
  const boundPort = await listen(server, port);
  const issuer = `http://127.0.0.1:${boundPort}`;

  const { privateJwk, publicJwk } = signingKey();
  const dir = mkdtempSync(join(tmpdir(), 'countersign-oidc-'));
  const jwksFile = join(dir, 'jwks.json');
  writeFileSync(jwksFile, `${JSON.stringify({ keys: [publicJwk] }, null, 2)}\n`);

  const person = (id) => users[id] || {};

  const provider = new Provider(issuer, {
    clients: [consoleClient(clientId, redirectUri)],
    jwks: { keys: [privateJwk] },
    cookies: {
      keys: [randomBytes(32).toString('base64url')],
      // Plain-http localhost: SameSite=None cookies would need Secure, which http can't set.
      long: { sameSite: 'lax' },
      short: { sameSite: 'lax' },
    },
    scopes: ['openid', 'offline_access', 'profile', 'email'],
    claims: { openid: ['sub'], profile: ['name'], email: ['email'] },
    async findAccount(_ctx, id) {
      return {
        accountId: id,
        async claims() {
          const { name, email } = person(id);
          return { sub: id, name, email };
        },
      };
    },
    features: {
      devInteractions: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // A console that sends no `resource` still gets a token Countersign accepts.
        defaultResource: async () => audience,
        useGrantedResource: async () => true,
        async getResourceServerInfo(_ctx, indicator) {
          if (indicator !== audience) throw new errors.InvalidTarget();
          return {
            audience,
            scope: '',
            accessTokenTTL: accessTokenTtl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
    async extraTokenClaims(_ctx, token) {
      const { name, email, roles = [] } = person(token.accountId);
      return { name, email, ...nestAt(rolesClaim, roles) };
    },
    // Like Keycloak: a code always comes with a refresh token, no offline_access (which
    // oidc-provider would only honour together with prompt=consent) needed.
    async issueRefreshToken(_ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },
    pkce: { methods: ['S256'], required: () => true },
    // The console calls the token endpoint from its own origin with fetch.
    clientBasedCORS: (_ctx, origin) => origin === consoleOrigin,
    ttl: {
      AccessToken: accessTokenTtl,
      IdToken: accessTokenTtl,
      Interaction: 600,
      Session: 8 * 3600,
      Grant: 8 * 3600,
      RefreshToken: 8 * 3600,
    },
  });
  // Its built-in pages import a web font from the internet; the tests reach loopback only.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.response.is('html')) {
      ctx.set('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'");
    }
  });
  handler = provider.callback();

  return {
    issuer,
    jwksFile,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const env = process.env;
  const idp = await startProvider({
    port: Number(env.OIDC_PORT || 0),
    clientId: env.OIDC_CLIENT_ID || 'countersign-console',
    redirectUri: env.OIDC_REDIRECT_URI || 'http://127.0.0.1:8080/console/',
    audience: env.OIDC_AUDIENCE || 'urn:countersign',
    rolesClaim: env.OIDC_ROLES_CLAIM || 'realm_access.roles',
    users: {
      oscar: { name: 'Oscar Ops', email: 'oscar@example.com', roles: ['finance'] },
      ada: { name: 'Ada Admin', email: 'ada@example.com', roles: ['admin'] },
    },
  });
  console.log(`issuer   ${idp.issuer}`);
  console.log(`jwks     ${idp.jwksFile}`);
  console.log('sign in as oscar (finance) or ada (admin), any password; Ctrl-C stops');
  const stop = () => idp.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
