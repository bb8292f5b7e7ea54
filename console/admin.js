// Administration: policies and their stages, what each role may do, and people's access.
// Every change is a mutation the API audits; each form makes its idempotency key once.
import { useEffect, useRef, useState } from 'preact/hooks';
import { graphql, newKey, sentence, viewerMay } from './api.js';
import { person, when } from './format.js';
import { ErrorText, Field, html, useFocusHeading, useMutation } from './ui.js';

export const POLICY_FIELDS = `key name description version createdAt createdBy expiresAfterSeconds
  allowSameApproverAcrossStages payloadSchema
  stages { position name approverRoles requiredApprovals minAmounts { amount currency } }`;

export function Admin({ session, policies, onPoliciesChanged, tab }) {
  const heading = useFocusHeading(`admin-${tab}`);
  const may = (action) => viewerMay(session.viewer, action);
  const tabs = [
    may('POLICY_MANAGE') && ['policies', 'Policies'],
    may('ACCESS_MANAGE') && ['permissions', 'Role permissions'],
    may('ACCESS_MANAGE') && ['users', 'Users'],
  ].filter(Boolean);
  const current = tabs.find(([id]) => id === tab) ? tab : (tabs[0] || [])[0];
  return html`<section aria-labelledby="admin-heading">
    <h1 id="admin-heading" tabindex="-1" ref=${heading}>Administration</h1>
    <nav aria-label="Administration sections" class="tabs">${tabs.map(([id, label]) => html`<a href=${`#/admin/${id}`}
      aria-current=${id === current ? 'page' : undefined}>${label}</a>`)}</nav>
    ${current === 'policies' && html`<${Policies} session=${session} policies=${policies} onChanged=${onPoliciesChanged} />`}
    ${current === 'permissions' && html`<${Permissions} session=${session} policies=${policies} />`}
    ${current === 'users' && html`<${Users} session=${session} />`}
    ${!current && html`<p>You have no administration rights.</p>`}
  </section>`;
}

const UPSERT = `mutation($input: UpsertPolicyInput!) { upsertPolicy(input: $input) { policy { ${POLICY_FIELDS} } } }`;

function Policies({ session, policies, onChanged }) {
  const [editing, setEditing] = useState(null);
  const [history, setHistory] = useState(null);
  return html`<div>
    <h2>Policies</h2>
    <table class="plain"><caption class="visually-hidden">Policies and their current versions</caption>
      <thead><tr><th scope="col">Policy</th><th scope="col">Version</th><th scope="col">Stages</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>${policies.map((p) => html`<tr key=${p.key}>
        <td data-label="Policy"><strong>${p.name}</strong> <code>${p.key}</code></td>
        <td data-label="Version">v${p.version}, ${when(p.createdAt)} by ${p.createdBy}</td>
        <td data-label="Stages">${p.stages.map((s) => s.name).join(' → ')}</td>
        <td><div class="buttons">
          <button class="secondary" onClick=${() => { setHistory(null); setEditing(p.key); }} aria-label=${`Edit stages of ${p.name}`}>Edit stages</button>
          <button class="secondary" onClick=${() => { setEditing(null); setHistory(p.key); }} aria-label=${`Versions of ${p.name}`}>Versions</button>
        </div></td>
      </tr>`)}</tbody>
    </table>
    ${history && html`<${Versions} key=${history} session=${session} policyKey=${history} />`}
    ${editing && html`<${StageEditor} key=${editing} session=${session} policyKey=${editing}
      onSaved=${(saved) => { onChanged(saved); setEditing(null); }} onClose=${() => setEditing(null)} />`}
  </div>`;
}

// `uid` keys a stage's inputs, so moving a stage moves its inputs (and focus) with it.
const toDraft = (s) => ({ uid: newKey(), name: s.name, roles: s.approverRoles.join(', '), required: String(s.requiredApprovals),
  minAmounts: s.minAmounts.map((m) => `${m.amount} ${m.currency}`).join(', ') });

const POLICIES = `query { policies { ${POLICY_FIELDS} } }`;
const VERSIONS = `query($key: String!) { policyVersions(key: $key) { ${POLICY_FIELDS} } }`;

