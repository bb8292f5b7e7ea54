// Sign-in through the organisation's OpenID provider: authorization code with PKCE, as a
// public client (a page can't keep a secret). The tokens stay in memory like a pasted one;
// only what must survive the redirect to the provider and back goes to sessionStorage.

const PENDING = 'countersign.oidc.pending';

function base64url(bytes) {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomString() {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

async function s256(verifier) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

function issuerBase(settings) {
  return settings.issuer.replace(/\/+$/, '');
}

// Memory only, like the tokens: a reload asks the provider again.
const metadataByIssuer = new Map();

async function discover(settings) {
  const issuer = issuerBase(settings);
  if (metadataByIssuer.has(issuer)) return metadataByIssuer.get(issuer);
  let response;
  try {
    response = await fetch(`${issuer}/.well-known/openid-configuration`, {
      headers: { Accept: 'application/json' },
    });
  } catch {
    throw new Error('The sign-in service could not be reached. Try again in a moment.');
  }
  if (!response.ok) {
    throw new Error('The sign-in service did not describe itself. Ask an administrator to check the console settings.');
  }
  const metadata = await response.json();
  // A document naming another issuer is not this provider's (OpenID Connect Discovery §4.3).
  if (typeof metadata.issuer !== 'string' || metadata.issuer.replace(/\/+$/, '') !== issuer) {
    throw new Error('The sign-in service describes itself as another service. Ask an administrator to check the console settings.');
  }
  metadataByIssuer.set(issuer, metadata);
  return metadata;
}

function readPending() {
  try {
    return JSON.parse(sessionStorage.getItem(PENDING));
  } catch {
    return null;
  }
}

// The code, state and error are single-use: leaving them in the address bar would replay
// them on a reload and put them in bookmarks.
function stripQuery() {
  const url = new URL(location.href);
  url.search = '';
  history.replaceState(history.state, '', url.href);
}

async function tokenRequest(endpoint, params) {
  let response;
  try {
    response = await fetch(endpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' },
      body: new URLSearchParams(params),
    });
  } catch {
    throw new Error('The sign-in service could not be reached. Try again in a moment.');
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    // In our words only, like a refusal on the way back (see REFUSALS).
    const error = new Error(body.error === 'invalid_grant'
      ? 'The sign-in service no longer accepts this sign-in. Sign in again.'
      : 'The sign-in service refused to issue a token. Sign in again.');
    error.code = body.error === 'invalid_grant' ? 'SESSION_EXPIRED' : 'SIGN_IN_FAILED';
    throw error;
  }
  return body;
}

function toSession(body, previous = {}) {
  return {
    accessToken: body.access_token,
    refreshToken: body.refresh_token || previous.refreshToken || null,
    expiresAt: Date.now() + (Number(body.expires_in) || 300) * 1000,
    idToken: body.id_token || previous.idToken || null,
  };
}

const MISMATCH = "The sign-in answer did not match this browser's sign-in; start again.";
const NOT_FOR_US = 'The sign-in service answered for another application. Ask an administrator to check the console settings.';
// Clocks drift: an ID token this much past its expiry still counts as fresh.
const LEEWAY_MS = 60 * 1000;

function claimsOf(idToken) {
  try {
    const payload = idToken.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return typeof claims === 'object' && claims !== null ? claims : null;
  } catch {
    return null;
  }
}

// The ID token came straight from the token endpoint over the connection fetch checked, so
// its payload can be read without verifying the signature (OpenID Connect Core 3.1.3.7).
// Its claims must still say it is for this sign-in: from the discovered issuer, for this
// client (the only party it was issued to, or the authorized one among several), not
// expired, and with the nonce this browser chose. Otherwise no token of that answer is used.
function checkIdToken(idToken, { issuer, clientId, nonce }) {
  const claims = typeof idToken === 'string' ? claimsOf(idToken) : null;
  if (!claims) throw new Error('The sign-in service sent no usable ID token. Ask an administrator to check the console settings.');
  if (typeof issuer !== 'string' || claims.iss !== issuer) throw new Error(NOT_FOR_US);
  const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (!audiences.includes(clientId)) throw new Error(NOT_FOR_US);
  if ((audiences.length > 1 || claims.azp !== undefined) && claims.azp !== clientId) throw new Error(NOT_FOR_US);
  if (typeof claims.exp !== 'number' || claims.exp * 1000 + LEEWAY_MS < Date.now()) {
    throw new Error("The sign-in answer had already expired. Check this computer's clock, then sign in again.");
  }
  if (claims.nonce !== nonce) throw new Error(MISMATCH);
}

// What a provider's `error` means, in our words. Its `error_description` is never shown: any
// link to the console can carry one, so it would be a stranger's text on our sign-in screen.
const REFUSALS = new Map([
  ['access_denied', 'Sign-in was cancelled or refused.'],
  ['login_required', 'The sign-in service needs you to sign in again.'],
  ['interaction_required', 'The sign-in service needs you to sign in again.'],
  ['consent_required', 'The sign-in service needs your consent first. Sign in again.'],
  ['account_selection_required', 'The sign-in service needs you to choose an account. Sign in again.'],
  ['temporarily_unavailable', 'The sign-in service is unavailable for the moment. Try again shortly.'],
  ['server_error', 'The sign-in service is unavailable for the moment. Try again shortly.'],
]);
const REFUSED = 'The sign-in service could not sign you in. Try again; if it keeps happening, ask an administrator.';

function withResource(settings, params) {
  // RFC 8707: names the API so the provider issues a JWT whose `aud` is Countersign.
  if (settings.resource) params.resource = settings.resource;
  return params;
}

/** Leaves the page for the provider's sign-in; the provider sends the browser back with a code. */
export async function signInRedirect(settings) {
  const metadata = await discover(settings);
  const verifier = randomString();
  const state = randomString();
  const nonce = randomString();
  sessionStorage.setItem(PENDING, JSON.stringify({
    verifier, state, nonce, tokenEndpoint: metadata.token_endpoint, issuer: metadata.issuer,
  }));
  const url = new URL(metadata.authorization_endpoint);
  const params = withResource(settings, {
    response_type: 'code',
    client_id: settings.clientId,
    redirect_uri: settings.redirectUri,
    scope: settings.scope,
    code_challenge: await s256(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  });
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  location.assign(url.href);
}

/** On the way back from the provider: the session, or null when this page load is not a return. */
export async function completeSignIn(settings) {
  const query = new URLSearchParams(location.search);
  const code = query.get('code');
  const error = query.get('error');
  if (!code && !error) return null;

  const pending = readPending();
  sessionStorage.removeItem(PENDING);
  stripQuery();

  // A code this browser did not ask for (or asked for in another tab) is never redeemed;
  // nor one that another provider sent (RFC 9207 `iss`, where the provider gives it). An
  // error is only explained when it answers this browser's sign-in.
  const iss = query.get('iss');
  if (!pending || !pending.state || query.get('state') !== pending.state
    || (iss !== null && iss.replace(/\/+$/, '') !== issuerBase(settings))) {
    throw new Error(MISMATCH);
  }
  if (error) throw new Error(REFUSALS.get(error) || REFUSED);
  const body = await tokenRequest(pending.tokenEndpoint, withResource(settings, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: settings.redirectUri,
    client_id: settings.clientId,
    code_verifier: pending.verifier,
  }));
  checkIdToken(body.id_token, { issuer: pending.issuer, clientId: settings.clientId, nonce: pending.nonce });
  return toSession(body);
}

/** A fresh access token from the refresh token, without leaving the page. */
export async function renew(settings, session) {
  if (!session || !session.refreshToken) {
    const error = new Error('Your sign-in has expired. Sign in again.');
    error.code = 'SESSION_EXPIRED';
    throw error;
  }
  const metadata = await discover(settings);
  const body = await tokenRequest(metadata.token_endpoint, withResource(settings, {
    grant_type: 'refresh_token',
    refresh_token: session.refreshToken,
    client_id: settings.clientId,
  }));
  return toSession(body, session);
}
