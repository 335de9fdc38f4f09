// Change requests in the web console (issue 22): a write a policy refuses becomes a change
// request, which someone else reviews (the diff against the current value) and approves
// live, and its author applies; a request whose key moved goes stale with the reason; a
// break-glass write shows a review item that only another admin acknowledges. Real headless
// Chromium against a real graycast server with tokens; screenshots in web/tests/screenshots/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { DEADLINE, launchBrowser, openLive, row, Server, shots, watchProblems } from './fixture.mjs';

const TOKENS = [
  { name: 'root', secret: 'root-secret', role: 'admin' },
  { name: 'root2', secret: 'root2-secret', role: 'admin' },
  // alice's patterns do not match graycast.requests: the server pushes her no request,
  // so her console asks for the list. bob's "*" gets every move pushed.
  { name: 'alice', secret: 'alice-secret', role: 'write', namespaces: ['prod-*', 'dev'] },
  { name: 'bob', secret: 'bob-secret', role: 'write', namespaces: ['*'] },
];
const secretOf = (name) => TOKENS.find((t) => t.name === name).secret;
const POLICY = { policies: [{ namespaces: ['prod-*'], approvals: 1, self_approval: false }] };

let browser;
before(async () => {
  mkdirSync(shots, { recursive: true });
  browser = await launchBrowser();
});
after(async () => { await browser?.close(); });

/** A server with the tokens, prod-pay/limit = 5 and the policy on prod-*. */
async function governedServer() {
  const server = await new Server({ tokens: TOKENS }).start();
  await server.put('prod-pay', 'limit', 5);
  const { status } = await server.api('PUT', '/v1/policies', POLICY);
  assert.equal(status, 200);
  return server;
}

/** A console of its own (a browser context: its own session storage) with `name`'s token, live. */
async function consoleAs(server, name, viewport) {
  const context = await browser.newContext({ viewport });
  await context.addInitScript((token) => sessionStorage.setItem('graycast.token', token), secretOf(name));
  const page = await context.newPage();
  const problems = watchProblems(page, server);
  await openLive(server, page);
  return {
    page,
    async close() {
      await context.close();
      assert.deepEqual(problems, [], `${name}'s console`);
    },
  };
}

const as = (name) => ({ authorization: `Bearer ${secretOf(name)}` });
const detail = (state) => `#request-detail [data-testid="request-detail"]${state ? `[data-state="${state}"]` : ''}`;
const textOf = (page, selector) => page.textContent(selector).then((t) => (t ?? '').trim());
const cellText = (page, ns, key) => page.evaluate((selector) => document.querySelector(selector)?.textContent, `${row(ns, key)} td.value`);

