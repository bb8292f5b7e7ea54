// For auditors and admins: the audit log (filters, "load more", verify the hash chain), and
// what is stuck right now (operations overview, webhook dead letters with replay).
import { useEffect, useState } from 'preact/hooks';
import { graphql, sentence } from './api.js';
import { when } from './format.js';
import { ErrorText, html, useFocusHeading, useMutation } from './ui.js';

const AUDIT = `query($filter: AuditEventFilter, $after: String) { auditEvents(filter: $filter, first: 50, after: $after) {
  edges { node { id sequence action actor actorRoles summary reason occurredAt subjectType subjectId requestId correlationId } }
  pageInfo { hasNextPage endCursor } } }`;
const VERIFY = `query { verifyAuditChain { ok checked firstBrokenSequence headSequence headHash } }`;

export function AuditLog({ session }) {
  const heading = useFocusHeading('audit');
  const [draft, setDraft] = useState({ actor: '', action: '', subjectType: '', requestId: '' });
  const [events, setEvents] = useState([]);
  const [next, setNext] = useState(null);
  const [error, setError] = useState(null);
  const [report, setReport] = useState(null);
  const [verifying, setVerifying] = useState(false);
  // "Load more" continues the list on screen: the filter it was loaded with, not the boxes.
  const [applied, setApplied] = useState({});
  const load = async (after = null) => {
    setError(null);
    const filter = after ? applied : Object.fromEntries(Object.entries(draft).filter(([, v]) => v.trim()).map(([k, v]) => [k, v.trim()]));
    try {
      const data = await graphql(session.token.current, AUDIT, { filter, after });
      setApplied(filter);
      const nodes = data.auditEvents.edges.map((e) => e.node);
      setEvents(after ? events.concat(nodes) : nodes);
      setNext(data.auditEvents.pageInfo.hasNextPage ? data.auditEvents.pageInfo.endCursor : null);
    } catch (err) {
      setError(sentence(err));
    }
  };
  const verify = async () => {
    setVerifying(true);
    setReport(null);
    try {
      setReport((await graphql(session.token.current, VERIFY)).verifyAuditChain);
    } catch (err) {
      setError(sentence(err));
    } finally {
      setVerifying(false);
    }
  };
  useEffect(() => { load(); }, []);
  const set = (name) => (e) => setDraft({ ...draft, [name]: e.target.value });
  return html`<section aria-labelledby="audit-heading">
    <h1 id="audit-heading" tabindex="-1" ref=${heading}>Audit log</h1>
    <div class="toolbar">
      <button type="button" class="secondary" onClick=${verify} disabled=${verifying}>${verifying ? 'Verifying…' : 'Verify chain'}</button>
      <p role="status" class=${report ? (report.ok ? 'ok' : 'error') : ''}>${report && (report.ok
        ? `Chain intact: ${report.checked} events checked, head #${report.headSequence}.`
        : `Chain broken at event #${report.firstBrokenSequence}: the stored history was changed. Escalate now (see the runbook).`)}</p>
    </div>
    <form class="filters" onSubmit=${(e) => { e.preventDefault(); load(); }} aria-label="Filter the audit log">
      <div><label for="a-actor">Actor</label><input id="a-actor" value=${draft.actor} onInput=${set('actor')} placeholder="e.g. bob" /></div>
      <div><label for="a-action">Action</label><input id="a-action" value=${draft.action} onInput=${set('action')} placeholder="e.g. request.approved" /></div>
      <div><label for="a-type">Subject type</label>
        <select id="a-type" value=${draft.subjectType} onChange=${set('subjectType')}>
          <option value="">Any</option>${['request', 'policy', 'role', 'user', 'webhook'].map((t) => html`<option value=${t}>${t}</option>`)}</select></div>
      <div><label for="a-request">Request id</label><input id="a-request" value=${draft.requestId} onInput=${set('requestId')} /></div>
      <div class="filter-actions"><button type="submit">Apply filters</button></div>
    </form>
    <${ErrorText} error=${error} />
    <ul class="timeline audit">${events.map((e) => html`<li key=${e.id} data-action=${e.action}>
      <span class="seq">#${e.sequence}</span> <time datetime=${e.occurredAt}>${when(e.occurredAt)}</time> ${e.summary}${e.reason && !e.summary.includes(e.reason) ? html` — “${e.reason}”` : ''}
      ${e.requestId && html` <a href=${`#/requests/${e.requestId}`}>open request</a>`}
      <span class="hint"> · ${e.action} by ${e.actor}${e.actorRoles.length ? ` (${e.actorRoles.join(', ')})` : ''}</span>
    </li>`)}</ul>
    ${next && html`<button class="secondary" onClick=${() => load(next)}>Load more</button>`}
  </section>`;
}

const OVERVIEW = `query { operationsOverview { asOf expiredLast24h
  queues { policy pending nearDeadline oldestPendingAgeSeconds }
  nearDeadline { requestId title policy secondsLeft expiresAt }
  webhooks { pending undispatched deadLetters oldestPendingAgeSeconds }
  auditChainHead { sequence hash } } }`;
const DEAD = `query($after: String) { webhookDeliveries(filter: { status: DEAD }, first: 50, after: $after) {
  edges { node { id eventId webhookId kind attempts lastStatus lastError deadLetteredAt createdAt } } pageInfo { hasNextPage endCursor } } }`;
const REPLAY = `mutation($input: ReplayWebhookDeliveryInput!) { replayWebhookDelivery(input: $input) { delivery { id status } } }`;

function age(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

export function Operations({ session }) {
  const heading = useFocusHeading('operations');
  const [overview, setOverview] = useState(null);
  const [dead, setDead] = useState([]);
  const [error, setError] = useState(null);
  const load = async () => {
    setError(null);
    try {
      const [o, d] = await Promise.all([graphql(session.token.current, OVERVIEW), graphql(session.token.current, DEAD)]);
      setOverview(o.operationsOverview);
      setDead(d.webhookDeliveries.edges.map((e) => e.node));
    } catch (err) {
      setError(sentence(err));
    }
  };
  useEffect(() => { load(); }, []);
  return html`<section aria-labelledby="ops-heading">
    <h1 id="ops-heading" tabindex="-1" ref=${heading}>Operations</h1>
    <div class="toolbar"><button type="button" class="secondary" onClick=${load}>Refresh</button>
      ${overview && html`<span class="hint">As of ${when(overview.asOf)}</span>`}</div>
    <${ErrorText} error=${error} />
    ${overview && html`<div class="cards">
      <div class="card"><h2>Expired in 24 h</h2><p class="big">${overview.expiredLast24h}</p></div>
      <div class="card"><h2>Webhooks</h2><p>${overview.webhooks.pending} pending · ${overview.webhooks.undispatched} not dispatched · <strong>${overview.webhooks.deadLetters} dead letters</strong> · oldest ${age(overview.webhooks.oldestPendingAgeSeconds)}</p></div>
      <div class="card"><h2>Audit chain head</h2><p>#${overview.auditChainHead.sequence} <code class="hash">${overview.auditChainHead.hash.slice(0, 16)}…</code></p></div>
    </div>
    <h2>Queues</h2>
    <table class="plain"><caption class="visually-hidden">Pending requests per policy</caption>
      <thead><tr><th scope="col">Policy</th><th scope="col">Pending</th><th scope="col">Near deadline</th><th scope="col">Oldest</th></tr></thead>
      <tbody>${overview.queues.length === 0 ? html`<tr><td colspan="4">Nothing pending.</td></tr>` : overview.queues.map((q) => html`<tr key=${q.policy}>
        <td data-label="Policy">${q.policy}</td><td data-label="Pending">${q.pending}</td><td data-label="Near deadline">${q.nearDeadline}</td><td data-label="Oldest">${age(q.oldestPendingAgeSeconds)}</td></tr>`)}</tbody></table>
    ${overview.nearDeadline.length > 0 && html`<h2>Deadlines at risk</h2><ul>${overview.nearDeadline.map((r) => html`<li key=${r.requestId}>
      <a href=${`#/requests/${r.requestId}`}>${r.title}</a> (${r.policy}) — ${age(r.secondsLeft)} left</li>`)}</ul>`}`}
    <h2>Webhook dead letters</h2>
    ${dead.length === 0 ? html`<p>No dead letters.</p>` : html`<ul class="users">${dead.map((d) => html`<${DeadLetter} key=${d.id} session=${session} delivery=${d} onReplayed=${load} />`)}</ul>`}
  </section>`;
}

function DeadLetter({ session, delivery, onReplayed }) {
  const mutation = useMutation(session);
  const replay = async () => {
    const { data } = await mutation.run(REPLAY, { id: delivery.id });
    if (data) onReplayed();
  };
  return html`<li class="user">
    <div><strong>${delivery.kind || 'event'}</strong> to webhook <code>${delivery.webhookId}</code>
      <p class="hint">${delivery.attempts} attempts · last ${delivery.lastStatus ? `HTTP ${delivery.lastStatus}` : delivery.lastError || 'no answer'} · dead since ${when(delivery.deadLetteredAt)}</p></div>
    <button type="button" onClick=${replay} disabled=${mutation.busy} aria-label=${`Replay delivery ${delivery.id}`}>Replay</button>
    <${ErrorText} error=${mutation.error} />
  </li>`;
}
