// The ops console: a client of the public GraphQL API and nothing else. The token lives in
// memory only (never localStorage), so closing the tab signs out.
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { graphql, onUnauthenticated, sentence, viewerMay } from './api.js';
import { createHub, startLive } from './live.js';
import { completeSignIn, renew, signInRedirect } from './oidc.js';
import { MyQueue, AllRequests } from './lists.js';
import { RequestDetail } from './detail.js';
import { NewRequest, mayFile } from './new-request.js';
import { Admin, POLICY_FIELDS } from './admin.js';
import { AuditLog, Operations } from './audit.js';
import { html } from './ui.js';

// The feed's cursor is read with the viewer, before any list: the live feed starts from it.
const VIEWER = `{ requestEventsCursor viewer { subject name email roles permissions { action policy } } policies { ${POLICY_FIELDS} } }`;

/** The token's `exp` (seconds), read only to warn before it lapses; the server verifies it. */
function expiryOf(token) {
  try {
    const payload = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    return typeof payload.exp === 'number' ? payload.exp * 1000 : null;
  } catch {
    return null;
  }
}

function useRoute() {
  const read = () => (location.hash.replace(/^#\/?/, '') || 'queue').split('/');
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const changed = () => setRoute(read());
    addEventListener('hashchange', changed);
    return () => removeEventListener('hashchange', changed);
  }, []);
  return route;
}

function SignIn({ settings, onToken, notice }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const personas = settings.personas ? settings.personaList : [];
  const signIn = async (candidate) => {
    setBusy(true);
    setError(null);
    const problem = await onToken(candidate.trim());
    setBusy(false);
    if (problem) setError(problem);
  };
  const provider = async () => {
    setError(null);
    try {
      await signInRedirect(settings.oidc);
    } catch (err) {
      setError(err.message);
    }
  };
  return html`<main id="main" class="signin">
    <h1>Sign in to Countersign</h1>
    ${notice && html`<p class="notice" role="alert">${notice}</p>`}
    ${settings.oidc && html`<p><button type="button" onClick=${provider}>Sign in with your organisation account</button></p>`}
    ${personas.length > 0 && html`<section aria-labelledby="personas">
      <h2 id="personas">Demo people (development only)</h2>
      <ul class="personas">
        ${personas.map((p) => html`<li key=${p.subject}>
          <button type="button" class="secondary" disabled=${busy} onClick=${() => signIn(p.token)}>
            ${p.name} <small>(${p.roles.join(', ')})</small>
          </button>
        </li>`)}
      </ul>
    </section>`}
    <form onSubmit=${(e) => { e.preventDefault(); signIn(token); }}>
      <label for="token">Paste your access token</label>
      <textarea id="token" value=${token} onInput=${(e) => setToken(e.target.value)} required></textarea>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <button type="submit" disabled=${busy}>Sign in</button>
    </form>
  </main>`;
}

/**
 * Opens GraphiQL signed in as this session. The token goes over by postMessage, to this
 * origin only and once the page asks: in a URL it would land in the browser's history.
 */
function openGraphiql(event, token) {
  event.preventDefault();
  const target = window.open('/graphql', '_blank');
  if (!target) return;
  const handOver = (message) => {
    if (message.origin !== location.origin || message.source !== target) return;
    if (!message.data || message.data.type !== 'countersign:graphiql-ready') return;
    stop();
    if (token.current) target.postMessage({ type: 'countersign:graphiql-token', token: token.current }, location.origin);
  };
  const stop = () => {
    removeEventListener('message', handOver);
    clearTimeout(timer);
  };
  const timer = setTimeout(stop, 30000);
  addEventListener('message', handOver);
}