/** Every version of a policy: requests keep the one they were filed under. */
function Versions({ session, policyKey }) {
  const [versions, setVersions] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    graphql(session.token.current, VERSIONS, { key: policyKey })
      .then((data) => setVersions(data.policyVersions))
      .catch((err) => setError(sentence(err)));
  }, [policyKey]);
  if (!versions) return html`<${ErrorText} error=${error} />`;
  return html`<section aria-labelledby="versions-heading">
    <h3 id="versions-heading">Versions of ${policyKey}</h3>
    <ol class="timeline" reversed>${versions.map((v) => html`<li key=${v.version}>
      <strong>Version ${v.version}</strong>, ${when(v.createdAt)} by ${v.createdBy}:
      ${v.stages.map((s) => `${s.name} (${s.approverRoles.join(', ')}${s.minAmounts.length ? ` from ${s.minAmounts.map((m) => `${m.amount} ${m.currency}`).join(' / ')}` : ''})`).join(' → ')};
      expires after ${v.expiresAfterSeconds / 3600} h
    </li>`)}</ol>
  </section>`;
}

/** Opens on the policy as it is now, not as it was at sign-in: saving sends all of it back. */
function StageEditor({ session, policyKey, onSaved, onClose }) {
  const [policy, setPolicy] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    graphql(session.token.current, POLICIES)
      .then((data) => setPolicy(data.policies.find((p) => p.key === policyKey) || null))
      .catch((err) => setError(sentence(err)));
  }, [policyKey]);
  if (!policy) return error ? html`<${ErrorText} error=${error} />` : html`<p aria-busy="true">Loading the policy…</p>`;
  return html`<${StageForm} session=${session} policy=${policy} onSaved=${onSaved} onClose=${onClose} />`;
}

function StageForm({ session, policy, onSaved, onClose }) {
  const [stages, setStages] = useState(policy.stages.map(toDraft));
  const [hours, setHours] = useState(String(policy.expiresAfterSeconds / 3600));
  const [problem, setProblem] = useState(null);
  const mutation = useMutation(session);
  const change = (i, name) => (e) => setStages(stages.map((s, j) => (j === i ? { ...s, [name]: e.target.value } : s)));
  const move = (i, by) => {
    const next = [...stages];
    [next[i], next[i + by]] = [next[i + by], next[i]];
    setStages(next);
  };
  const save = async (e) => {
    e.preventDefault();
    const parsed = [];
    for (const [i, s] of stages.entries()) {
      const minAmounts = s.minAmounts.split(',').map((m) => m.trim()).filter(Boolean).map((m) => {
        const [amount, currency] = m.split(/\s+/);
        return { amount, currency: (currency || '').toUpperCase() };
      });
      if (minAmounts.some((m) => !m.amount || !/^[A-Z]{3}$/.test(m.currency))) {
        setProblem(`Stage ${i + 1}: write thresholds as "1000.00 EUR, 1000.00 USD".`);
        return;
      }
      parsed.push({ name: s.name.trim(), approverRoles: s.roles.split(',').map((r) => r.trim()).filter(Boolean),
        requiredApprovals: Number.parseInt(s.required, 10), minAmounts });
    }
    setProblem(null);
    const { data, error } = await mutation.run(UPSERT, { key: policy.key, name: policy.name, description: policy.description,
      expiresAfterSeconds: Math.round(Number(hours) * 3600), allowSameApproverAcrossStages: policy.allowSameApproverAcrossStages,
      payloadSchema: policy.payloadSchema, stages: parsed, expectedVersion: policy.version });
    if (data) onSaved(data.upsertPolicy.policy);
    if (error && error.code === 'CONFLICT') {
      mutation.setError(null);
      setProblem('Someone saved a newer version of this policy while you were editing. Close the editor and open it again to start from the newest version.');
    }
  };
  return html`<form class="editor" onSubmit=${save} aria-labelledby="editor-heading">
    <h3 id="editor-heading">Stages of ${policy.name} (saving makes version ${policy.version + 1}; pending requests keep theirs)</h3>
    <${Field} id="policy-hours" label="Hours before a pending request expires">
      <input id="policy-hours" value=${hours} onInput=${(e) => setHours(e.target.value)} inputMode="decimal" />
    </${Field}>
    ${stages.map((s, i) => html`<fieldset key=${s.uid} class="stage-edit"><legend>Stage ${i + 1}</legend>
      <${Field} id=${`stage-${i}-name`} label="Name"><input id=${`stage-${i}-name`} value=${s.name} onInput=${change(i, 'name')} /></${Field}>
      <${Field} id=${`stage-${i}-roles`} label="Approver roles (comma-separated)"><input id=${`stage-${i}-roles`} value=${s.roles} onInput=${change(i, 'roles')} /></${Field}>
      <${Field} id=${`stage-${i}-required`} label="Approvals needed"><input id=${`stage-${i}-required`} value=${s.required} onInput=${change(i, 'required')} inputMode="numeric" /></${Field}>
      <${Field} id=${`stage-${i}-min`} label="Applies from (per currency, e.g. 1000.00 EUR; empty: always)"><input id=${`stage-${i}-min`} value=${s.minAmounts} onInput=${change(i, 'minAmounts')} /></${Field}>
      <div class="buttons">
        <button type="button" class="secondary" disabled=${i === 0} onClick=${() => move(i, -1)}>Move up</button>
        <button type="button" class="secondary" disabled=${i === stages.length - 1} onClick=${() => move(i, 1)}>Move down</button>
        <button type="button" class="secondary" disabled=${stages.length === 1} onClick=${() => setStages(stages.filter((_, j) => j !== i))}>Remove stage</button>
      </div>
    </fieldset>`)}
    <button type="button" class="secondary" onClick=${() => setStages([...stages, { uid: newKey(), name: '', roles: '', required: '1', minAmounts: '' }])}>Add a stage</button>
    <${ErrorText} error=${problem || mutation.error} />
    <div class="buttons"><button type="submit" disabled=${mutation.busy}>Save new version</button>
      <button type="button" class="secondary" onClick=${onClose}>Close</button></div>
  </form>`;
}

