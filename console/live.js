// Live updates: one `requestEvents` subscription per signed-in console, over the graphql-ws
// client. The client does not retry by itself (its retry would re-send the first cursor);
// we reconnect and resume from the last cursor seen, so a dropped connection leaves no
// gap and replays nothing twice.
import { createClient } from 'graphql-ws';
import { REQUEST_ROW } from './api.js';

const SUBSCRIPTION = `subscription($after: String) {
  requestEvents(after: $after) { cursor kind occurredAt actor { subject name } request { ${REQUEST_ROW} } }
}`;

// 4403: the token expired, the user was disabled or their sessions were revoked. 4430: too
// many consoles open for one person. Neither gets better by reconnecting.
const FINAL = new Set([4403, 4430]);
// A cursor older than this is not replayed after a reconnect: catching up on everything the
// floor did since would make the server read it all back (for every console at once, after
// a deploy). The console starts again from now instead, and its screens read afresh.
const STALE_AFTER = 120000;
const PONG_WAIT = 10000;

/**
 * Starts the feed. `onEvent(event)` gets each event once, in commit order; `onStatus` gets
 * 'connecting' | 'live' | 'reconnecting'; `onEnded(reason, code)` is called once when the
 * server refuses this session for good.
 */
export function startLive({ token, cursor: from, readCursor, onEvent, onStatus, onEnded, onResync }) {
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/graphql/ws`;
  // Read before the first list was: never null, so even a drop before the first event
  // resumes from where this console started.
  let cursor = from;
  let cursorAt = Date.now();
  let stopped = false;
  let attempt = 0;
  let upSince = 0;
  let silence = null;
  let timer = null;
  let unsubscribe = null;
  // The token this socket signed in with: a 4403 for it is no news once a renewed token
  // is waiting to be used.
  let used = null;
  const client = createClient({
    url,
    lazy: true,
    retryAttempts: 0,
    keepAlive: 15000,
    connectionParams: () => {
      used = token.current;
      return { Authorization: `Bearer ${used}` };
    },
    on: {
      connected: () => {
        upSince = Date.now();
        onStatus('live');
      },
      // A half-open connection answers no ping: without a pong in time it is ended, so the
      // header does not say "Live" over a dead line.
      ping: (received) => {
        if (received) return;
        clearTimeout(silence);
        silence = setTimeout(() => client.terminate(), PONG_WAIT);
      },
      pong: (received) => {
        if (received) clearTimeout(silence);
      },
      closed: () => clearTimeout(silence),
    },
  });

  const subscribe = async () => {
    if (stopped) return;
    onStatus(attempt === 0 ? 'connecting' : 'reconnecting');
    if (attempt > 0 && Date.now() - cursorAt > STALE_AFTER) {
      try {
        cursor = await readCursor();
        cursorAt = Date.now();
        onResync();
      } catch {
        // The server is not answering yet: try again later, still from the old cursor.
        retry();
        return;
      }
      if (stopped) return;
    }
    unsubscribe = client.subscribe(
      { query: SUBSCRIPTION, variables: { after: cursor } },
      {
        next: ({ data, errors }) => {
          if (errors && errors.length) {
            const code = errors[0].extensions && errors[0].extensions.code;
            if (code === 'UNAUTHENTICATED') finish(errors[0].message, 4403);
            return;
          }
          const event = data.requestEvents;
          cursor = event.cursor;
          cursorAt = Date.now();
          onEvent(event);
        },
        error: (err) => {
          // GraphQL errors for the subscription itself (an `error` message).
          if (Array.isArray(err)) {
            const extensions = (err[0] && err[0].extensions) || {};
            if (extensions.code === 'UNAUTHENTICATED') finish(err[0].message, 4403);
            else retry(extensions.retryAfter ? extensions.retryAfter * 1000 : 0);
            return;
          }
          const code = err && typeof err.code === 'number' ? err.code : null;
          if (code === 4403 && token.current && token.current !== used) {
            retry();
            return;
          }
          if (code !== null && FINAL.has(code)) {
            finish(err.reason || '', code);
            return;
          }
          retry();
        },
        // The server ends a subscription only when it closes the socket (shutdown, slow
        // reader): resume elsewhere by cursor.
        complete: () => retry(),
      },
    );
  };

  // Backs off while failures follow each other; a connection that held for a while
  // starts the count again.
  const retry = (atLeast = 0) => {
    if (stopped) return;
    onStatus('reconnecting');
    attempt = upSince && Date.now() - upSince > 30000 ? 1 : attempt + 1;
    upSince = 0;
    const wait = Math.min(10000, 500 * 2 ** Math.min(attempt - 1, 5)) * (0.75 + Math.random() / 2);
    clearTimeout(timer);
    timer = setTimeout(subscribe, Math.max(wait, atLeast));
  };

  const finish = (reason, code) => {
    if (stopped) return;
    stop();
    onEnded(reason, code);
  };

  const stop = () => {
    stopped = true;
    clearTimeout(timer);
    clearTimeout(silence);
    if (unsubscribe) unsubscribe();
    client.dispose();
  };

  subscribe();
  return { stop };
}

/**
 * A tiny hub: screens listen for events while they are on screen, and for a resync (the
 * feed started again from now: what they show must be read again).
 */
export function createHub() {
  const listeners = new Set();
  const resyncs = new Set();
  return {
    emit(event) {
      for (const listener of listeners) listener(event);
    },
    listen(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    resync() {
      for (const listener of resyncs) listener();
    },
    onResync(listener) {
      resyncs.add(listener);
      return () => resyncs.delete(listener);
    },
  };
}