const LIVE_LABEL = { connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…' };

function Shell({ session, hub, live, policies, setPolicies, onSignOut }) {
  const route = useRoute();
  const { viewer } = session;
  const may = (action) => viewerMay(viewer, action);
  const links = [
    ['queue', 'My queue'],
    ['requests', 'All requests'],
    policies.some((p) => mayFile(viewer, p)) && ['new', 'New request'],
    may('AUDIT_READ') && ['audit', 'Audit log'],
    (may('AUDIT_READ') || may('ACCESS_MANAGE')) && ['operations', 'Operations'],
    (may('POLICY_MANAGE') || may('ACCESS_MANAGE')) && ['admin', 'Administration'],
  ].filter(Boolean);
  const [screen, param] = route;
  let body;
  // Keyed by id: another request is another page, with nothing left over from this one.
  if (screen === 'requests' && param) body = html`<${RequestDetail} key=${param} session=${session} hub=${hub} id=${param} />`;
  else if (screen === 'requests') body = html`<${AllRequests} session=${session} hub=${hub} policies=${policies} />`;
  else if (screen === 'new') body = html`<${NewRequest} session=${session} policies=${policies} />`;
  else if (screen === 'audit') body = html`<${AuditLog} session=${session} />`;
  else if (screen === 'operations') body = html`<${Operations} session=${session} />`;
  else if (screen === 'admin') {
    body = html`<${Admin} session=${session} policies=${policies} tab=${param}
      onPoliciesChanged=${(saved) => setPolicies(policies.map((p) => (p.key === saved.key ? saved : p)))} />`;
  } else body = html`<${MyQueue} session=${session} hub=${hub} />`;
  return html`<div class="shell">
    <a class="skip" href="#main" onClick=${(e) => { e.preventDefault(); document.getElementById('main').focus(); }}>Skip to content</a>
    <header class="top">
      <span class="brand">Countersign</span>
      <nav aria-label="Main"><ul>${links.map(([id, label]) => html`<li><a href=${`#/${id}`} aria-current=${screen === id ? 'page' : undefined}>${label}</a></li>`)}</ul></nav>
      <span class=${`live live-${live}`} role="status" aria-live="polite" data-live=${live}>${LIVE_LABEL[live] || live}</span>
      <span class="who">${viewer.name || viewer.subject} <small>(${viewer.roles.join(', ') || 'no roles'})</small></span>
      <a href="/graphql" target="_blank" onClick=${(e) => openGraphiql(e, session.token)}>GraphiQL</a>
      <button type="button" class="secondary" onClick=${() => onSignOut(null)}>Sign out</button>
    </header>
    <main id="main" tabindex="-1">${body}</main>
  </div>`;
}

function App({ settings, returning }) {
  const [session, setSession] = useState(null);
  const [policies, setPolicies] = useState([]);
  const [live, setLive] = useState('connecting');
  const [notice, setNotice] = useState(returning.error || null);
  const hub = useRef(createHub()).current;
  const token = useRef(null);

  const signOut = (why) => {
    token.current = null;
    setSession(null);
    setNotice(why);
  };

  const accept = async (candidate, oidc = null) => {
    try {
      const data = await graphql(candidate, VIEWER);
      token.current = candidate;
      setPolicies(data.policies);
      setSession({ token, viewer: data.viewer, oidc, cursor: data.requestEventsCursor,
        issuedAt: Date.now(), expiresAt: (oidc && oidc.expiresAt) || expiryOf(candidate) });
      setNotice(null);
      return null;
    } catch (err) {
      return err.code === 'UNAUTHENTICATED'
        ? 'That token was not accepted: it may have expired, or your access was ended. Ask for a new one.'
        : sentence(err);
    }
  };

  useEffect(() => {
    if (returning.session) {
      accept(returning.session.accessToken, returning.session).then((problem) => problem && setNotice(problem));
    }
    onUnauthenticated((refused) => refused === token.current && signOut('Your session has ended: it expired, or an administrator ended your access. Sign in again.'));
  }, []);

  // The live feed lives as long as the session; the server closing it for good signs out.
  useEffect(() => {
    if (!session) return undefined;
    const feed = startLive({
      token,
      cursor: session.cursor,
      readCursor: async () => (await graphql(token.current, '{ requestEventsCursor }')).requestEventsCursor,
      onResync: () => hub.resync(),
      onEvent: (event) => hub.emit(event),
      onStatus: setLive,
      onEnded: (reason, code) => signOut(code === 4430
        ? 'You have too many Countersign windows open. Close some and sign in again.'
        : /disabled/.test(reason) ? 'An administrator has disabled your account, so you were signed out.'
          : 'Your session has ended: it expired or was revoked. Sign in again.'),
    });
    return () => feed.stop();
  }, [session && session.viewer.subject]);

  // Renew a provider's token before it lapses (a minute before, or halfway for short-lived
  // ones), trying again while the provider has not refused the refresh token (a laptop
  // that slept past the expiry still renews); a pasted token just ends.
  useEffect(() => {
    if (!session || !session.expiresAt) return undefined;
    let timer;
    // Signing out (or in as someone else) ends this session's renewals, even one whose
    // answer is still on its way.
    let cancelled = false;
    const expired = () => !cancelled && signOut('Your session has expired. Sign in again to continue.');
    const attempt = async () => {
      const startedWith = token.current;
      try {
        const renewed = await renew(settings.oidc, session.oidc);
        if (cancelled || token.current !== startedWith) return undefined;
        token.current = renewed.accessToken;
        setSession((current) => (current && current.viewer.subject === session.viewer.subject
          ? { ...current, oidc: renewed, issuedAt: Date.now(), expiresAt: renewed.expiresAt } : current));
      } catch (err) {
        if (cancelled) return undefined;
        if (err.code === 'SESSION_EXPIRED') return expired();
        timer = setTimeout(attempt, 5000);
      }
      return undefined;
    };
    const lead = session.oidc ? Math.min(60000, (session.expiresAt - session.issuedAt) / 2) : 0;
    const wait = Math.max(1000, session.expiresAt - Date.now() - lead);
    timer = setTimeout(session.oidc ? attempt : expired, Math.min(wait, 2 ** 31 - 1));
    return () => {
      cancelled = true;
      clearTimeout(timer);
    };
  }, [session && session.expiresAt]);

  if (!session) return html`<${SignIn} settings=${settings} onToken=${(t) => accept(t)} notice=${notice} />`;
  return html`<${Shell} session=${session} hub=${hub} live=${live} policies=${policies} setPolicies=${setPolicies} onSignOut=${signOut} />`;
}

async function boot() {
  const settings = await fetch('/console/config').then((r) => r.json()).catch(() => ({ oidc: null, personas: false }));
  if (settings.oidc && !settings.oidc.redirectUri) settings.oidc.redirectUri = `${location.origin}/`;
  settings.personaList = settings.personas
    ? await fetch('/console/personas').then((r) => (r.ok ? r.json() : [])).catch(() => [])
    : [];
  const returning = {};
  if (settings.oidc) {
    try {
      returning.session = await completeSignIn(settings.oidc);
    } catch (err) {
      returning.error = err.message;
    }
  }
  const root = document.getElementById('app');
  // Preact diffs against what is there: the "Loading" placeholder goes first.
  root.textContent = '';
  render(html`<${App} settings=${settings} returning=${returning} />`, root);
}

boot();