const ACTIONS = ['REQUEST_SUBMIT', 'REQUEST_VIEW', 'AUDIT_READ', 'POLICY_MANAGE', 'ACCESS_MANAGE'];
const KNOWN_ROLES = ['support', 'finance', 'finance_lead', 'ops', 'auditor', 'admin'];
const ROLE_PERMISSIONS = `query($role: String!) { rolePermissions(role: $role) { action policy grantedBy grantedAt } }`;
const GRANT = `mutation($input: GrantPermissionInput!) { grantPermission(input: $input) { role permissions { action policy grantedBy grantedAt } } }`;
const REVOKE = `mutation($input: RevokePermissionInput!) { revokePermission(input: $input) { role permissions { action policy grantedBy grantedAt } } }`;

function Permissions({ session, policies }) {
  const [role, setRole] = useState('finance');
  // The role the table shows: what Revoke and Grant act on, whatever the box says now.
  const [shownRole, setShownRole] = useState(null);
  const [grants, setGrants] = useState(null);
  // The role whose grants are on screen, read when an answer arrives: an answer about a
  // role no longer shown is dropped.
  const current = useRef(null);
  const showGrants = (forRole, permissions) => {
    if (forRole === current.current) setGrants(permissions);
  };
  const [error, setError] = useState(null);
  const [action, setAction] = useState('REQUEST_VIEW');
  const [policy, setPolicy] = useState('');
  const grant = useMutation(session);
  const revoke = useMutation(session);
  const load = async (name) => {
    setError(null);
    try {
      const permissions = (await graphql(session.token.current, ROLE_PERMISSIONS, { role: name })).rolePermissions;
      current.current = name;
      setShownRole(name);
      setGrants(permissions);
    } catch (err) {
      setError(sentence(err));
    }
  };
  useEffect(() => { load(role); }, []);
  return html`<div>
    <h2>Role permissions</h2>
    <form class="inline-form" onSubmit=${(e) => { e.preventDefault(); load(role.trim()); }}>
      <label for="perm-role">Role</label>
      <input id="perm-role" list="roles" value=${role} onInput=${(e) => setRole(e.target.value)} />
      <datalist id="roles">${KNOWN_ROLES.map((r) => html`<option value=${r} />`)}</datalist>
      <button type="submit" class="secondary">Show</button>
    </form>
    <${ErrorText} error=${error || revoke.error} />
    ${grants && html`<table class="plain"><caption>What ${shownRole} may do</caption>
      <thead><tr><th scope="col">Action</th><th scope="col">Policy</th><th scope="col">Granted</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>${grants.length === 0 ? html`<tr><td colspan="4">No permission.</td></tr>` : grants.map((g) => html`<tr key=${g.action + g.policy}>
        <td data-label="Action">${g.action}</td><td data-label="Policy">${g.policy || 'all policies'}</td>
        <td data-label="Granted">${when(g.grantedAt)} by ${g.grantedBy}</td>
        <td><button class="secondary" disabled=${revoke.busy} aria-label=${`Revoke ${g.action} on ${g.policy || 'all policies'} from ${shownRole}`}
          onClick=${async () => { const { data } = await revoke.run(REVOKE, { role: shownRole, action: g.action, policy: g.policy }); if (data) showGrants(data.revokePermission.role, data.revokePermission.permissions); }}>Revoke</button></td>
      </tr>`)}</tbody></table>`}
    ${shownRole && html`<form class="inline-form" onSubmit=${async (e) => { e.preventDefault(); const { data } = await grant.run(GRANT, { role: shownRole, action, policy: policy || null }); if (data) showGrants(data.grantPermission.role, data.grantPermission.permissions); }}>
      <h3>Grant ${shownRole} a permission</h3>
      <label for="perm-action">Action</label>
      <select id="perm-action" value=${action} onChange=${(e) => setAction(e.target.value)}>${ACTIONS.map((a) => html`<option value=${a}>${a}</option>`)}</select>
      <label for="perm-policy">Policy</label>
      <select id="perm-policy" value=${policy} onChange=${(e) => setPolicy(e.target.value)}>
        <option value="">All policies</option>${policies.map((p) => html`<option value=${p.key}>${p.name}</option>`)}</select>
      <button type="submit" disabled=${grant.busy}>Grant</button>
      <${ErrorText} error=${grant.error} />
    </form>`}
  </div>`;
}

