// One request: everything support needs to answer "what happened?", and the actions the
// viewer may take on it. Every action form makes its idempotency key once, so a double
// click or a retry acts once; a stale view (CONFLICT) is shown the new state and asked again.
import { useEffect, useRef, useState } from 'preact/hooks';
import { graphql, REQUEST_DETAIL, sentence } from './api.js';
import { money, person, statusLabel, timeLeft, when } from './format.js';
import { ErrorText, Field, Status, describedBy, html, newer, useFocusHeading, useMutation, useNow } from './ui.js';

const REQUEST = `query($id: ID!) { request(id: $id) { ${REQUEST_DETAIL} } }`;
const APPROVE = `mutation($input: DecideRequestInput!) { approveRequest(input: $input) { replayed request { ${REQUEST_DETAIL} } } }`;
const REJECT = `mutation($input: DecideRequestInput!) { rejectRequest(input: $input) { replayed request { ${REQUEST_DETAIL} } } }`;
const CANCEL = `mutation($input: CancelRequestInput!) { cancelRequest(input: $input) { replayed request { ${REQUEST_DETAIL} } } }`;

const STAGE_STATE = { ACTIVE: 'Being decided', APPROVED: 'Approved', REJECTED: 'Rejected', CLOSED: 'Closed', SKIPPED: 'Skipped (below its threshold)', WAITING: 'Waiting' };

export function RequestDetail({ session, hub, id }) {
  const [request, setRequest] = useState(null);
  const heading = useFocusHeading(`${id}:${request ? 'loaded' : 'loading'}`);
  const [missing, setMissing] = useState(false);
  const [error, setError] = useState(null);
  // Outlives the form: after a conflict the viewer may no longer be able to act at all.
  const [notice, setNotice] = useState(null);
  const [done, setDone] = useState(null);
  const shown = useRef(null);
  const now = useNow(15000);

  // Only this page's request, and never an older state than the one shown: answers can
  // arrive out of order (a live reload racing a mutation's answer).
  const show = (next) => {
    if (!next || next.id !== id || !newer(shown.current, next)) return shown.current;
    shown.current = next;
    setRequest(next);
    return next;
  };

  const reload = async () => {
    try {
      const data = await graphql(session.token.current, REQUEST, { id });
      if (!data.request) {
        if (id === shown.current?.id || !shown.current) setMissing(true);
        return null;
      }
      setError(null);
      return show(data.request);
    } catch (err) {
      setError(sentence(err));
      return null;
    }
  };

  useEffect(() => {
    shown.current = null;
    setRequest(null);
    setMissing(false);
    setNotice(null);
    setDone(null);
    reload();
    const resynced = hub.onResync(() => reload());
    // Another person's decision shows here without a reload. While the viewer could act,
    // a change is spelled out: what they were about to decide on is not what is there now.
    const stop = hub.listen(async (event) => {
      if (event.request.id !== id) return;
      const before = shown.current;
      const after = await reload();
      const byOthers = event.actor.subject !== session.viewer.subject;
      if (byOthers && before && after && after.version !== before.version && before.viewerCanApprove) {
        setNotice(changes(before, after));
      }
    });
    return () => {
      stop();
      resynced();
    };
  }, [id]);

  if (missing) return html`<section><h1 tabindex="-1" ref=${heading}>Request not found</h1><p>It does not exist, or you are not allowed to see it.</p><p><a href="#/requests">Back to all requests</a></p></section>`;
  if (!request) return html`<section><h1 tabindex="-1" ref=${heading}>Request</h1><${ErrorText} error=${error} />${!error && html`<p aria-busy="true">Loading…</p>`}</section>`;

  const acted = (next, what) => {
    setNotice(null);
    setDone(what);
    show(next);
  };
  // The API's rule (access::may_cancel), never re-derived here.
  const pending = request.status === 'PENDING';
  const mayCancel = request.viewerCanCancel;
  return html`<article aria-labelledby="detail-heading" class="detail">
    <p><a href="#/requests">← All requests</a></p>
    <h1 id="detail-heading" tabindex="-1" ref=${heading}>${request.title}</h1>
    <${ErrorText} error=${error} />
    <p role="status" class="ok">${done || ''}</p>
    <p class="summary"><${Status} status=${request.status} />
      <span class="amount big">${money(request.amount, request.currency)}</span>
      ${pending ? html`<span class="deadline">${timeLeft(request.expiresAt, now)} <small>(until ${when(request.expiresAt)})</small></span>`
        : html`<span>Decided ${when(request.decidedAt)}</span>`}</p>
    <dl class="facts">
      <dt>Requester</dt><dd>${person(request.requester)}</dd>
      <dt>Policy</dt><dd>${request.policy.name} (version ${request.policy.version})</dd>
      <dt>Filed</dt><dd>${when(request.createdAt)}</dd>
      ${request.description && html`<dt>Description</dt><dd class="prewrap">${request.description}</dd>`}
    </dl>
    <${Payload} payload=${request.payload} />
    <${StageLadder} request=${request} />
    ${pending && html`<section aria-labelledby="who-heading"><h2 id="who-heading">Who can approve now</h2>
      ${request.eligibleApprovers.users.length
        ? html`<ul>${request.eligibleApprovers.users.map((u) => html`<li key=${u.subject}>${person(u)}</li>`)}</ul>`
        : html`<p>Nobody known to Countersign may decide it now. It needs someone with the role ${request.eligibleApprovers.roles.join(' or ') || '(none)'} who has not decided it before.</p>`}
      <p class="hint">Roles that decide this stage: ${request.eligibleApprovers.roles.join(', ')}</p></section>`}
    ${notice && html`<div class="conflict" role="alert"><strong>This request changed while you were looking at it.</strong>
      <ul>${notice.map((line) => html`<li>${line}</li>`)}</ul>
      <p>${request.viewerCanApprove || mayCancel ? 'Check it again before you act.' : 'There is nothing left for you to do on it.'}</p></div>`}
    ${request.viewerCanApprove && html`<${DecideForm} key=${request.id} session=${session} request=${request} onDone=${acted} reload=${reload} onConflict=${setNotice} />`}
    ${mayCancel && html`<${CancelForm} session=${session} request=${request} onDone=${acted} reload=${reload} onConflict=${setNotice} />`}
    <${Decisions} decisions=${request.decisions} />
    <${Timeline} events=${request.auditTrail} />
  </article>`;
}

