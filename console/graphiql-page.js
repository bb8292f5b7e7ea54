// GraphiQL's page (GET /graphql). A file rather than an inline script, so the page lives
// under the console's Content-Security-Policy.
//
// The bearer token never touches a URL or the disk: the console, which holds it in memory,
// opens this page and hands the token over by postMessage once the page says it is ready
// (same origin only, both ways), and GraphiQL keeps its tabs, history and settings in
// memory — its history stores every query *with its headers*, so localStorage would put
// the token on disk even with header persistence off.
(function () {
  'use strict';
  const READY = 'countersign:graphiql-ready';
  const TOKEN = 'countersign:graphiql-token';

  const problem = document.getElementById('problem');
  const failed = [];
  for (const link of document.querySelectorAll('link[rel="stylesheet"][integrity]')) {
    let rules = 0;
    try {
      rules = link.sheet ? link.sheet.cssRules.length : 0;
    } catch {
      // A sheet that failed to load (or failed its integrity check) has no readable rules.
    }
    if (rules === 0) failed.push(link.href);
  }
  for (const script of document.querySelectorAll('script[data-defines]')) {
    if (typeof window[script.dataset.defines] === 'undefined') failed.push(script.src);
  }
  if (failed.length) {
    document.getElementById('failed').textContent = `Could not load: ${failed.join(', ')}`;
    problem.classList.remove('hidden');
    return;
  }

  // An old `#token=` link is not honoured (it put the token in the browser's history); it
  // does not stay in the address bar either.
  if (/(^#|&)token=/.test(location.hash)) history.replaceState(null, '', location.pathname + location.search);

  // What older versions of this page left behind (queries with their headers) goes.
  try {
    for (const key of Object.keys(localStorage)) if (key.startsWith('graphiql:')) localStorage.removeItem(key);
  } catch {
    // Storage refused (privacy settings): there is nothing of ours in it either.
  }

  function memoryStorage() {
    const items = new Map();
    return {
      getItem: (key) => (items.has(key) ? items.get(key) : null),
      setItem: (key, value) => { items.set(key, String(value)); },
      removeItem: (key) => { items.delete(key); },
      clear: () => { items.clear(); },
      key: (index) => [...items.keys()][index] ?? null,
      get length() { return items.size; },
    };
  }

  const wsScheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
  const fetcher = GraphiQL.createFetcher({
    url: location.pathname,
    subscriptionUrl: `${wsScheme}${location.host}${location.pathname.replace(/\/$/, '')}/ws`,
  });
  const props = {
    fetcher,
    storage: memoryStorage(),
    shouldPersistHeaders: false,
    defaultEditorToolsVisibility: 'headers',
  };
  const root = ReactDOM.createRoot(document.getElementById('graphiql'));
  const show = () => root.render(React.createElement(GraphiQL, props));
  show();

  const hint = document.getElementById('hint');
  const opener = window.opener;
  let handedOver = false;
  if (!opener) {
    hint.classList.remove('hidden');
    return;
  }
  // Opened by some page that does not hand a token over: say how to get one.
  const unanswered = setTimeout(() => hint.classList.remove('hidden'), 2000);
  addEventListener('message', (event) => {
    if (handedOver || event.origin !== location.origin || event.source !== opener) return;
    const data = event.data;
    if (!data || data.type !== TOKEN || typeof data.token !== 'string' || !data.token) return;
    handedOver = true;
    clearTimeout(unanswered);
    hint.classList.add('hidden');
    props.headers = JSON.stringify({ Authorization: `Bearer ${data.token}` }, null, 2);
    show();
  });
  opener.postMessage({ type: READY }, location.origin);
})();