const USER_FIELDS = 'subject name email roles lastSeenAt disabledAt disabledReason sessionsRevokedAt';
const USERS = `query($filter: UserAccountFilter, $after: String) { users(filter: $filter, first: 50, after: $after) {
  edges { node { ${USER_FIELDS} } } pageInfo { hasNextPage endCursor } } }`;
const CHANGES = {
  disable: ['Disable', `mutation($input: DisableUserInput!) { disableUser(input: $input) { user { ${USER_FIELDS} } } }`, 'disableUser'],
  enable: ['Enable', `mutation($input: EnableUserInput!) { enableUser(input: $input) { user { ${USER_FIELDS} } } }`, 'enableUser'],
  revoke: ['End sessions', `mutation($input: RevokeSessionsInput!) { revokeSessions(input: $input) { user { ${USER_FIELDS} } } }`, 'revokeSessions'],
};

const DISABLE = CHANGES.disable[1];

/** Someone who has not used Countersign yet can be shut out before their first request. */
function DisableOther({ session, onDisabled }) {
  const [subject, setSubject] = useState('');
  const [reason, setReason] = useState('');
  const mutation = useMutation(session);
  const submit = async (e) => {
    e.preventDefault();
    if (!subject.trim() || !reason.trim()) {
      mutation.setError('Give the person\'s subject and a reason.');
      return;
    }
    const { data } = await mutation.run(DISABLE, { subject: subject.trim(), reason: reason.trim() });
    if (data) {
      onDisabled(data.disableUser.user);
      setSubject('');
      setReason('');
    }
  };
  return html`<form class="inline-form" onSubmit=${submit} aria-labelledby="disable-other">
    <h3 id="disable-other">Disable someone not listed</h3>
    <label for="other-subject">Subject</label><input id="other-subject" value=${subject} onInput=${(e) => setSubject(e.target.value)} />
    <label for="other-reason">Reason</label><input id="other-reason" value=${reason} onInput=${(e) => setReason(e.target.value)} />
    <button type="submit" class="danger" disabled=${mutation.busy}>Disable</button>
    <${ErrorText} error=${mutation.error} />
  </form>`;
}