async function shot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`) });
}

/** The document never scrolls sideways (narrow screens). */
async function assertNoHorizontalOverflow(page, what) {
  const [scrollWidth, innerWidth] = await page.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
  assert.ok(scrollWidth <= innerWidth, `${what}: document is ${scrollWidth} px wide in a ${innerWidth} px window`);
}

for (const width of [1280, 375]) {
  const viewport = { width, height: 900 };

  test(`(${width}) a refused edit becomes a request that someone else reviews live and approves, and its author applies`, { timeout: 90_000 }, async () => {
    const server = await governedServer();
    const alice = await consoleAs(server, 'alice', viewport);
    const bob = await consoleAs(server, 'bob', viewport);
    try {
      // alice's edit is refused by the policy, and the editor offers a request instead.
      const a = alice.page;
      await a.click(`${row('prod-pay', 'limit')} button[data-action="edit"]`);
      await a.fill('#editor-value', '10');
      await a.fill('#editor-comment', 'raise the limit for the sale');
      await a.click('#editor-save');
      await a.waitForSelector('[data-testid="request-offer"]', { timeout: DEADLINE });
      assert.match(await textOf(a, '#editor-error'), /approval_required/);
      await a.click('[data-testid="open-request"]');
      await a.waitForSelector(detail('open'), { timeout: DEADLINE });
      assert.ok(await a.isHidden('#editor'), 'the editor closes once the request is open');
      assert.equal(await cellText(a, 'prod-pay', 'limit'), '5', 'nothing was written');
      // Her own request: she may not approve it, nor apply it unapproved.
      assert.ok(await a.isDisabled('#request-detail [data-request-action="approve"]'));
      assert.match(await a.getAttribute('#request-detail [data-request-action="approve"]', 'title'), /someone else/);
      assert.ok(await a.isDisabled('#request-detail [data-request-action="apply"]'));
      assert.ok(await a.isEnabled('#request-detail [data-request-action="cancel"]'));

      // bob's console hears of it with no reload, and shows the diff against the value now.
      const b = bob.page;
      await b.waitForFunction(() => document.querySelector('#requests-count')?.textContent === '1', null, { timeout: DEADLINE });
      await b.click('#show-requests');
      await b.click('#requests-list button.request-open');
      await b.waitForSelector(detail('open'));
      assert.match(await textOf(b, '#request-detail .request-meta'), /By alice/);
      assert.match(await textOf(b, '#request-detail .comment'), /raise the limit for the sale/);
      assert.equal(await textOf(b, '#request-detail .diff .line.del'), '- 5');
      assert.equal(await textOf(b, '#request-detail .diff .line.add'), '+ 10');
      assert.match(await textOf(b, '#request-detail .request-approvals'), /0 of 1 approval needed by someone other than its author/);
      if (width === 375) await assertNoHorizontalOverflow(b, 'the request at 375 px');
      await b.locator('#request-detail').scrollIntoViewIfNeeded();
      await shot(b, `requests-review-${width}`);
      await b.click('#request-detail [data-request-action="approve"]');
      await b.waitForSelector(detail('approved'), { timeout: DEADLINE });
      assert.ok(await b.isDisabled('#request-detail [data-request-action="approve"]'), 'approved once');

      // alice sees it approved (her console asks, not being pushed requests) and applies it.
      await a.waitForSelector(detail('approved'), { timeout: DEADLINE });
      assert.match(await textOf(a, '#request-detail .request-approvals'), /bob approved/);
      await a.click('#request-detail [data-request-action="apply"]');
      await a.waitForSelector(detail('applied'), { timeout: DEADLINE });
      await a.waitForFunction((selector) => document.querySelector(selector)?.textContent === '10', `${row('prod-pay', 'limit')} td.value`, { timeout: DEADLINE });
      await b.waitForSelector(detail('applied'), { timeout: DEADLINE });
      await b.waitForFunction((selector) => document.querySelector(selector)?.textContent === '10', `${row('prod-pay', 'limit')} td.value`, { timeout: DEADLINE });
      const { body: entry } = await server.api('GET', '/v1/configs/prod-pay/limit');
      assert.equal(entry.updated_by, 'alice', 'applied on its author\'s behalf');
      assert.equal(await a.$('#request-detail [data-request-action]'), null, 'an applied request moves no more');
      await a.locator('#request-detail').scrollIntoViewIfNeeded();
      await shot(a, `requests-applied-${width}`);
    } finally {
      await alice.close();
      await bob.close();
      await server.dispose();
    }
  });
}

test('a request whose key someone else changed shows stale with the reason, and a rebase reopens it', { timeout: 60_000 }, async () => {
  const server = await governedServer();
  const alice = await consoleAs(server, 'alice', { width: 1280, height: 900 });
  try {
    const { status, body: request } = await server.api('POST', '/v1/change-requests', {
      ops: [{ op: 'put', namespace: 'prod-pay', key: 'limit', body: { value: 20 } }],
      comment: 'to 20',
    }, as('alice'));
    assert.equal(status, 201);
    const approved = await server.api('POST', `/v1/change-requests/${request.id}/approve`, { digest: request.digest }, as('bob'));
    assert.equal(approved.body.state, 'approved');
    // Someone else changes the key meanwhile (an admin, breaking glass).
    const moved = await server.api('PUT', '/v1/configs/prod-pay/limit', { value: 7 }, { 'x-graycast-break-glass': 'incident 42' });
    assert.equal(moved.status, 200);

    const a = alice.page;
    await a.waitForFunction(() => document.querySelector('tr[data-ns="prod-pay"][data-key="limit"] td.value')?.textContent === '7', null, { timeout: DEADLINE });
    await a.click('#show-requests');
    await a.click(`#requests-list li[data-id="${request.id}"] button.request-open`);
    await a.waitForSelector(detail('approved'));
    // Before any apply, the console tells that the key moved under the request.
    assert.match(await textOf(a, '#request-detail [data-testid="moved"]'), /based on revision 1, now at revision \d+ by root/);
    assert.equal(await textOf(a, '#request-detail .diff .line.del'), '- 7', 'the diff is against the value now');

    await a.click('#request-detail [data-request-action="apply"]');
    await a.waitForSelector(detail('stale'), { timeout: DEADLINE });
    assert.match(await textOf(a, '#request-error'), /Stale: nothing was applied/);
    assert.match(await textOf(a, '#request-error'), /prod-pay\/limit moved from revision 1 to \d+ \(now 7 by root\)/);
    assert.match(await textOf(a, '#request-detail [data-testid="stale"]'), /keys moved since the request was made: prod-pay\/limit/);
    assert.equal(await cellText(a, 'prod-pay', 'limit'), '7', 'nothing was applied');
    assert.equal(await a.getAttribute(`#requests-list li[data-id="${request.id}"]`, 'data-state'), 'stale');
    await shot(a, 'requests-stale-1280');

    await a.click('#request-detail [data-request-action="rebase"]');
    await a.waitForSelector(detail('open'), { timeout: DEADLINE });
    assert.match(await textOf(a, '#request-detail .request-approvals'), /0 of 1/, 'the approvals of the old content do not count');
    assert.equal(await a.$('#request-detail [data-testid="moved"]'), null, 'based on the value now');
  } finally {
    await alice.close();
    await server.dispose();
  }
});

