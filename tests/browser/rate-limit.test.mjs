// A caller past its rate gets HTTP 429 with the wait in `Retry-After` and in the error's
// `extensions.retryAfter`; the console turns it into "wait N seconds" (issue 25).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launch, openConsole, signInAs, startServer } from './harness.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser.close(); });

test('after an HTTP 429 the console says how many seconds to wait', async () => {
  const server = await startServer({ env: { COUNTERSIGN_RATE_LIMIT: '1', COUNTERSIGN_RATE_LIMIT_BURST: '40' } });
  try {
    const page = await openConsole(browser, server);
    await signInAs(page, 'alice');
    const personas = await (await fetch(`${server.url}/console/personas`)).json();
    const { token } = personas.find((p) => p.subject === 'alice');
    // Use up alice's allowance (it is per person, so the console shares it).
    const drain = async () => {
      for (let i = 0; i < 100; i += 1) {
        const response = await fetch(`${server.url}/graphql`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
          body: JSON.stringify({ query: '{ __typename }' }),
        });
        if (response.status === 429) return { header: response.headers.get('retry-after'), body: await response.json() };
      }
      return null;
    };
    const refused = await drain();
    assert.ok(refused, 'the allowance ran out');
    assert.equal(String(refused.body.errors[0].extensions.retryAfter), refused.header, 'the body says what the header says');

    // One call a second comes back: a screen that happens to get it shows no error, so
    // drain again and open the other list until one is refused (a loaded machine may need
    // more than one go).
    const said = page.getByText(/Too many requests in a short time\. Wait \d+ seconds? and try again\./);
    const main = page.getByRole('navigation', { name: 'Main' });
    for (let attempt = 0; attempt < 5; attempt += 1) {
      if (attempt > 0) await drain();
      await main.getByRole('link', { name: attempt % 2 === 0 ? 'All requests' : 'My queue' }).click();
      try {
        await said.first().waitFor({ timeout: 2000 });
        break;
      } catch { /* the screen got the one call that came back; try the other list */ }
    }
    await said.first().waitFor({ timeout: 1000 });
    const seconds = Number((await said.first().textContent()).match(/Wait (\d+) second/)[1]);
    assert.ok(seconds >= 1 && seconds <= 5, `a wait the rate explains: ${seconds}`);
    // Only the refused calls themselves may show up in the browser's console.
    assert.deepEqual(page.problems.filter((p) => !/429/.test(p)), []);
    await page.context().close();
  } finally {
    await server.stop();
  }
});