function Users({ session }) {
  const [search, setSearch] = useState('');
  const [users, setUsers] = useState([]);
  const [next, setNext] = useState(null);
  const [error, setError] = useState(null);
  const [applied, setApplied] = useState(null);
  const load = async (after = null) => {
    setError(null);
    const wanted = after ? applied : search.trim() || null;
    try {
      const data = await graphql(session.token.current, USERS, { filter: { search: wanted }, after });
      setApplied(wanted);
      const nodes = data.users.edges.map((e) => e.node);
      setUsers((current) => (after ? current.concat(nodes.filter((n) => !current.some((u) => u.subject === n.subject))) : nodes));
      setNext(data.users.pageInfo.hasNextPage ? data.users.pageInfo.endCursor : null);
    } catch (err) {
      setError(sentence(err));
    }
  };
  useEffect(() => { load(); }, []);
  const replaced = (user) => setUsers((current) => current.map((u) => (u.subject === user.subject ? user : u)));
  return html`<div>
    <h2>Users</h2>
    <form class="inline-form" onSubmit=${(e) => { e.preventDefault(); load(); }} role="search">
      <label for="user-search">Find</label>
      <input id="user-search" type="search" value=${search} onInput=${(e) => setSearch(e.target.value)} placeholder="subject, name or email" />
      <button type="submit" class="secondary">Search</button>
    </form>
    <${ErrorText} error=${error} />
    <ul class="users">${users.map((u) => html`<${UserRow} key=${u.subject} session=${session} user=${u} onChanged=${replaced} />`)}</ul>
    ${next && html`<button class="secondary" onClick=${() => load(next)}>Load more</button>`}
    <${DisableOther} session=${session} onDisabled=${(user) => setUsers((current) => (current.some((u) => u.subject === user.subject)
      ? current.map((u) => (u.subject === user.subject ? user : u)) : current.concat([user])))} />
  </div>`;
}

function UserRow({ session, user, onChanged }) {
  const [reason, setReason] = useState('');
  const [problem, setProblem] = useState(null);
  const mutation = useMutation(session);
  const id = `reason-${user.subject.replace(/[^A-Za-z0-9_-]/g, '_')}`;
  const act = (change) => async () => {
    const [, query, field] = CHANGES[change];
    if (change !== 'enable' && !reason.trim()) {
      setProblem('Give a reason: it goes into the audit log.');
      return;
    }
    setProblem(null);
    const { data } = await mutation.run(query, { subject: user.subject, reason: reason.trim() || null });
    if (data) {
      onChanged(data[field].user);
      setReason('');
    }
  };
  return html`<li class="user" data-subject=${user.subject}>
    <div><strong>${person(user)}</strong> ${user.disabledAt ? html`<span class="status status-rejected">Disabled</span>` : html`<span class="status status-approved">Active</span>`}
      <p class="hint">Roles: ${user.roles.join(', ') || 'none'} · last seen ${when(user.lastSeenAt)}${user.disabledReason ? ` · disabled: “${user.disabledReason}”` : ''}${user.sessionsRevokedAt ? ` · sessions ended ${when(user.sessionsRevokedAt)}` : ''}</p></div>
    <div class="inline-form">
      <label for=${id}>Reason</label>
      <input id=${id} value=${reason} onInput=${(e) => setReason(e.target.value)} />
      ${user.disabledAt
        ? html`<button type="button" disabled=${mutation.busy} onClick=${act('enable')} aria-label=${`Enable ${user.subject}`}>Enable</button>`
        : html`<button type="button" class="danger" disabled=${mutation.busy} onClick=${act('disable')} aria-label=${`Disable ${user.subject}`}>Disable</button>`}
      <button type="button" class="secondary" disabled=${mutation.busy} onClick=${act('revoke')} aria-label=${`End sessions of ${user.subject}`}>End sessions</button>
    </div>
    <${ErrorText} error=${problem || mutation.error} />
  </li>`;
}
