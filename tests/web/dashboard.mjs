// tests/web/dashboard.mjs BIN CHROMIUM OUTDIR: the dashboard in a real browser (run by
// test_dashboard.sh). Steps:
//  1. a real `paycore serve` (rules-only risk engine) on a free loopback port; one
//     authorization held for review; a merchant key with two accounts of its own;
//  2. the page's own files: content types, caching, the strict CSP;
//  3. chromium (playwright-core): log in with the admin key; the key is in session
//     storage and nowhere else;
//  4. `paycore load` runs for a few seconds: the page's committed total must move while
//     it runs; after it, page == GET /v1/stats == what load counted; the rate figures
//     of one second equal the API's for the same second;
//  4b. the channels panel (serve --demo: simulators and the gateway) agrees with
//     GET /v1/channels;
//  4c. payments (approved, declined by risk and by the card, one held for review) made
//     while the page watches: its payments figures move, then equal the API's and what
//     the payments' own answers said;
//  4d. the outbox panel: a webhook receiver of this test (answers 200) and an endpoint
//     nobody listens on; per destination the page equals GET /v1/stats, the receiver's
//     count equals the delivered figure, and the dead endpoint's lag grows on the page;
//  5. approve the review with the page's button: the API shows it approved by this key;
//     approve the payment's review too: the payment resumes and is authorized;
//     start a journal verification from the page: its state shows ok;
//  6. log in with a read_only key: every panel, but no Approve/Decline and no Verify
//     button; then as the merchant: its own figures only (no writer, payments, risk,
//     outbox or journal panels); then with a key bound to the payments' merchant m1,
//     after another merchant's payments: its payments panel shows m1's payments only
//     (page == the API's answer to that key == every payment minus the other's; the
//     other's decline code absent), no system panel;
//  7. no CSP violation, no script error; screenshots in OUTDIR.
// No step depends on timing: every wait polls for its condition with a generous limit.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [bin, chromiumPath, outdir] = process.argv.slice(2);
const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const { chromium } = createRequire(join(root, 'web/package.json'))('playwright-core');
const SLOW = process.env.PAYCORE_SANITIZED === '1' ? 3 : 1;
const WAIT_MS = 60000 * SLOW;
let passed = 0;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function until(what, fn, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function run(args, { capture = true } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', capture ? 'pipe' : 'ignore', 'pipe'] });
    let stdout = '';
    let stderr = '';
    if (capture) child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function startServer(dir) {
  const db = join(dir, 'dash.db');
  const init = await run(['init', '--db', db]);
  check(init.code === 0, `init: ${init.stderr}`);
  const adminKey = init.stdout.trim().replace(/^admin_key=/, '');
  const rules = join(dir, 'risk.rules');
  writeFileSync(rules, 'amount_limit currency=USD max_minor=500000\nblock payer=P_REVIEW action=review reason=watchlist\n' +
    'block payer=P_DECLINE\n');
  const log = join(dir, 'serve.log');
  // --demo: the channel simulators and the gateway, so the channels panel has channels;
  // --webhook-private-ok: this test's webhook receiver listens on loopback
  const proc = spawn(bin, ['serve', '--db', db, '--listen', '127.0.0.1:0', '--log-file', log,
    '--risk-rules', rules, '--risk-rules-only', '--demo', '--webhook-private-ok'], { stdio: 'ignore' });
  const port = await until('the server to listen', () => {
    if (proc.exitCode !== null) throw new Error(`server exited: ${readFileSync(log, 'utf8')}`);
    if (!existsSync(log)) return null;
    const m = readFileSync(log, 'utf8').match(/"msg":"listening".*"port":(\d+)/);
    return m ? Number(m[1]) : null;
  });
  return { proc, url: `http://127.0.0.1:${port}`, adminKey };
}

async function api(server, method, path, key, body) {
  const headers = { Authorization: `Bearer ${key}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(server.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, headers: r.headers, json: text.startsWith('{') ? JSON.parse(text) : null, text };
}

function authorization(amountMinor, i) {
  return { txn_id: 1000 + i, payer_id: `P-${i}`, payee_id: 'M-1', amount_minor: amountMinor, currency: 'USD',
    mcc: '5411', channel: 'ecommerce', country_payer: 'DE', country_merchant: 'DE', account_age_days: 400 };
}

async function seed(server) {
  for (let i = 0; i < 3; i++) {
    const d = await api(server, 'POST', '/v1/risk/decisions', server.adminKey, authorization(1000 + i, i));
    check(d.status === 200 && d.json.outcome === 'approve', `approve decision: ${d.text}`);
  }
  const held = await api(server, 'POST', '/v1/risk/decisions', server.adminKey, authorization(900000, 9));
  check(held.status === 200 && held.json.outcome === 'review', `review decision: ${held.text}`);
  const kept = await api(server, 'POST', '/v1/risk/decisions', server.adminKey, authorization(900001, 10));
  check(kept.status === 200 && kept.json.outcome === 'review', `a second review decision: ${kept.text}`);
  const reader = await api(server, 'POST', '/v1/api-keys', server.adminKey, { name: 'ops-viewer', scope: 'read_only' });
  check(reader.status === 200 || reader.status === 201, `read_only key: ${reader.text}`);
  const key = await api(server, 'POST', '/v1/api-keys', server.adminKey, { name: 'shop', scope: 'merchant' });
  check(key.status === 200 || key.status === 201, `merchant key: ${key.text}`);
  const merchantKey = key.json.secret || key.json.key;
  check(typeof merchantKey === 'string', `merchant key secret in ${key.text}`);
  const accounts = await api(server, 'POST', '/v1/accounts', merchantKey, {
    accounts: [{ id: 'shop-a', currency: 'USD', code: 1 }, { id: 'shop-b', currency: 'USD', code: 1 }] });
  check(accounts.status === 200, `merchant accounts: ${accounts.text}`);
  const merchant = await api(server, 'POST', '/v1/merchants', server.adminKey, { id: 'm1', name: 'Shop', country: 'DE',
    default_currency: 'EUR', currencies: ['EUR'], pricing: { default: { bps: 290, fixed_minor: 30 } } });
  check(merchant.status === 201, `payments merchant: ${merchant.text}`);
  return { reviewId: held.json.decision_id, merchantKey, openReviewId: kept.json.decision_id,
    readerKey: reader.json.secret || reader.json.key };
}

// A webhook receiver of this test: counts the POSTs it answers 200.
async function startReceiver() {
  const receiver = { received: 0 };
  receiver.server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      receiver.received++;
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end('ok');
    });
  });
  await new Promise((r) => receiver.server.listen(0, '127.0.0.1', r));
  receiver.url = `http://127.0.0.1:${receiver.server.address().port}/hook`;
  return receiver;
}

async function endpoints(server, receiver) {
  const live = await api(server, 'POST', '/v1/webhook-endpoints', server.adminKey, { url: receiver.url, events: ['*'] });
  check(live.status === 201, `live endpoint: ${live.text}`);
  // a port nobody listens on (1 is reserved and closed on loopback): its lag only grows
  const dead = await api(server, 'POST', '/v1/webhook-endpoints', server.adminKey, { url: 'http://127.0.0.1:1/hook', events: ['*'] });
  check(dead.status === 201, `dead endpoint: ${dead.text}`);
  return { live: live.json.id, dead: dead.json.id };
}

async function checkAssets(server) {
  const page = await fetch(`${server.url}/dashboard`);
  const html = await page.text();
  check(page.status === 200, `/dashboard: ${page.status}`);
  check(page.headers.get('content-type') === 'text/html; charset=utf-8', `html type ${page.headers.get('content-type')}`);
  check(page.headers.get('cache-control') === 'no-cache', `html cache ${page.headers.get('cache-control')}`);
  const csp = page.headers.get('content-security-policy') || '';
  for (const part of ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"]) {
    check(csp.includes(part), `CSP lacks ${part}: ${csp}`);
  }
  check(!/unsafe-inline|unsafe-eval/.test(csp), `CSP allows inline code: ${csp}`);
  check(!/<script(?![^>]*\bsrc=)[^>]*>/.test(html) && !/\sstyle=/.test(html), 'index.html has inline script or style');
  const script = html.match(/src="(\/dashboard\/assets\/[^"]+\.js)"/);
  check(script, 'index.html names its script');
  const js = await fetch(server.url + script[1]);
  check(js.status === 200 && js.headers.get('content-type') === 'text/javascript; charset=utf-8', `script ${js.status} ${js.headers.get('content-type')}`);
  check(js.headers.get('cache-control') === 'public, max-age=31536000, immutable', `script cache ${js.headers.get('cache-control')}`);
  const again = await fetch(server.url + script[1], { headers: { 'If-None-Match': js.headers.get('etag') } });
  check(again.status === 304, `If-None-Match: ${again.status}`);
  const missing = await fetch(`${server.url}/dashboard/assets/..%2F..%2Fdash.db`);
  check(missing.status === 404, `a path outside the assets: ${missing.status}`);
  passed++;
}

// One consistent read of the page: the second its figures are for, and the figures.
async function pageFigures(page) {
  return page.evaluate(() => {
    const text = (id) => document.getElementById(id)?.textContent ?? null;
    const ids = [...document.querySelectorAll('dd[id^="fig-"]')].map((e) => e.id);
    const figures = Object.fromEntries(ids.map((id) => [id, text(id)]));
    return { now: Number(document.getElementById('status').dataset.now || 0), figures };
  });
}

const fixed = (v, d = 1) => (v === null || v === undefined ? '–' : v.toFixed(d));

async function login(page, server, key) {
  await page.goto(`${server.url}/dashboard`);
  await page.waitForSelector('#login:not([hidden])');
  await page.fill('#key', key);
  await page.click('#login button[type=submit]');
  await page.waitForSelector('#panel-api');
  const storage = await page.evaluate(() => ({ session: sessionStorage.getItem('paycore.key'), local: localStorage.length, cookie: document.cookie }));
  check(storage.session === key, 'the key is in session storage');
  check(storage.local === 0 && storage.cookie === '', 'the key is nowhere else');
}

async function loadAndAgree(page, server) {
  // payments book transfers through the writer, not through POST /v1/transfers: the
  // writer's total and the API's differ; both are read once the page shows the writer's
  const start = await until('the page to show the writer total', async () => {
    const stats = (await api(server, 'GET', '/v1/stats', server.adminKey)).json;
    const f = (await pageFigures(page)).figures;
    return f['fig-writer-transfers_committed_total'] === String(stats.writer.transfers_committed_total) ? stats : null;
  });
  const before = start.writer.transfers_committed_total;
  const load = run(['load', '--url', server.url, '--key', server.adminKey, '--concurrency', '4', '--duration-s', String(4 * SLOW), '--accounts', '50']);
  const seen = new Set();
  let loadDone = null;
  load.then((r) => (loadDone = r));
  await until('the page total to move twice during the load', async () => {
    const f = await pageFigures(page);
    const total = Number(f.figures['fig-writer-transfers_committed_total']);
    if (!loadDone && total > before) seen.add(total);
    if (loadDone && seen.size < 2) throw new Error(`the page moved ${seen.size} times while load ran`);
    return seen.size >= 2;
  });
  const result = await load;
  check(result.code === 0, `load: ${result.stderr}`);
  const counted = Number(result.stdout.match(/ transfers=(\d+)/)[1]);
  const final = before + counted;
  const finalApi = start.api.transfers_total + counted;
  await until('page total == API total == load count', async () => {
    const stats = (await api(server, 'GET', '/v1/stats', server.adminKey)).json;
    const f = (await pageFigures(page)).figures;
    return stats.writer.transfers_committed_total === final && stats.api.transfers_total === finalApi &&
      f['fig-writer-transfers_committed_total'] === String(final) && f['fig-api-transfers_total'] === String(finalApi);
  });
  // The rates: the API answers the same figures for the same second (complete seconds only).
  await until('the page and the API to agree on one second', async () => {
    const shown = await pageFigures(page);
    const stats = (await api(server, 'GET', '/v1/stats', server.adminKey)).json;
    if (stats.now !== shown.now) return false;
    const expect = {
      'fig-api-transfers_per_s': fixed(stats.api.transfers_per_s), 'fig-api-requests_per_s': fixed(stats.api.requests_per_s),
      'fig-api-p50_ms': fixed(stats.api.p50_ms, 2), 'fig-api-p99_ms': fixed(stats.api.p99_ms, 2),
      'fig-payments-payments_per_s': fixed(stats.payments.payments_per_s),
      'fig-outbox-delivered_per_s': fixed(stats.outbox.delivered_per_s),
    };
    for (const [id, text] of Object.entries(expect)) {
      check(shown.figures[id] === text, `${id}: page ${shown.figures[id]}, API ${text} (second ${stats.now})`);
    }
    return true;
  });
  passed++;
  return final;
}

// The channels panel shows every channel of GET /v1/channels with its breaker state.
async function channelsAgree(page, server) {
  const listed = (await api(server, 'GET', '/v1/channels', server.adminKey)).json;
  check(listed.channels.length > 0, `the demo has channels: ${JSON.stringify(listed)}`);
  for (const c of listed.channels) {
    await page.waitForSelector(`#channel-${c.name}`);
    const breaker = await page.textContent(`#channel-${c.name} .badge`);
    check(breaker === c.breaker.state, `channel ${c.name}: page ${breaker}, API ${c.breaker.state}`);
  }
  passed++;
}

function cardPayment(payer, number = '4242424242424242') {
  return { merchant_id: 'm1', amount: 500, currency: 'EUR', capture_method: 'manual', payer: { id: payer, country: 'DE' },
    payment_method: { type: 'card', card: { number, exp_month: 12, exp_year: 2030, cvc: '123' } } };
}

// Payments made while the page watches: approved, declined by risk (P_DECLINE), declined
// by the card ('05'), one held for review. The page's figures move while they are made,
// then equal the API's and the count of the payments' own answers.
async function paymentsAgree(page, server) {
  const before = (await api(server, 'GET', '/v1/stats', server.adminKey)).json.payments;
  const plan = [];
  for (let i = 0; i < 24; i++) plan.push(i % 8 === 3 ? cardPayment('P_DECLINE') : i % 8 === 5 ? cardPayment(`P${i}`, '4000000000000051') : cardPayment(`P${i}`));
  plan.push(cardPayment('P_REVIEW'));
  const made = { authorized: 0, declined: 0, in_review: 0 };
  let review = null;
  for (const [i, body] of plan.entries()) {
    const r = await api(server, 'POST', '/v1/payments', server.adminKey, body);
    check(r.status === 201 || r.status === 200, `payment: ${r.text}`);
    check(r.json.status in made, `a payment's outcome: ${r.text}`);
    made[r.json.status]++;
    if (r.json.status === 'in_review') review = r.json;
    if (i === 9) { // the page moves while payments are made: it shows the first ten before the rest go
      const shown = String(before.created_total + 10);
      await until('the page to show the first payments', async () => (await pageFigures(page)).figures['fig-payments-created_total'] === shown);
    }
  }
  check(made.authorized > 0 && made.declined > 0 && review, `outcomes: ${JSON.stringify(made)}`);
  const want = { created: before.created_total + plan.length, authorized: before.authorized_total + made.authorized,
    declined: before.declined_total + made.declined, review: before.review_total + made.in_review };
  await until('page payments == API == the answers', async () => {
    const p = (await api(server, 'GET', '/v1/stats', server.adminKey)).json.payments;
    const f = (await pageFigures(page)).figures;
    return p.created_total === want.created && p.authorized_total === want.authorized &&
      p.declined_total === want.declined && p.review_total === want.review &&
      f['fig-payments-created_total'] === String(want.created) && f['fig-payments-authorized_total'] === String(want.authorized) &&
      f['fig-payments-declined_total'] === String(want.declined);
  });
  const declines = await page.textContent('#payments-declines');
  check(declines.includes('risk_declined') && declines.includes('05'), `top decline codes on the page: ${declines}`);
  passed++;
  return review;
}

// Per destination, the page's row equals GET /v1/stats; the live endpoint delivered what
// the receiver got; the dead endpoint's lag grows on the page.
async function outboxAgrees(page, server, receiver, ids) {
  await until('every event delivered to the live endpoint, the same on page, API and receiver', async () => {
    const o = (await api(server, 'GET', '/v1/stats', server.adminKey)).json.outbox;
    const live = o.destinations.find((d) => d.id === ids.live);
    if (!live || live.lag_s !== 0 || live.delivered_total !== receiver.received || receiver.received === 0) return false;
    const cell = await page.$(`#outbox-${ids.live} td.delivered`);
    return cell !== null && (await cell.textContent()) === String(receiver.received);
  });
  const lags = new Set();
  await until('the dead endpoint\'s lag to grow on the page', async () => {
    const lag = Number(await page.textContent(`#outbox-${ids.dead} td.lag`));
    if (lag > 0) lags.add(lag);
    return lags.size >= 2 && Math.max(...lags) > Math.min(...lags);
  });
  const o = (await api(server, 'GET', '/v1/stats', server.adminKey)).json.outbox;
  for (const d of o.destinations) {
    const row = await page.$(`#outbox-${d.id}`);
    check(row !== null, `destination ${d.id} on the page`);
    check((await page.textContent(`#outbox-${d.id} .badge`)) === (d.disabled ? 'disabled' : 'enabled'), `destination ${d.id} state`);
  }
  const dead = o.destinations.find((d) => d.id === ids.dead);
  check(dead && dead.delivered_total === 0 && dead.retried_total > 0 && dead.lag_s > 0, `the dead endpoint: ${JSON.stringify(dead)}`);
  passed++;
}

// The payment held for review, approved from the page: it resumes and is authorized.
async function approvePaymentFromPage(page, server, payment) {
  const id = payment.risk.decision_id;
  const before = (await api(server, 'GET', '/v1/stats', server.adminKey)).json.payments.authorized_total;
  await page.waitForSelector(`#review-${id} button:has-text("Approve")`);
  await page.click(`#review-${id} button:has-text("Approve")`);
  await page.waitForSelector(`#reviews-message:has-text("review ${id}: approved")`);
  await until('the payment to resume and be authorized', async () =>
    (await api(server, 'GET', `/v1/payments/${payment.id}`, server.adminKey)).json.status === 'authorized');
  await until('the page to count the authorization', async () =>
    (await pageFigures(page)).figures['fig-payments-authorized_total'] === String(before + 1));
  passed++;
}

async function approveFromPage(page, server, reviewId) {
  await page.waitForSelector(`#review-${reviewId} button:has-text("Approve")`);
  await page.click(`#review-${reviewId} button:has-text("Approve")`);
  await page.waitForSelector(`#reviews-message:has-text("review ${reviewId}: approved")`);
  const approved = (await api(server, 'GET', '/v1/risk/reviews?state=approved', server.adminKey)).json;
  const row = approved.data.find((r) => r.decision_id === reviewId);
  check(row && row.state === 'approved' && row.decided_by.startsWith('key_'), `review approved: ${JSON.stringify(approved)}`);
  await until('the review to leave the open queue on the page', async () => (await page.$(`#review-${reviewId}`)) === null);
  passed++;
}

// A read_only key sees what an admin sees, without a button that changes anything.
async function readOnlyView(page, server, readerKey, openReviewId) {
  await page.click('#logout');
  await page.waitForSelector('#login:not([hidden])');
  check(await page.evaluate(() => sessionStorage.getItem('paycore.key')) === null, 'log out forgets the key');
  await login(page, server, readerKey);
  for (const name of ['api', 'writer', 'payments', 'channels', 'risk', 'reviews', 'outbox', 'journal']) {
    await page.waitForSelector(`#panel-${name}`);
  }
  await page.waitForSelector(`#review-${openReviewId}`);
  check((await page.$$(`#review-${openReviewId} button`)).length === 0, 'a read_only key gets no Approve/Decline');
  check(await page.$eval('#journal-verify', (b) => b.hidden), 'a read_only key gets no Verify button');
  passed++;
}

async function merchantView(page, server, merchantKey, adminTotal) {
  await page.click('#logout');
  await page.waitForSelector('#login:not([hidden])');
  check(await page.evaluate(() => sessionStorage.getItem('paycore.key')) === null, 'log out forgets the key');
  for (let i = 0; i < 3; i++) {
    const t = await api(server, 'POST', '/v1/transfers', merchantKey, { id: `shop-t${i}`, debit_account_id: 'shop-a', credit_account_id: 'shop-b', amount: 100, currency: 'USD', code: 1 });
    check(t.status === 200 || t.status === 201, `merchant transfer: ${t.text}`);
  }
  await login(page, server, merchantKey);
  await until('the merchant total', async () => (await pageFigures(page)).figures['fig-api-transfers_total'] === '3');
  for (const name of ['writer', 'payments', 'channels', 'risk', 'reviews', 'outbox', 'journal']) {
    check((await page.$(`#panel-${name}`)) === null, `a merchant key sees no ${name} panel`);
  }
  const stats = (await api(server, 'GET', '/v1/stats', merchantKey)).json;
  check(stats.scope === 'merchant' && stats.api.transfers_total === 3 && !('writer' in stats) && !('risk' in stats) &&
    !('journal' in stats) && !('channels' in stats) && !('payments' in stats) && !('outbox' in stats),
    `merchant stats: ${JSON.stringify(stats).slice(0, 300)}`);
  check(adminTotal > 3, 'the admin total is the whole server\'s');
  await page.screenshot({ path: join(outdir, 'dashboard-merchant.png'), fullPage: true });
  passed++;
}

// A key bound to merchant m1 after merchant m2 made payments of its own (one declined
// with code 54, which m1 never had): the page's payments are m1's alone.
async function merchantPaymentsView(page, server) {
  await page.click('#logout');
  await page.waitForSelector('#login:not([hidden])');
  const other = await api(server, 'POST', '/v1/merchants', server.adminKey, { id: 'm2', name: 'Other', country: 'DE',
    default_currency: 'EUR', currencies: ['EUR'], pricing: { default: { bps: 290, fixed_minor: 30 } } });
  check(other.status === 201, `merchant m2: ${other.text}`);
  for (const number of ['4242424242424242', '4000000000000549']) {
    const r = await api(server, 'POST', '/v1/payments', server.adminKey, { ...cardPayment('Q1', number), merchant_id: 'm2' });
    check(r.status === 201, `m2 payment: ${r.text}`);
  }
  const bound = await api(server, 'POST', '/v1/merchants/m1/keys', server.adminKey, { name: 'm1-dashboard' });
  check(bound.status === 201 && typeof bound.json.key === 'string', `m1 key: ${bound.text}`);
  await login(page, server, bound.json.key);
  await page.waitForSelector('#panel-payments');
  const all = (await api(server, 'GET', '/v1/stats', server.adminKey)).json.payments;
  const mine = (await api(server, 'GET', '/v1/stats', bound.json.key)).json;
  check(mine.payments.created_total === all.created_total - 2 && mine.payments.created_total > 0,
    `m1's payments only: ${mine.payments.created_total} of ${all.created_total}`);
  check(all.top_declines.some((d) => d.code === '54') && !mine.payments.top_declines.some((d) => d.code === '54'),
    `m2's decline code is not m1's: ${JSON.stringify(mine.payments.top_declines)}`);
  await until('the page to show m1\'s payments', async () => {
    const f = (await pageFigures(page)).figures;
    return f['fig-payments-created_total'] === String(mine.payments.created_total) &&
      f['fig-payments-declined_total'] === String(mine.payments.declined_total);
  });
  check(await page.textContent('#panel-payments h2') === 'Your payments', 'the panel says whose payments');
  check(!(await page.textContent('#payments-declines')).includes('54'), 'no decline code of m2 on m1\'s page');
  for (const name of ['writer', 'channels', 'risk', 'reviews', 'outbox', 'journal']) {
    check((await page.$(`#panel-${name}`)) === null, `a merchant key sees no ${name} panel`);
  }
  check(!('writer' in mine) && !('outbox' in mine) && !('risk' in mine), 'no system section for a merchant key');
  await page.screenshot({ path: join(outdir, 'dashboard-merchant-payments.png'), fullPage: true });
  passed++;
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'paycore-web-'));
  const server = await startServer(dir);
  const receiver = await startReceiver();
  const problems = [];
  let browser = null;
  try {
    const { reviewId, merchantKey, openReviewId, readerKey } = await seed(server);
    const ids = await endpoints(server, receiver);
    await checkAssets(server);
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'] });
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.on('pageerror', (e) => problems.push(`script error: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error' || /Content Security Policy/.test(m.text())) problems.push(`console: ${m.text()}`); });
    await page.addInitScript(() => document.addEventListener('securitypolicyviolation', (e) => console.error(`Content Security Policy violation: ${e.violatedDirective} ${e.blockedURI}`)));
    await login(page, server, server.adminKey);
    for (const name of ['api', 'writer', 'payments', 'channels', 'risk', 'reviews', 'outbox', 'journal']) {
      await page.waitForSelector(`#panel-${name}`);
    }
    passed++;
    await channelsAgree(page, server);
    const review = await paymentsAgree(page, server);
    const total = await loadAndAgree(page, server);
    await outboxAgrees(page, server, receiver, ids);
    await approveFromPage(page, server, reviewId);
    await approvePaymentFromPage(page, server, review);
    await page.click('#journal-verify');
    await page.waitForSelector('#journal-state.ok');
    passed++;
    await page.screenshot({ path: join(outdir, 'dashboard-admin.png'), fullPage: true });
    await readOnlyView(page, server, readerKey, openReviewId);
    await merchantView(page, server, merchantKey, total);
    await merchantPaymentsView(page, server);
    // 401s while logged out are the page asking, not errors of the page
    const real = problems.filter((p) => !/401/.test(p));
    check(real.length === 0, `the page reported problems:\n${real.join('\n')}`);
    passed++;
  } finally {
    if (browser) await browser.close();
    receiver.server.close();
    server.proc.kill('SIGTERM');
    await new Promise((r) => server.proc.once('exit', r));
    if (server.proc.exitCode !== 0) console.error(`server exit: ${server.proc.exitCode} ${server.proc.signalCode}`);
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(`screenshots: ${outdir}`);
  console.log(`${passed} passed, 0 failed`);
}

main().catch((e) => {
  console.error(`FAIL ${e.stack || e.message}`);
  console.log(`${passed} passed, 1 failed`);
  process.exit(1);
});
