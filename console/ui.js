// Small shared pieces of the screens.
import { h } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import { graphql, newKey, retrySafe, sentence } from './api.js';
import { statusLabel } from './format.js';

export const html = htm.bind(h);

export function Status({ status }) {
  return html`<span class=${`status status-${status.toLowerCase()}`}>${statusLabel(status)}</span>`;
}

export function ErrorText({ error, id }) {
  return error ? html`<p class="error" role="alert" id=${id}>${error}</p>` : null;
}

/** A number that moves on by itself, for "time left" that stays true. */
export function useNow(everyMs = 30000) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(timer);
  }, [everyMs]);
  return now;
}

/** Moves keyboard focus to a screen's heading when the screen changes. */
export function useFocusHeading(key) {
  const ref = useRef(null);
  useEffect(() => {
    if (ref.current) ref.current.focus();
  }, [key]);
  return ref;
}

/**
 * Rows keyed by id that live events update: an event applies only when it is newer than
 * what is shown (by `version`), so a list loaded after an event never goes back in time.
 */
export function newer(existing, incoming) {
  return !existing || incoming.version >= existing.version;
}

export function Field({ id, label, hint, error, children }) {
  return html`<div class="field">
    <label for=${id}>${label}</label>
    ${hint && html`<p class="hint" id=${`${id}-hint`}>${hint}</p>`}
    ${children}
    ${error && html`<p class="error field-error" id=${`${id}-error`} role="alert">${error}</p>`}
  </div>`;
}

export function describedBy(id, hint, error) {
  return [hint ? `${id}-hint` : null, error ? `${id}-error` : null].filter(Boolean).join(' ') || undefined;
}

/**
 * Runs a form's mutations. The idempotency key follows the call: the same mutation with the
 * same input (a double click, a retry after a lost answer) carries the same key, so it acts
 * once; any other call gets a new key, so the server never sees one key for two inputs.
 * `uncertain` is set when the outcome is unknown (the answer was lost): the form should
 * offer the same call again rather than let it be edited into a second one.
 */
export function useMutation(session) {
  const pending = useRef(null);
  const inFlight = useRef(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const [uncertain, setUncertain] = useState(null);
  const run = async (query, input) => {
    // A ref, not state: a second click in the same frame must see the first one at once.
    if (inFlight.current) return { skipped: true };
    const fingerprint = query + JSON.stringify(input);
    if (!pending.current || pending.current.fingerprint !== fingerprint) pending.current = { fingerprint, key: newKey() };
    inFlight.current = true;
    setBusy(true);
    setError(null);
    try {
      const data = await graphql(session.token.current, query, { input: { ...input, idempotencyKey: pending.current.key } });
      pending.current = null;
      setUncertain(null);
      return { data };
    } catch (err) {
      setError(sentence(err));
      if (retrySafe(err)) setUncertain({ query, input });
      else {
        pending.current = null;
        setUncertain(null);
      }
      return { error: err };
    } finally {
      inFlight.current = false;
      setBusy(false);
    }
  };
  const retry = () => (uncertain ? run(uncertain.query, uncertain.input) : Promise.resolve({ skipped: true }));
  return { run, retry, busy, error, setError, uncertain };
}