function Payload({ payload }) {
  if (!payload || typeof payload !== 'object' || Object.keys(payload).length === 0) return null;
  return html`<section aria-labelledby="payload-heading"><h2 id="payload-heading">Details</h2>
    <dl class="facts">${Object.entries(payload).map(([key, value]) => html`<dt>${key}</dt><dd>${
      value !== null && typeof value === 'object' ? html`<pre>${JSON.stringify(value, null, 2)}</pre>` : String(value)}</dd>`)}</dl>
  </section>`;
}

function StageLadder({ request }) {
  return html`<section aria-labelledby="stages-heading"><h2 id="stages-heading">Stages</h2>
    <ol class="ladder">${request.stages.map((s) => html`<li key=${s.position} class=${`stage stage-${s.state.toLowerCase()}`} data-state=${s.state}>
      <strong>${s.name}</strong> — ${STAGE_STATE[s.state] || s.state}
      <span class="hint"> · ${s.approvals} of ${s.requiredApprovals} approval${s.requiredApprovals === 1 ? '' : 's'} · ${s.approverRoles.join(', ')}${s.minAmount ? ` · from ${money(s.minAmount, request.currency)}` : ''}</span>
    </li>`)}</ol>
  </section>`;
}

function Decisions({ decisions }) {
  return html`<section aria-labelledby="decisions-heading"><h2 id="decisions-heading">Decisions</h2>
    ${decisions.length === 0 ? html`<p>No decision yet.</p>` : html`<ul class="decisions">${decisions.map((d) => html`<li key=${d.id} class="decision">
      <strong>${d.verdict === 'APPROVE' ? 'Approved' : 'Rejected'}</strong> by ${person(d.approver)} at stage ${d.stage}, ${when(d.createdAt)}
      ${d.comment && html`<blockquote>${d.comment}</blockquote>`}
    </li>`)}</ul>`}
  </section>`;
}

function Timeline({ events }) {
  return html`<section aria-labelledby="history-heading"><h2 id="history-heading">History</h2>
    <ol class="timeline">${events.map((e) => html`<li key=${e.id} data-action=${e.action}>
      <time datetime=${e.occurredAt}>${when(e.occurredAt)}</time> ${e.summary}${e.reason && !e.summary.includes(e.reason) ? html` — “${e.reason}”` : ''}
    </li>`)}</ol>
  </section>`;
}

/** What changed between what the viewer saw and what is there now. */
function changes(before, after) {
  const lines = [];
  if (before.status !== after.status) lines.push(`It is now ${statusLabel(after.status).toLowerCase()}.`);
  if (before.currentStage !== after.currentStage && after.status === 'PENDING') lines.push(`It moved on to stage ${after.currentStage}.`);
  const seen = new Set(before.decisions.map((d) => d.id));
  for (const d of after.decisions.filter((x) => !seen.has(x.id))) {
    lines.push(`${person(d.approver)} ${d.verdict === 'APPROVE' ? 'approved' : 'rejected'} it${d.comment ? `: “${d.comment}”` : ''}.`);
  }
  return lines.length ? lines : ['Its details changed.'];
}