test('a refused delete offers a change request to delete, shown as the value removed', { timeout: 60_000 }, async () => {
  const server = await governedServer();
  const alice = await consoleAs(server, 'alice', { width: 1280, height: 900 });
  try {
    const a = alice.page;
    await a.click(`${row('prod-pay', 'limit')} button[data-action="delete"]`);
    await a.fill('#confirm-name', 'limit');
    await a.fill('#confirm-comment', 'limit retired');
    await a.click('#confirm-ok');
    await a.waitForSelector('#confirm-offer [data-testid="request-offer"]', { timeout: DEADLINE });
    assert.match(await textOf(a, '#confirm-error'), /approval_required/);
    await a.click('#confirm-offer [data-testid="open-request"]');
    await a.waitForSelector(detail('open'), { timeout: DEADLINE });
    assert.ok(!(await a.isVisible('#confirm')), 'the dialog closes once the request is open');
    assert.match(await textOf(a, '#request-detail [data-testid="request-op"]'), /delete\s+prod-pay\/limit/);
    assert.equal(await textOf(a, '#request-detail .diff .line.del'), '- 5');
    assert.match(await textOf(a, '#request-detail .comment'), /limit retired/);
    assert.equal(await cellText(a, 'prod-pay', 'limit'), '5', 'nothing was deleted');
  } finally {
    await alice.close();
    await server.dispose();
  }
});

for (const width of [1280, 375]) {
  test(`(${width}) a break-glass write shows a review item that only another admin acknowledges`, { timeout: 60_000 }, async () => {
    const server = await governedServer();
    const viewport = { width, height: 900 };
    const root = await consoleAs(server, 'root', viewport);
    const root2 = await consoleAs(server, 'root2', viewport);
    const alice = await consoleAs(server, 'alice', viewport);
    try {
      const refused = await server.api('PUT', '/v1/configs/prod-pay/limit', { value: 99 });
      assert.equal(refused.body.error.code, 'approval_required', 'an admin too needs approval without breaking glass');
      const written = await server.api('PUT', '/v1/configs/prod-pay/limit', { value: 99 }, { 'x-graycast-break-glass': 'payments down, raising the limit' });
      assert.equal(written.status, 200);

      const item = '#reviews-list [data-testid="review"]';
      for (const page of [root.page, root2.page]) {
        await page.waitForSelector(item, { timeout: DEADLINE });
        assert.match(await textOf(page, item), /root broke glass: put prod-pay\/limit at revision \d+/);
        assert.match(await textOf(page, `${item} .review-reason`), /payments down, raising the limit/);
      }
      // Whoever broke glass cannot acknowledge it; the other admin can.
      assert.ok(await root.page.isDisabled(`${item} [data-review-action="ack"]`));
      assert.match(await textOf(root.page, item), /someone else acknowledges it/);
      assert.ok(await root2.page.isEnabled(`${item} [data-review-action="ack"]`));
      // Review items are for admins: a write token sees none.
      assert.ok(await alice.page.isHidden('#reviews-banner'));
      if (width === 375) await assertNoHorizontalOverflow(root.page, 'the review banner at 375 px');
      await shot(root.page, `review-banner-${width}`);

      await root2.page.click(`${item} [data-review-action="ack"]`);
      for (const page of [root.page, root2.page]) {
        await page.waitForSelector('#reviews-banner', { state: 'hidden', timeout: DEADLINE });
      }
      const { body } = await server.api('GET', '/v1/reviews');
      assert.equal(body.reviews[0].acknowledged.by, 'root2');
    } finally {
      await root.close();
      await root2.close();
      await alice.close();
      await server.dispose();
    }
  });
}
