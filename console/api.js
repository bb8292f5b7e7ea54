// The console's only way to the server: the public GraphQL API, over HTTP for queries and
// mutations (live updates are in live.js). Errors keep their `extensions` so the screens
// can say what went wrong in words a clerk understands and put field errors on fields.

export class ApiError extends Error {
  constructor(message, extensions = {}) {
    super(message);
    this.code = extensions.code || 'INTERNAL';
    this.field = extensions.field || null;
    this.retryable = Boolean(extensions.retryable);
    this.retryAfter = extensions.retryAfter || null;
  }
}

let unauthenticated = () => {};

/** Who to tell when the server stops accepting the session's token. */
export function onUnauthenticated(handler) {
  unauthenticated = handler;
}

/** Runs one operation; a GraphQL error (HTTP 200 or not) becomes an ApiError. */
export async function graphql(token, query, variables = {}) {
  let response;
  try {
    response = await fetch('/graphql', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
      body: JSON.stringify({ query, variables }),
    });
  } catch {
    throw new ApiError('network', { code: 'NETWORK', retryable: true });
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`HTTP ${response.status}`, { code: response.status === 503 ? 'TIMEOUT' : 'INTERNAL', retryable: response.status >= 500 });
  }
  if (body.errors && body.errors.length) {
    const [first] = body.errors;
    const error = new ApiError(first.message, first.extensions || {});
    if (error.code === 'UNAUTHENTICATED') unauthenticated(token);
    throw error;
  }
  return body.data;
}

/** An idempotency key: one per form, so a double click or a retry never acts twice. */
export function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // Outside a secure context randomUUID is missing; 16 random bytes do the same job.
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
}

const SENTENCES = {
  UNAUTHENTICATED: 'Your session has ended. Sign in again to continue.',
  FORBIDDEN: 'You are not allowed to do that. If you think you should be, ask an administrator.',
  NOT_FOUND: 'That no longer exists, or you are not allowed to see it.',
  CONFLICT: 'Someone changed this while you were looking at it. Check what changed and try again.',
  INVALID_TRANSITION: 'This request can no longer be changed that way: it has already moved on.',
  IDEMPOTENCY_KEY_REUSED: 'This form was already used for something else. Reload the request and try again.',
  IDEMPOTENCY_KEY_IN_USE: 'Your earlier click is still being handled. Wait a moment; it will not be done twice.',
  RATE_LIMITED: 'Too many requests in a short time. Wait a few seconds and try again.',
  TIMEOUT: 'The server took too long to answer. Try again: it will not be done twice.',
  QUERY_REJECTED: 'The console asked for too much at once. Reload the page; if it keeps happening, tell support.',
  NETWORK: 'The server could not be reached. Check your connection and try again: it will not be done twice.',
  INTERNAL: 'Something went wrong on our side. Try again; if it keeps happening, tell support.',
};

/**
 * The one grant check in the console, the server's rule (`access::require`): a grant
 * without a policy covers every policy. Without `policyKey` it asks whether the viewer
 * holds the action on any policy, which is what shows a screen at all; the server still
 * decides every call.
 */
export function viewerMay(viewer, action, policyKey) {
  return viewer.permissions.some((p) => p.action === action
    && (policyKey === undefined || p.policy === null || p.policy === policyKey));
}

/**
 * What to tell a person. Input errors carry the server's own sentence (it names the
 * problem precisely, e.g. "EUR amounts have at most 2 fraction digits").
 */
export function sentence(error) {
  if (!(error instanceof ApiError)) return SENTENCES.INTERNAL;
  if (error.code === 'BAD_USER_INPUT') return capitalise(error.message);
  if (error.code === 'RATE_LIMITED' && error.retryAfter) {
    const unit = error.retryAfter === 1 ? 'second' : 'seconds';
    return `Too many requests in a short time. Wait ${error.retryAfter} ${unit} and try again.`;
  }
  return SENTENCES[error.code] || SENTENCES.INTERNAL;
}

function capitalise(text) {
  return text ? text[0].toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? '' : '.') : SENTENCES.INTERNAL;
}

/** Whether the same call, with the same idempotency key, may be tried again. */
export function retrySafe(error) {
  return error instanceof ApiError && ['NETWORK', 'TIMEOUT', 'RATE_LIMITED', 'IDEMPOTENCY_KEY_IN_USE', 'INTERNAL'].includes(error.code);
}

export const REQUEST_ROW = `id title amount currency status createdAt expiresAt decidedAt version
  viewerCanApprove currentStage requester { subject name } policy { key name version }`;

export const REQUEST_DETAIL = `${REQUEST_ROW} viewerCanCancel description payload updatedAt
  stages { position name state approvals requiredApprovals approverRoles minAmount }
  decisions { id stage verdict comment createdAt approver { subject name } }
  eligibleApprovers { roles users { subject name } }
  auditTrail { id sequence action actor summary reason occurredAt }`;
