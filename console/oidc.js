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
    const reason = body.error_description ? ` (${body.error_description})` : '';
    const error = new Error(body.error === 'invalid_grant'
      ? `The sign-in service no longer accepts this sign-in${reason}. Sign in again.`
      : `The sign-in service refused to issue a token${reason}. Sign in again.`);
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

// The ID token came straight from the token endpoint over the connection fetch checked, so
// its payload can be read without verifying the signature (OpenID Connect Core 3.1.3.7);
// the nonce ties it to the sign-in this browser started.
function idTokenNonce(idToken) {
  try {
    const payload = idToken.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes)).nonce;
  } catch {
    return undefined;
  }
}

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
    verifier, state, nonce, tokenEndpoint: metadata.token_endpoint,
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

  if (error) {
    const detail = query.get('error_description');
    throw new Error(error === 'access_denied'
      ? `Sign-in was cancelled or refused${detail ? `: ${detail}` : ''}.`
      : `The sign-in service could not sign you in${detail ? `: ${detail}` : ` (${error})`}.`);
  }
  // A code this browser did not ask for (or asked for in another tab) is never redeemed;
  // nor one that another provider sent (RFC 9207 `iss`, where the provider gives it).
  const iss = query.get('iss');
  if (!pending || !pending.state || query.get('state') !== pending.state
    || (iss !== null && iss.replace(/\/+$/, '') !== issuerBase(settings))) {
    throw new Error("The sign-in answer did not match this browser's sign-in; start again.");
  }
  const body = await tokenRequest(pending.tokenEndpoint, withResource(settings, {
    grant_type: 'authorization_code',
    code,
    redirect_uri: settings.redirectUri,
    client_id: settings.clientId,
    code_verifier: pending.verifier,
  }));
  if (body.id_token && idTokenNonce(body.id_token) !== pending.nonce) {
    throw new Error("The sign-in answer did not match this browser's sign-in; start again.");
  }
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
