// Small shared pieces of the screens.
import { h } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';
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