/** A decision or cancellation: a stale view (CONFLICT) is reloaded and what changed said. */
function useAction({ session, onDone, reload, onConflict, request }) {
  const mutation = useMutation(session);
  const settle = async ({ data, error }, field, what) => {
    if (data) onDone(data[field].request, what);
    if (error && (error.code === 'CONFLICT' || error.code === 'INVALID_TRANSITION')) {
      const now = await reload();
      if (now) {
        mutation.setError(null);
        onConflict(changes(request, now));
      }
    }
  };
  const run = async (query, input, field, what) => {
    onConflict(null);
    await settle(await mutation.run(query, input), field, what);
  };
  // The same call again, with the same key; a stale view is handled as on the first try.
  const retry = async (field, what) => {
    onConflict(null);
    await settle(await mutation.retry(), field, what);
  };
  return { ...mutation, run, retry };
}

/** When the answer to an action was lost: the same action again (it acts at most once). */
function Uncertain({ action, field, what }) {
  if (!action.uncertain) return null;
  const again = () => action.retry(field, what);
  return html`<p><button type="button" onClick=${again} disabled=${action.busy}>Try again</button></p>`;
}

function DecideForm(props) {
  const { request } = props;
  const [comment, setComment] = useState('');
  const [commentError, setCommentError] = useState(null);
  const action = useAction(props);
  const commentRef = useRef(null);
  const decide = (verdict) => (e) => {
    e.preventDefault();
    if (verdict === 'REJECT' && !comment.trim()) {
      setCommentError('Write why you reject it: a comment is required to reject.');
      if (commentRef.current) commentRef.current.focus();
      return;
    }
    setCommentError(null);
    action.run(verdict === 'APPROVE' ? APPROVE : REJECT,
      { id: request.id, expectedVersion: request.version, comment: comment.trim() || null },
      verdict === 'APPROVE' ? 'approveRequest' : 'rejectRequest',
      verdict === 'APPROVE' ? 'You approved it. Your decision is recorded.' : 'You rejected it. Your decision is recorded.');
  };
  const field = action.uncertain && action.uncertain.query === REJECT ? 'rejectRequest' : 'approveRequest';
  return html`<form class="action" onSubmit=${decide('APPROVE')} aria-labelledby="decide-heading">
    <h2 id="decide-heading">Your decision</h2>
    <${Field} id="decision-comment" label="Comment" hint="Optional to approve, required to reject." error=${commentError}>
      <textarea id="decision-comment" ref=${commentRef} value=${comment} onInput=${(e) => setComment(e.target.value)}
        readOnly=${action.busy || Boolean(action.uncertain)}
        aria-invalid=${commentError ? 'true' : 'false'} aria-describedby=${describedBy('decision-comment', true, commentError)}></textarea>
    </${Field}>
    <${ErrorText} error=${action.error} />
    <${Uncertain} action=${action} onDone=${props.onDone} field=${field} what="Your decision is recorded." />
    <div class="buttons">
      <button type="submit" disabled=${action.busy || action.uncertain}>Approve</button>
      <button type="button" class="danger" disabled=${action.busy || action.uncertain} onClick=${decide('REJECT')}>Reject</button>
    </div>
  </form>`;
}

function CancelForm(props) {
  const { request } = props;
  const [reason, setReason] = useState('');
  const [reasonError, setReasonError] = useState(null);
  const action = useAction(props);
  const cancel = (e) => {
    e.preventDefault();
    if (!reason.trim()) {
      setReasonError('Say why it is cancelled: the requester and the audit log will see it.');
      return;
    }
    setReasonError(null);
    action.run(CANCEL, { id: request.id, reason: reason.trim() }, 'cancelRequest', 'You cancelled it.');
  };
  return html`<form class="action" onSubmit=${cancel} aria-labelledby="cancel-heading">
    <h2 id="cancel-heading">Cancel this request</h2>
    <${Field} id="cancel-reason" label="Reason" error=${reasonError}>
      <input id="cancel-reason" value=${reason} onInput=${(e) => setReason(e.target.value)}
        readOnly=${action.busy || Boolean(action.uncertain)}
        aria-invalid=${reasonError ? 'true' : 'false'} aria-describedby=${describedBy('cancel-reason', false, reasonError)} />
    </${Field}>
    <${ErrorText} error=${action.error} />
    <${Uncertain} action=${action} onDone=${props.onDone} field="cancelRequest" what="You cancelled it." />
    <button type="submit" class="secondary" disabled=${action.busy || action.uncertain}>Cancel request</button>
  </form>`;
}
