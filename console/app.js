// The ops console: a client of the public GraphQL API and nothing else. The token lives
// in memory only (never localStorage), so closing the tab signs out.
import { h, render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';

const html = htm.bind(h);

async function graphql(token, query, variables = {}) {
  const response = await fetch('/graphql', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors && body.errors.length) {
    const error = new Error(body.errors[0].message);
    error.code = body.errors[0].extensions && body.errors[0].extensions.code;
    throw error;
  }
  return body.data;
}

/** The demo personas and their tokens: development servers only (production answers 404). */
function usePersonas() {
  const [personas, setPersonas] = useState([]);
  useEffect(() => {
    fetch('/console/personas')
      .then((response) => (response.ok ? response.json() : []))
      .then(setPersonas)
      .catch(() => setPersonas([]));
  }, []);
  return personas;
}

function SignIn({ onSignedIn }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState(null);
  const personas = usePersonas();
  const signIn = async (candidate) => {
    try {
      const data = await graphql(candidate, '{ viewer { subject name roles } }');
      onSignedIn({ token: candidate, viewer: data.viewer });
    } catch (err) {
      setError(err.code === 'UNAUTHENTICATED'
        ? 'That token was not accepted: it may have expired. Ask for a new one.'
        : 'Could not sign in. Try again in a moment.');
    }
  };
  const submit = (event) => {
    event.preventDefault();
    signIn(token.trim());
  };
  return html`<form onSubmit=${submit}>
    <h1>Sign in to Countersign</h1>
    ${personas.length > 0 && html`<section aria-labelledby="personas">
      <h2 id="personas">Demo people (development only)</h2>
      <ul class="personas">
        ${personas.map((p) => html`<li key=${p.subject}>
          <button type="button" class="secondary" onClick=${() => signIn(p.token)}>
            ${p.name} <small>(${p.roles.join(', ')})</small>
          </button>
        </li>`)}
      </ul>
    </section>`}
    <label for="token">Paste your access token</label>
    <textarea id="token" value=${token} onInput=${(e) => setToken(e.target.value)} required></textarea>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    <button type="submit">Sign in</button>
  </form>`;
}

function App() {
  const [session, setSession] = useState(null);
  if (!session) {
    return html`<${SignIn} onSignedIn=${setSession} />`;
  }
  const { viewer } = session;
  return html`<header>
    <h1>Countersign</h1>
    <span>Signed in as <strong>${viewer.name || viewer.subject}</strong> (${viewer.roles.join(', ')})</span>
    <button class="secondary" onClick=${() => setSession(null)}>Sign out</button>
  </header>`;
}

const root = document.getElementById('app');
// Preact diffs against what is there: the "Loading" placeholder goes first.
root.textContent = '';
render(html`<${App} />`, root);
