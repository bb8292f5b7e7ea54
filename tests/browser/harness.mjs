// What the console's browser tests share: the real binary on a fresh database (SQLite, or
// a PostgreSQL database made for the run), headless Debian Chromium through playwright-core,
// screenshots, axe-core, and a watch on the browser console (an error there fails the test).
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
export const BINARY = resolve(process.env.COUNTERSIGN_BIN || join(root, 'target/debug/countersign'));
const SHOTS = join(process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(root, 'target'), 'console-screenshots');
const PG = process.env.COUNTERSIGN_TEST_POSTGRES_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
export const WIDTHS = [1280, 390];

/** Starts `countersign serve` on port 0; resolves once the banner has named the address. */
export async function startServer({ backend = 'sqlite', env = {} } = {}) {
  const work = mkdtempSync(join(tmpdir(), 'countersign-browser-'));
  let database = `sqlite://${work}/cs.db?mode=rwc`;
  let dropDb = null;
  if (backend === 'postgres') {
    const name = `cs_browser_${process.pid}_${Date.now()}`;
    const admin = new URL(PG);
    const args = ['-h', admin.hostname, '-p', admin.port || '5432', '-U', admin.username || 'postgres'];
    execFileSync('createdb', [...args, name]);
    dropDb = () => execFileSync('dropdb', [...args, '--force', name]);
    admin.pathname = `/${name}`;
    admin.searchParams.set('sslmode', 'disable');
    database = admin.href;
  }
  const server = spawn(BINARY, ['serve'], {
    cwd: work,
    env: { PATH: process.env.PATH, DATABASE_URL: database, COUNTERSIGN_BIND: '127.0.0.1:0',
      // Several consoles per person in one test run.
      COUNTERSIGN_RATE_LIMIT: '1000', COUNTERSIGN_MAX_CONNECTIONS_PER_SUBJECT: '200', ...env },
    stdio: ['ignore', 'pipe', process.env.TEST_LOG ? 'inherit' : 'ignore'],
  });
  const tokens = {};
  let url = null;
  const lines = createInterface({ input: server.stdout });
  const banner = (async () => {
    for await (const line of lines) {
      const listening = line.match(/^Countersign listening on (http:\/\/\S+)/);
      if (listening) url = listening[1];
      const persona = line.match(/^ {2}(\w+)\s+\S+\s+(\S+)$/);
      if (persona) tokens[persona[1]] = persona[2];
      if (url && (line.startsWith('Open GraphiQL') || line.includes('no demo'))) return;
    }
  })();
  let timer;
  const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('the server did not start in 60 s')), 60000); });
  const exited = new Promise((_, reject) => server.once('exit', (code) => reject(new Error(`the server exited (${code}) before it was ready`))));
  exited.catch(() => {});
  try {
    await Promise.race([banner, timeout, exited]);
  } finally {
    clearTimeout(timer);
  }
  // Whatever else it prints must not block it.
  server.stdout.resume();
  return {
    url,
    tokens,
    backend,
    async stop() {
      server.kill('SIGTERM');
      await new Promise((done) => (server.exitCode !== null ? done() : server.once('exit', done)));
      if (dropDb) dropDb();
      rmSync(work, { recursive: true, force: true });
    },
  };
}

const CHROMIUM = { executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] };

export async function launch() {
  return chromium.launch(CHROMIUM);
}

/** A browser whose profile is the directory `dir`, so what it keeps on disk can be read. */
export async function launchWithProfile(dir, { width = 1280 } = {}) {
  return chromium.launchPersistentContext(dir, { ...CHROMIUM, viewport: { width, height: 900 } });
}

/**
 * A browser context (its own cookies, its own console) at `width`, with every console
 * error and uncaught exception recorded: `page.problems` must stay empty.
 */
export async function openConsole(browser, server, { width = 1280, beforeLoad = null } = {}) {
  const context = await browser.newContext({ viewport: { width, height: width > 600 ? 900 : 844 } });
  const page = await context.newPage();
  if (beforeLoad) await beforeLoad(page);
  page.problems = [];
  // The console's own pages only: an identity provider's login page is not ours to judge.
  const ours = () => page.url().startsWith(server.url);
  page.on('console', (message) => {
    if (message.type() === 'error' && ours()) page.problems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => ours() && page.problems.push(`page: ${error.message}`));
  await page.goto(server.url);
  return page;
}

/** Signs in through the development persona picker. */
export async function signInAs(page, name) {
  await page.getByRole('button', { name: new RegExp(`^${name}\\b`, 'i') }).click();
  await page.getByRole('navigation', { name: 'Main' }).waitFor();
  await page.locator('[data-live="live"]').waitFor({ timeout: 10000 });
}

export async function screenshot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  const width = page.viewportSize().width;
  await page.screenshot({ path: join(SHOTS, `${name}-${width}.png`), fullPage: true });
}

const AXE = readFileSync(join(here, 'node_modules/axe-core/axe.min.js'), 'utf8');

/** axe-core's serious and critical violations on what the page shows now. */
export async function accessibilityProblems(page) {
  // Injected through the DevTools protocol, not a <script>: the console's CSP stays intact.
  await page.evaluate(AXE);
  const results = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return results.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
}

/** Follows the console's GraphiQL link; resolves with GraphiQL's page once it has rendered. */
export async function openGraphiql(page) {
  const [graphiql] = await Promise.all([
    page.context().waitForEvent('page'),
    page.getByRole('link', { name: 'GraphiQL' }).click(),
  ]);
  await graphiql.locator('.graphiql-container').waitFor({ timeout: 20000 });
  return graphiql;
}

/** Runs `query` in GraphiQL's editor; resolves with what the result pane shows. */
export async function runInGraphiql(graphiql, query, expected) {
  await graphiql.evaluate((text) => {
    document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.setValue(text);
  }, query);
  await graphiql.locator('.graphiql-execute-button').click();
  const result = graphiql.locator('.result-window');
  await result.getByText(expected).waitFor({ timeout: 10000 });
  return result.innerText();
}

/** Calls the API directly, as another client would (not through a page). */
export async function api(server, token, query, variables = {}) {
  const response = await fetch(`${server.url}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await response.json();
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
}
