// "My queue" and "All requests": keyset pages from the API, kept current by live events.
import { useEffect, useRef, useState } from 'preact/hooks';
import { graphql, REQUEST_ROW, sentence } from './api.js';
import { money, person, statusLabel, timeLeft, when } from './format.js';
import { ErrorText, Status, html, newer, useFocusHeading, useNow } from './ui.js';

const PAGE = 25;

/**
 * A list loaded page by page whose rows events update. Events that arrive while the first
 * page is loading wait, then apply on top of it (only when newer), so nothing is lost
 * between the read and the live feed.
 */
function useLiveList({ session, hub, load, place, deps }) {
  // Bumped when the live feed starts again from now: the list is read again.
  const [round, setRound] = useState(0);
  useEffect(() => hub.onResync(() => setRound((r) => r + 1)), []);
  const [rows, setRows] = useState([]);
  const [next, setNext] = useState(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState(null);
  const fresh = useRef(new Set());
  // Which list this is (filters, order): an answer for an earlier one is dropped.
  const generation = useRef(0);
  // Events that arrive while a page is being read: the page may predate them, so they are
  // applied again on top of it. Kept only while a read is under way.
  const seen = useRef(null);
  // Whether rows beyond the last one shown exist (a later page brings them).
  const partial = useRef(false);
  const apply = (current, event) => place(current, event, fresh.current, partial.current);

  useEffect(() => {
    const mine = ++generation.current;
    let loaded = false;
    seen.current = [];
    partial.current = false;
    setRows([]);
    setNext(null);
    setLoading(true);
    setError(null);
    fresh.current = new Set();
    const stop = hub.listen((event) => {
      if (seen.current) seen.current.push(event);
      if (loaded) setRows((current) => apply(current, event));
    });
    load(null)
      .then(({ nodes, pageInfo }) => {
        if (mine !== generation.current) return;
        loaded = true;
        partial.current = pageInfo.hasNextPage;
        setRows(seen.current.reduce(apply, nodes));
        seen.current = null;
        setNext(pageInfo.hasNextPage ? pageInfo.endCursor : null);
      })
      .catch((err) => {
        if (mine !== generation.current) return;
        seen.current = null;
        setError(sentence(err));
      })
      .finally(() => mine === generation.current && setLoading(false));
    return () => {
      generation.current += 1;
      stop();
    };
  }, [...deps, round]);

  const more = async () => {
    const mine = generation.current;
    setLoading(true);
    seen.current = [];
    try {
      const { nodes, pageInfo } = await load(next);
      if (mine !== generation.current) return;
      const during = seen.current;
      partial.current = pageInfo.hasNextPage;
      setRows((current) => {
        const known = new Set(current.map((r) => r.id));
        // The new page may predate what happened while it was read: replay that on top
        // (applying an event twice changes nothing).
        return during.reduce(apply, current.concat(nodes.filter((n) => !known.has(n.id))));
      });
      setNext(pageInfo.hasNextPage ? pageInfo.endCursor : null);
    } catch (err) {
      if (mine === generation.current) setError(sentence(err));
    } finally {
      if (mine === generation.current) {
        seen.current = null;
        setLoading(false);
      }
    }
  };
  return { rows, next, loading, error, more, fresh: fresh.current };
}

function replace(rows, request) {
  return rows.map((row) => (row.id === request.id && newer(row, request) ? request : row));
}

function RequestTable({ rows, fresh, caption, empty, showDeadline }) {
  const now = useNow();
  if (rows.length === 0) return html`<p class="empty">${empty}</p>`;
  return html`<table class="requests">
    <caption class="visually-hidden">${caption}</caption>
    <thead><tr><th scope="col">Request</th><th scope="col">Amount</th><th scope="col">Policy</th>
      <th scope="col">Requester</th><th scope="col">Status</th><th scope="col">${showDeadline ? 'Time left' : 'Deadline or outcome'}</th></tr></thead>
    <tbody>
      ${rows.map((r) => html`<tr key=${r.id} class=${fresh.has(r.id) ? 'fresh' : ''} data-id=${r.id}>
        <td data-label="Request"><a href=${`#/requests/${r.id}`}>${r.title}</a>${fresh.has(r.id) ? html` <span class="new-badge">New</span>` : ''}</td>
        <td data-label="Amount" class="amount">${money(r.amount, r.currency)}</td>
        <td data-label="Policy">${r.policy.name}</td>
        <td data-label="Requester">${person(r.requester)}</td>
        <td data-label="Status"><${Status} status=${r.status} /></td>
        <td data-label=${showDeadline ? 'Time left' : 'Deadline'}>${showDeadline || r.status === 'PENDING'
          ? html`<span title=${when(r.expiresAt)}>${timeLeft(r.expiresAt, now)}</span>`
          : `${statusLabel(r.status)} ${when(r.decidedAt || r.createdAt)}`}</td>
      </tr>`)}
    </tbody>
  </table>`;
}

/** Says, to a screen reader too, that requests arrived while the list was on screen. */
function Arrivals({ count }) {
  return html`<p class="visually-hidden" aria-live="polite">${count ? `${count} new request${count === 1 ? '' : 's'} arrived (marked New).` : ''}</p>`;
}

const MY_QUEUE = `query($after: String, $first: Int, $order: RequestOrder) {
  myQueue(first: $first, after: $after, orderBy: $order) { edges { node { ${REQUEST_ROW} } } pageInfo { hasNextPage endCursor } }
}`;

export function MyQueue({ session, hub }) {
  const heading = useFocusHeading('queue');
  const [order, setOrder] = useState('oldest');
  // A request that arrives live takes its place in the server's order.
  const by = order === 'oldest' ? 'createdAt' : 'expiresAt';
  const compare = (a, b) => Date.parse(a[by]) - Date.parse(b[by]) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  const list = useLiveList({
    session,
    hub,
    deps: [order],
    load: async (after) => {
      const data = await graphql(session.token.current, MY_QUEUE, { after, first: PAGE, order: order === 'oldest' ? 'CREATED_AT_ASC' : 'EXPIRES_AT_ASC' });
      return { nodes: data.myQueue.edges.map((e) => e.node), pageInfo: data.myQueue.pageInfo };
    },
    // Mine to decide now: pending and viewerCanApprove (the event carries it for me).
    place: (rows, event, fresh, partial) => {
      const request = event.request;
      const present = rows.find((r) => r.id === request.id);
      if (request.status === 'PENDING' && request.viewerCanApprove) {
        if (present) return replace(rows, request);
        // Past the last row shown while more pages wait: "Load more" brings it in order.
        if (partial && rows.length && compare(request, rows[rows.length - 1]) > 0) return rows;
        fresh.add(request.id);
        return rows.concat([request]).sort(compare);
      }
      return present && newer(present, request) ? rows.filter((r) => r.id !== request.id) : rows;
    },
  });
  const rows = list.rows;
  return html`<section aria-labelledby="queue-heading">
    <h1 id="queue-heading" tabindex="-1" ref=${heading}>My queue</h1>
    <p>Requests you may decide now.</p>
    <div class="toolbar">
      <label for="queue-order" class="inline">Order</label>
      <select id="queue-order" value=${order} onChange=${(e) => setOrder(e.target.value)}>
        <option value="oldest">Oldest first</option>
        <option value="deadline">Nearest deadline first</option>
      </select>
    </div>
    <${ErrorText} error=${list.error} />
    ${list.loading && list.rows.length === 0 ? html`<p aria-busy="true">Loading…</p>`
      : html`<${RequestTable} rows=${rows} fresh=${list.fresh} caption="Requests you may decide now" empty="Nothing waits for you right now." showDeadline=${true} />`}
    ${list.next && html`<button class="secondary" onClick=${list.more} disabled=${list.loading}>Load more</button>`}
    <${Arrivals} count=${list.fresh.size} />
  </section>`;
}

const REQUESTS = `query($after: String, $first: Int, $filter: RequestFilter) {
  requests(first: $first, after: $after, filter: $filter) { edges { node { ${REQUEST_ROW} } } pageInfo { hasNextPage endCursor } }
}`;

function matches(filter, request) {
  if (filter.status && request.status !== filter.status) return false;
  if (filter.policy && request.policy.key !== filter.policy) return false;
  if (filter.requester && request.requester.subject !== filter.requester) return false;
  if (filter.search && !request.title.toLowerCase().includes(filter.search.toLowerCase())) return false;
  return true;
}

export function AllRequests({ session, hub, policies }) {
  const heading = useFocusHeading('requests');
  const [draft, setDraft] = useState({ status: '', policy: '', requester: '', search: '' });
  const [filter, setFilter] = useState({});
  const list = useLiveList({
    session,
    hub,
    deps: [JSON.stringify(filter)],
    load: async (after) => {
      const data = await graphql(session.token.current, REQUESTS, { after, first: PAGE, filter });
      return { nodes: data.requests.edges.map((e) => e.node), pageInfo: data.requests.pageInfo };
    },
    // Newest first: a request filed now goes on top; one that changes stays where it is.
    place: (rows, event, fresh) => {
      const request = event.request;
      if (rows.some((r) => r.id === request.id)) return replace(rows, request);
      if (event.kind === 'SUBMITTED' && matches(filter, request)) {
        fresh.add(request.id);
        return [request].concat(rows);
      }
      return rows;
    },
  });
  const set = (name) => (e) => setDraft({ ...draft, [name]: e.target.value });
  const apply = (e) => {
    e.preventDefault();
    const next = {};
    for (const [key, value] of Object.entries(draft)) if (value.trim()) next[key] = value.trim();
    setFilter(next);
  };
  return html`<section aria-labelledby="requests-heading">
    <h1 id="requests-heading" tabindex="-1" ref=${heading}>All requests</h1>
    <form class="filters" onSubmit=${apply} aria-label="Filter requests">
      <div><label for="f-status">Status</label>
        <select id="f-status" value=${draft.status} onChange=${set('status')}>
          <option value="">Any</option>
          ${['PENDING', 'APPROVED', 'REJECTED', 'CANCELLED', 'EXPIRED'].map((s) => html`<option value=${s}>${s[0] + s.slice(1).toLowerCase()}</option>`)}
        </select></div>
      <div><label for="f-policy">Policy</label>
        <select id="f-policy" value=${draft.policy} onChange=${set('policy')}>
          <option value="">Any</option>
          ${policies.map((p) => html`<option value=${p.key}>${p.name}</option>`)}
        </select></div>
      <div><label for="f-requester">Requester</label>
        <input id="f-requester" value=${draft.requester} onInput=${set('requester')} placeholder="subject, e.g. alice" /></div>
      <div><label for="f-search">Title contains</label>
        <input id="f-search" type="search" value=${draft.search} onInput=${set('search')} /></div>
      <div class="filter-actions"><button type="submit">Apply filters</button></div>
    </form>
    <${ErrorText} error=${list.error} />
    ${list.loading && list.rows.length === 0 ? html`<p aria-busy="true">Loading…</p>`
      : html`<${RequestTable} rows=${list.rows} fresh=${list.fresh} caption="Requests you may see, newest first" empty="No request matches." showDeadline=${false} />`}
    ${list.next && html`<button class="secondary" onClick=${list.more} disabled=${list.loading}>Load more</button>`}
    <${Arrivals} count=${list.fresh.size} />
  </section>`;
}
