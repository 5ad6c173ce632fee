// End-to-end test of the visage browser client in headless Debian Chromium.
//
// Serves the built app (frontend/dist) with a tiny static server that also forwards /v1/* to
// the real visage service (so the page talks to its own origin, as when the service serves the
// app), fakes the webcam with .y4m videos, and drives the page with playwright-core:
// enroll a person from one video, recognise them in another, "unknown" for a different person,
// erase, "unknown" again; a person enrolled and withdrawn again with their withdrawal code.
// Every request the page makes is recorded and checked: only static assets and JSON with
// embedding vectors, never image data.
//
// The browser holds an `enroll,recognize` key (VISAGE_BROWSER_KEY): the least it needs. The
// People screen says it needs an admin key with it; the admin key (VISAGE_KEY) goes into
// Settings for the People steps only, as an operator would do.
//
// Environment (run.sh sets it): VISAGE_BACKEND (http://127.0.0.1:PORT), VISAGE_KEY (admin),
// VISAGE_BROWSER_KEY (enroll,recognize), VISAGE_BIN (the service's binary, for `visage embed`),
// E2E_DIST, E2E_WORK (videos), E2E_ARTIFACTS, E2E_MODE=flow|bench|bench-ort, E2E_BENCH_LABEL, and
// E2E_BENCH_CONFIGS: comma-separated page-address queries to measure in turn, e.g.
// "default,detect_side=256,detect_workers=2" ("default" = the app's own settings).
// E2E_MODE=bench-ort: the pipeline against onnxruntime-web on the same models (bench-ort.mjs),
// E2E_ORT_ROUNDS x E2E_ORT_K iterations per row (default 10 x 10) and E2E_ORT_SETUP_ROUNDS
// set-ups (default 10); writes bench-ort.json and bench-ort.md. E2E_CHROMIUM_FLAGS: more
// Chromium flags, space-separated, or separated by ';' when one of them holds spaces (e.g.
// "--js-flags=--prof --logfile=/tmp/v8.log;--no-sandbox" to look at V8; BENCHMARKS.md, the
// browser against onnxruntime-web).
import { chromium } from 'playwright-core';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import zlib from 'node:zlib';
import { execFileSync } from 'node:child_process';

const env = process.env;
const BACKEND = env.VISAGE_BACKEND;
const KEY = env.VISAGE_KEY;
const BROWSER_KEY = env.VISAGE_BROWSER_KEY;
const DIST = path.resolve(env.E2E_DIST || new URL('../dist', import.meta.url).pathname);
const WORK = path.resolve(env.E2E_WORK || new URL('./work', import.meta.url).pathname);
const ART = path.resolve(env.E2E_ARTIFACTS || new URL('./artifacts', import.meta.url).pathname);
const MODE = env.E2E_MODE || 'flow';
fs.mkdirSync(ART, { recursive: true });

const log = (...a) => console.log(`[e2e ${new Date().toISOString().slice(11, 19)}]`, ...a);
function assert(cond, msg) { if (!cond) throw new Error(`assertion failed: ${msg}`); }
assert(KEY && BROWSER_KEY && KEY !== BROWSER_KEY, 'VISAGE_KEY (admin) and VISAGE_BROWSER_KEY (enroll,recognize) are both set');
// Every secret the test meets (keys, withdrawal tokens): none may appear in the console.
const secrets = [KEY, BROWSER_KEY];

// ---- where the page comes from -----------------------------------------------------------
// E2E_APP_FROM_BACKEND=1 (the flow test): the visage service serves the app at `/`, with its
// Content-Security-Policy, exactly as `cargo xtask serve` ships it. Otherwise (the benchmark,
// which compares builds from several directories): a tiny static server for E2E_DIST that
// forwards /v1/* to the service, so the page still talks to its own origin.
const FROM_BACKEND = env.E2E_APP_FROM_BACKEND === '1';
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css', '.json': 'application/json', '.png': 'image/png', '.ico': 'image/x-icon' };
const server = http.createServer((req, res) => {
  if (req.url.startsWith('/v1/')) {
    const up = new URL(req.url, BACKEND);
    const p = http.request(up, { method: req.method, headers: { ...req.headers, host: up.host } }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    p.on('error', (e) => { res.writeHead(502); res.end(String(e)); });
    req.pipe(p);
    return;
  }
  const extra = MODE === 'bench-ort' && benchOrtFile(decodeURIComponent(new URL(req.url, 'http://x').pathname));
  if (extra) {
    if (!fs.existsSync(extra)) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'content-type': TYPES[path.extname(extra)] || 'application/octet-stream', 'cache-control': 'no-cache' });
    fs.createReadStream(extra).pipe(res);
    return;
  }
  let file = path.join(DIST, decodeURIComponent(new URL(req.url, 'http://x').pathname));
  if (!file.startsWith(DIST) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) file = path.join(DIST, 'index.html');
  res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream', 'cache-control': 'no-cache' });
  fs.createReadStream(file).pipe(res);
});

/// The benchmark against onnxruntime-web's files beside the app: its page and workers
/// (/bench/), the frame (/bench/frame.rgba: the first frame of A2.y4m, made by run.sh), the two
/// ONNX files (/models/) and onnxruntime-web's dist (/ort/, from this folder's node_modules).
function benchOrtFile(p) {
  const HERE = path.dirname(new URL(import.meta.url).pathname);
  const within = (dir, name) => { const f = path.join(dir, name); return f.startsWith(dir + path.sep) ? f : null; };
  if (p === '/bench/frame.rgba') return path.join(WORK, 'A2.rgba');
  const m = /^\/bench\/(bench-ort[\w.-]*\.(?:html|mjs))$/.exec(p);
  if (m) return path.join(HERE, m[1]);
  if (/^\/models\/[\w.-]+\.onnx$/.test(p)) return within(path.resolve(HERE, '../../models'), p.slice('/models/'.length));
  if (p.startsWith('/ort/')) return within(path.join(HERE, 'node_modules/onnxruntime-web/dist'), p.slice('/ort/'.length));
  return null;
}
if (!FROM_BACKEND) await new Promise((r) => server.listen(0, '127.0.0.1', r));
const ORIGIN = FROM_BACKEND ? new URL(BACKEND).origin : `http://127.0.0.1:${server.address().port}`;
log('app served at', ORIGIN, FROM_BACKEND ? 'by the visage service' : `from ${DIST}; service at ${BACKEND}`);

// ---- the service, directly (setup and cleanup only) --------------------------------------
async function api(method, p, body) {
  const r = await fetch(new URL(p, BACKEND), { method, headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body: body && JSON.stringify(body) });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}
async function status(method, p, headers = {}) {
  const r = await fetch(new URL(p, BACKEND), { method, headers });
  await r.arrayBuffer();
  return r.status;
}
const CONSENT = { policy_version: 'e2e-1', policy_text: 'e2e paging test', purpose: 'e2e', evidence: { method: 'checkbox', collected_by: 'e2e' } };
async function eraseEveryone() {
  let n = 0;
  for (;;) {
    // Erasing shortens the list, so the first page again until it is empty.
    const page = await api('GET', '/v1/people?limit=200');
    for (const p of page.items) await api('DELETE', `/v1/people/${p.id}`);
    n += page.items.length;
    if (!page.next_cursor) break;
  }
  if (n) log(`erased ${n} leftover people`);
}

// ---- browser -----------------------------------------------------------------------------
const FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--no-first-run', '--disable-quic', '--use-fake-ui-for-media-stream',
  ...(env.E2E_CHROMIUM_FLAGS || '').split(env.E2E_CHROMIUM_FLAGS?.includes(';') ? ';' : ' ').filter(Boolean)];
const requests = [];
const consoleErrors = [];
const consoleAll = [];
let browserCount = 0;
let lastPage = null;

/// Opens the app in a fresh browser whose webcam plays `video`; `video = null`: a machine
/// without any camera.
async function open(video, { withKey = true, query = '' } = {}) {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'visage-e2e-profile-'));
  const camera = video ? ['--use-fake-device-for-media-stream', `--use-file-for-fake-video-capture=${video}`] : [];
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: env.CHROMIUM || '/usr/bin/chromium', headless: true,
    args: [...FLAGS, ...camera], viewport: { width: 1000, height: 1100 },
    acceptDownloads: true,
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  const n = ++browserCount;
  lastPage = page;
  page.on('request', (r) => requests.push({ browser: n, url: r.url(), method: r.method(), type: r.resourceType(), headers: r.headers(), body: r.postDataBuffer() }));
  page.on('websocket', (ws) => requests.push({ browser: n, url: ws.url(), method: 'WEBSOCKET', type: 'websocket', headers: {}, body: null }));
  page.on('console', (m) => { consoleAll.push(m.text()); if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  page.on('crash', () => console.error('page crashed'));
  // Main-thread responsiveness: long tasks (over 50 ms) while the page runs.
  await page.addInitScript(() => {
    window.__longtasks = { count: 0, total_ms: 0, max_ms: 0 };
    try {
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
          window.__longtasks.count++;
          window.__longtasks.total_ms += e.duration;
          window.__longtasks.max_ms = Math.max(window.__longtasks.max_ms, e.duration);
        }
      }).observe({ type: 'longtask', buffered: true });
    } catch { /* no long task timing */ }
  });
  if (withKey) {
    await page.addInitScript((key) => {
      if (!localStorage.getItem('visage.settings')) localStorage.setItem('visage.settings', JSON.stringify({ api_key: key }));
    }, BROWSER_KEY);
  }
  await page.goto(query ? `${ORIGIN}/?${query}` : ORIGIN);
  await page.locator('#models-status', { hasText: 'models ready' }).waitFor({ timeout: 240_000 });
  // index.html's loading message is gone once the app is up.
  assert(await page.locator('#boot').count() === 0, 'the loading message is removed when the app mounts');
  return { n, ctx, page, close: async () => { await ctx.close(); fs.rmSync(userDataDir, { recursive: true, force: true }); } };
}

async function tab(page, name) { await page.locator('nav button', { hasText: name }).click(); }

/// Puts `key` in Settings and saves, as a person would.
async function setKey(page, key) {
  await tab(page, 'Settings');
  const field = page.locator('#api-key');
  // Not a password field: a browser's password manager would offer to save the key and send
  // it to its leak check.
  assert(await field.getAttribute('type') === 'text' && await field.getAttribute('autocomplete') === 'off',
    'the API key field is a text field without autocomplete');
  assert(await page.locator('input[type=password]').count() === 0, 'no password field on the page');
  await field.fill(key);
  await page.click('#settings-save');
  await page.locator('#settings-status', { hasText: 'saved' }).waitFor();
}

/// Waits until the live list shows `text` in a row of class `cls` (known/unknown).
async function waitLive(page, cls, text, timeout = 120_000) {
  const loc = text ? page.locator(`#live-faces li.${cls}`, { hasText: text }) : page.locator(`#live-faces li.${cls}`);
  await loc.first().waitFor({ timeout });
}

/// For `ms`, no face may be shown as known (a false name must never appear).
async function neverKnown(page, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const known = await page.locator('#live-faces li.known').allTextContents();
    assert(known.length === 0, `no face may be recognised, but saw ${JSON.stringify(known)}`);
    await page.waitForTimeout(200);
  }
}

async function stats(page) { return page.evaluate(() => window.__visage); }

/// Enrolls `name` from `video` through the Enroll screen; returns the person's id and
/// withdrawal token as the Enrolled screen shows them (and the open browser with `keepOpen`).
async function enroll(video, name, { viaSettings = false, keepOpen = false } = {}) {
  const b = await open(video, { withKey: !viaSettings });
  const { page } = b;
  if (viaSettings) {
    // Without a key the live view says so, in red...
    await page.locator('#error', { hasText: 'no API key' }).waitFor({ timeout: 60_000 });
    await setKey(page, BROWSER_KEY);
    // ...and once a key is saved, that message is gone (it used to stay on every screen).
    assert(await page.locator('#error').count() === 0, 'the "no API key" message goes once a key is saved');
  }
  await tab(page, 'Enroll');
  await page.locator('#policy-text').waitFor();
  assert(await page.locator('#consent-continue').isDisabled(), 'capture must not start before consent');
  await page.fill('#enroll-name', name);
  assert(await page.locator('#consent-continue').isDisabled(), 'the checkbox is required');
  await page.check('#consent-check');
  await page.click('#consent-continue');
  await page.locator('#enroll-progress').waitFor();
  await page.locator('#enroll-status', { hasText: 'Enrolled' }).waitFor({ timeout: 180_000 });
  log('enrolled', name, ':', await page.locator('#enroll-status').textContent());
  assert(await page.locator('#error').count() === 0, `no error on the Enrolled screen: ${await page.locator('#error').allTextContents()}`);
  // The withdrawal token, shown once to the person with what it is for; not kept in the browser.
  const token = (await page.locator('#withdrawal-token').textContent({ timeout: 5_000 })).trim();
  const id = (await page.locator('#enrolled-id').textContent()).trim();
  assert(/^vwt_[A-Za-z0-9_-]{20,}$/.test(token), `the Enrolled screen shows a withdrawal token: ${token.slice(0, 4)}…`);
  assert(/without an operator/.test(await page.locator('#withdrawal').textContent()), 'the token comes with its explanation');
  assert(await page.locator('#copy-token').isVisible(), 'the token has a copy button');
  secrets.push(token);
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
  assert(!stored.includes(token), 'the withdrawal token is not stored in the browser');
  await page.screenshot({ path: path.join(ART, `enroll-${slug(name)}.png`) });
  if (keepOpen) return { b, id, token };
  await b.close();
  return { id, token };
}

const slug = (s) => s.toLowerCase().replace(/[^a-z0-9]+/g, '-');

/// Without a camera: the page says so, and a photo chosen from disk is still analysed in the
/// browser (only its embeddings go to the service; checkRequests verifies that too).
async function noCamera(photo, name, faces) {
  const b = await open(null);
  await b.page.locator('#camera-message', { hasText: 'Camera unavailable' }).waitFor({ timeout: 60_000 });
  await b.page.locator('#photo-recognize').setInputFiles(photo);
  await b.page.locator('#photo-faces li').nth(faces - 1).waitFor({ timeout: 60_000 });
  const labels = await b.page.locator('#photo-faces li').allTextContents();
  assert(labels.length === faces, `${faces} faces in ${path.basename(photo)}: ${labels}`);
  assert(labels.filter((t) => t.includes(name)).length === 1, `exactly one face of the photo is ${name}: ${labels}`);
  // Coloured like the live list: the known face green, the others red.
  const known = await b.page.locator('#photo-faces li.known').allTextContents();
  assert(known.length === 1 && known[0].includes(name), `the known face is marked known: ${known}`);
  assert(await b.page.locator('#photo-faces li.unknown').count() === faces - 1, 'the other faces are marked unknown');
  assert(await b.page.locator('.photo .status', { hasText: `${faces} faces` }).count() === 1, 'the face count reads "N faces"');
  await b.page.screenshot({ path: path.join(ART, 'no-camera-photo.png') });
  await b.close();
  log(`without a camera: ${path.basename(photo)} analysed in the browser:`, labels.join(' | '));
  sameAsNative(b.n, photo);
}

/// The embeddings browser `n` sent for `photo` (its last /v1/recognize) against the service's
/// own pipeline on the same file (`visage embed`, native): each browser face must be one of the
/// native faces at cosine >= 0.999, so templates enrolled in the browser and through the API are
/// interchangeable. The wasm build has kernels of its own (SIMD128), which only this compares.
function sameAsNative(n, photo) {
  const sent = requests.filter((r) => r.browser === n && r.method === 'POST' && new URL(r.url).pathname === '/v1/recognize');
  assert(sent.length > 0, `the browser asked /v1/recognize about ${path.basename(photo)}`);
  const browser = JSON.parse(sent.at(-1).body.toString()).embeddings.map((e) => e.vector);
  const out = execFileSync(env.VISAGE_BIN, ['embed', photo], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const native = JSON.parse(out).faces.map((f) => f.embedding.vector);
  assert(browser.length === native.length, `as many faces in the browser (${browser.length}) as natively (${native.length})`);
  const cos = (a, b) => {
    const dot = (x, y) => x.reduce((s, v, i) => s + v * y[i], 0);
    return dot(a, b) / Math.sqrt(dot(a, a) * dot(b, b));
  };
  const best = browser.map((v) => Math.max(...native.map((u) => cos(v, u))));
  const worst = Math.min(...best);
  assert(worst >= 0.999, `browser and native embeddings of ${path.basename(photo)} agree (cosine per face ${best.map((c) => c.toFixed(5))})`);
  log(`browser and native embeddings of ${path.basename(photo)}: ${best.length} faces, cosine >= ${worst.toFixed(5)}`);
}

async function scenario(label, { enrollVideo, sameVideo, otherVideo, viaSettings, photo, paging }) {
  const name = `${label} ${Date.now() % 100000}`;
  log(`--- scenario ${label}: enroll from ${path.basename(enrollVideo)}, recognise in ${path.basename(sameVideo)}, unknown ${path.basename(otherVideo)}`);
  await enroll(enrollVideo, name, { viaSettings });

  let b = await open(sameVideo);
  await waitLive(b.page, 'known', name);
  // The FPS readout is on top of the video, not under its canvas.
  const hudOnTop = await b.page.evaluate(() => {
    const r = document.getElementById('hud').getBoundingClientRect();
    const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    return !!(top && top.closest('#hud'));
  });
  assert(hudOnTop, 'the FPS readout is visible above the video');
  assert(/\d FPS/.test(await b.page.locator('#hud').textContent()), 'the readout shows the frame rate');
  const s = await stats(b.page);
  log(`recognised ${name} in another video:`, (await b.page.locator('#live-faces li.known').first().textContent()), `(fps ${s.fps.toFixed(1)}, frame ${s.latency_ms_median.toFixed(0)} ms)`);
  await b.page.locator('#view').screenshot({ path: path.join(ART, `live-${slug(label)}-known.png`) });
  await b.page.screenshot({ path: path.join(ART, `page-${slug(label)}-known.png`) });
  await b.close();

  b = await open(otherVideo);
  await waitLive(b.page, 'unknown');
  await neverKnown(b.page, 4000);
  log('a different person is unknown');
  await b.page.locator('#view').screenshot({ path: path.join(ART, `live-${slug(label)}-other-unknown.png`) });
  await b.close();

  if (photo) await noCamera(photo.file, name, photo.faces);

  b = await open(sameVideo);
  const { page } = b;
  // The browser's enroll,recognize key cannot list people: the screen says what it needs.
  await tab(page, 'People');
  await page.locator('#people-status', { hasText: 'needs an admin key' }).waitFor({ timeout: 30_000 });
  assert(await page.locator('#people-list tbody tr').count() === 0, 'no one is listed without an admin key');
  log('with the browser key, the People screen asks for an admin key');
  // The operator puts the admin key in Settings for the People steps.
  await setKey(page, KEY);
  await tab(page, 'People');
  const row = page.locator('#people-list tr', { hasText: name });
  await row.waitFor({ timeout: 30_000 });
  if (paging) await pagingCheck(page);
  // Search by name: a query that fits nobody hides the row, part of the name brings it back.
  const search = page.locator('#people-search');
  await search.fill('nobody-by-this-name');
  await search.press('Enter');
  await row.waitFor({ state: 'detached', timeout: 30_000 });
  await search.fill(name.split(' ').pop());
  await search.press('Enter');
  await row.waitFor({ timeout: 30_000 });
  // Export downloads the person's data as JSON.
  const [download] = await Promise.all([page.waitForEvent('download'), row.locator('button.export').click()]);
  const exported = JSON.parse(fs.readFileSync(await download.path(), 'utf8'));
  assert(exported.person.name === name && exported.faces.length >= 3, 'export holds the person and their faces');
  assert(exported.faces.every((f) => f.source === 'browser' && f.embedding.length === 192), 'faces came from the browser as 192-d vectors');
  await row.locator('button.erase').click();
  await row.locator('button.erase-confirm').click();
  await page.locator('#people-status', { hasText: 'erased' }).waitFor({ timeout: 30_000 });
  assert(await page.locator('#people-list tr', { hasText: name }).count() === 0, 'erased person is gone from the list');
  log('erased', name);
  // Back to the browser's own key for the live view, as after an operator's visit.
  await setKey(page, BROWSER_KEY);
  await tab(page, 'Live');
  await waitLive(page, 'unknown');
  await neverKnown(page, 4000);
  log('after erasure the person is unknown again');
  await page.locator('#view').screenshot({ path: path.join(ART, `live-${slug(label)}-after-erase.png`) });
  await b.close();
}

/// The People screen follows `next_cursor`: with more people than a page holds, "Load more"
/// brings the rest (the list used to stop at the first 200).
async function pagingCheck(page) {
  const tag = `Paging ${Date.now() % 100000}`;
  const ids = [];
  for (let i = 0; i < 101; i++) ids.push((await api('POST', '/v1/people', { name: `${tag} ${String(i).padStart(3, '0')}`, consent: CONSENT })).id);
  try {
    await page.locator('#people-search').fill(tag);
    await page.locator('#people-search').press('Enter');
    const rows = page.locator('#people-list tbody tr', { hasText: tag });
    await page.locator('#people-more').waitFor({ timeout: 30_000 });
    const first = await rows.count();
    assert(first > 0 && first < 101, `the first page holds part of the 101 people (${first})`);
    await page.locator('#people-status', { hasText: 'more to load' }).waitFor();
    while (await page.locator('#people-more').count()) {
      await page.click('#people-more');
      await page.waitForTimeout(300);
    }
    await page.locator('#people-status', { hasText: '101 people' }).waitFor({ timeout: 30_000 });
    assert(await rows.count() === 101, `all 101 people are listed after "Load more" (${await rows.count()})`);
    log(`paging: ${first} people on the first page, 101 after "Load more"`);
  } finally {
    for (const id of ids) await api('DELETE', `/v1/people/${id}`);
  }
  await page.locator('#people-search').fill('');
  await page.locator('#people-search').press('Enter');
}

/// The data subject withdraws their consent with their person id and withdrawal code, in the
/// Enroll screen's form, without any API key: they are erased.
async function withdrawal(video) {
  const name = `Withdrawing ${Date.now() % 100000}`;
  log(`--- withdrawal: enroll ${name} from ${path.basename(video)}, then withdraw with the token`);
  const { b, id, token } = await enroll(video, name, { keepOpen: true });
  const { page } = b;
  assert(await status('GET', `/v1/people/${id}`, { authorization: `Bearer ${KEY}` }) === 200, 'the person exists');
  await page.click('#enroll-again');
  // A wrong code erases nothing.
  await page.fill('#withdraw-id', id);
  await page.fill('#withdraw-token', `vwt_wrong${token.slice(9)}`);
  await page.click('#withdraw-submit');
  await page.locator('#withdraw-status', { hasText: 'wrong' }).waitFor({ timeout: 30_000 });
  assert(await status('GET', `/v1/people/${id}`, { authorization: `Bearer ${KEY}` }) === 200, 'a wrong code erases nothing');
  await page.fill('#withdraw-token', token);
  await page.click('#withdraw-submit');
  await page.locator('#withdraw-status', { hasText: 'Consent withdrawn' }).waitFor({ timeout: 30_000 });
  log('withdrawn:', await page.locator('#withdraw-status').textContent());
  assert(await status('GET', `/v1/people/${id}`, { authorization: `Bearer ${KEY}` }) === 404, 'the withdrawn person is erased');
  const calls = requests.filter((r) => r.method === 'POST' && new URL(r.url).pathname === `/v1/people/${id}/consent/withdraw`);
  assert(calls.length === 2, `two withdrawal requests (${calls.length})`);
  assert(calls.every((r) => !r.headers.authorization && r.headers['x-withdrawal-token']), 'withdrawal carries the token and no API key');
  await page.screenshot({ path: path.join(ART, 'withdrawn.png') });
  await b.close();
}

// ---- privacy check on every request ------------------------------------------------------
function checkRequests() {
  const dist = new Set(fs.readdirSync(DIST));
  let api = 0, vectors = 0;
  const problems = [];
  const walk = (v, where) => {
    if (typeof v === 'string') {
      if (v.length > 2000) problems.push(`${where}: long string (${v.length} chars)`);
      if (/^data:|base64,|^\/9j\/|^iVBOR/.test(v)) problems.push(`${where}: looks like encoded image data`);
    } else if (Array.isArray(v)) {
      if (v.length > 192) problems.push(`${where}: array of ${v.length} items`);
      v.forEach((x, i) => walk(x, `${where}[${i}]`));
    } else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) walk(x, `${where}.${k}`);
    }
  };
  for (const r of requests) {
    const u = new URL(r.url);
    if (u.protocol === 'blob:' || u.protocol === 'data:') { assert(r.method === 'GET' && !r.body, 'blob/data URLs only read'); continue; }
    if (secrets.some((x) => r.url.includes(x))) problems.push(`a key or token in an address: ${u.pathname}`);
    if (r.headers['x-withdrawal-token'] && (!u.pathname.endsWith('/consent/withdraw') || r.headers.authorization)) problems.push(`withdrawal token sent elsewhere: ${r.method} ${u.pathname}`);
    if (u.origin !== ORIGIN) { problems.push(`request to another origin: ${r.url}`); continue; }
    if (!u.pathname.startsWith('/v1/')) {
      if (r.method !== 'GET' || r.body) problems.push(`static request with a body: ${r.method} ${r.url}`);
      const f = u.pathname.replace(/^\//, '');
      if (f !== '' && !dist.has(f)) problems.push(`unexpected asset ${u.pathname}`);
      continue;
    }
    api++;
    if (/\/image$/.test(u.pathname) || u.pathname.startsWith('/v1/detect')) problems.push(`image endpoint called: ${u.pathname}`);
    if (!r.body) continue;
    const ct = r.headers['content-type'] || '';
    if (!ct.startsWith('application/json')) problems.push(`${r.method} ${u.pathname}: content-type ${ct}`);
    if (r.body.length > 64 * 1024) problems.push(`${r.method} ${u.pathname}: body of ${r.body.length} bytes`);
    let json;
    try { json = JSON.parse(r.body.toString('utf8')); } catch { problems.push(`${r.method} ${u.pathname}: body is not JSON`); continue; }
    walk(json, u.pathname);
    for (const e of json.embeddings || []) {
      const keys = Object.keys(e).sort().join(',');
      if (keys !== 'model,vector' || e.vector.length !== 192 || !e.vector.every(Number.isFinite)) problems.push(`${u.pathname}: embedding is not {model, 192 numbers}`);
      vectors++;
    }
  }
  // The wasm (models inside) is downloaded once per page: the workers get the page's compiled module.
  for (let n = 1; n <= browserCount; n++) {
    const wasm = requests.filter((r) => r.browser === n && new URL(r.url).pathname.endsWith('.wasm')).length;
    if (wasm > 1) problems.push(`browser ${n} downloaded the wasm ${wasm} times`);
  }
  assert(problems.length === 0, `requests carry more than vectors:\n  ${problems.join('\n  ')}`);
  assert(api > 0 && vectors > 0, 'the check saw the API calls it guards');
  const kinds = {};
  for (const r of requests) { const u = new URL(r.url); const k = `${r.method} ${u.pathname.replace(/[0-9a-f-]{36}/g, '{id}')}`; kinds[k] = (kinds[k] || 0) + 1; }
  fs.writeFileSync(path.join(ART, 'requests.json'), JSON.stringify(kinds, null, 2));
  log(`request check: ${requests.length} requests (${api} API, ${vectors} embeddings), none with image data`, kinds);
}

// ---- benchmark ---------------------------------------------------------------------------
function sizes() {
  const out = {};
  for (const f of fs.readdirSync(DIST)) {
    const buf = fs.readFileSync(path.join(DIST, f));
    out[f] = { bytes: buf.length, gzip: zlib.gzipSync(buf, { level: 9 }).length, brotli: zlib.brotliCompressSync(buf).length };
  }
  return out;
}

const pct = (xs, p) => { const v = [...xs].sort((a, b) => a - b); return v.length ? v[Math.min(v.length - 1, Math.floor(p * v.length))] : null; };
const load = () => os.loadavg().map((x) => Math.round(x * 100) / 100);

async function bench(label, query) {
  const b = await open(path.join(WORK, 'A2.y4m'), { query });
  await waitLive(b.page, 'unknown', null, 120_000).catch((e) => log('no unknown label:', e.message));
  await b.page.waitForTimeout(3000);
  const load0 = load();
  const s0 = await stats(b.page);
  const lt0 = await b.page.evaluate(() => ({ ...window.__longtasks }));
  const t0 = Date.now();
  await b.page.waitForTimeout(20_000);
  const s1 = await stats(b.page);
  const lt1 = await b.page.evaluate(() => ({ ...window.__longtasks }));
  const secs = (Date.now() - t0) / 1000;
  const load1 = load();
  const result = {
    label, query: query || 'default', config: s1.config, load_avg_start: load0, load_avg_end: load1,
    // Overlays drawn per second (each from a distinct camera frame), and camera frames seen.
    frames: s1.frames - s0.frames, seconds: secs, fps: (s1.frames - s0.frames) / secs,
    camera_fps: (s1.video_frames - s0.video_frames) / secs, dropped: s1.dropped - s0.dropped, stale: s1.stale - s0.stale,
    frame_ms_p50: pct(s1.latencies_ms, 0.5), frame_ms_p90: pct(s1.latencies_ms, 0.9),
    capture_to_overlay_ms_p50: pct(s1.capture_to_overlay_ms, 0.5), capture_to_overlay_ms_p90: pct(s1.capture_to_overlay_ms, 0.9),
    capture_samples: s1.capture_samples,
    main_capture_ms_p50: s1.main_capture_ms_median, main_draw_ms_p50: s1.main_draw_ms_median,
    prep_ms_p50: s1.prep_ms_median, detect_ms_p50: s1.detect_ms_median, align_ms_p50: s1.align_ms_median, embed_ms_p50: s1.embed_ms_median,
    embeds: s1.embeds - s0.embeds, recognize_requests: s1.recognize_requests - s0.recognize_requests,
    long_tasks: { count: lt1.count - lt0.count, total_ms: Math.round(lt1.total_ms - lt0.total_ms), max_ms: Math.round(lt1.max_ms) },
    faces: s1.faces, sizes: sizes(),
  };
  const tag = query ? `${label}-${slug(query)}` : label;
  await b.page.locator('#view').screenshot({ path: path.join(ART, `bench-${tag}.png`) });
  await b.close();
  fs.writeFileSync(path.join(ART, `bench-${tag}.json`), JSON.stringify(result, null, 2));
  const { sizes: _, ...brief } = result;
  log('bench', JSON.stringify(brief));
}

/// The visage pipeline against onnxruntime-web on the same models in this browser
/// (bench-ort.mjs has the rows), and the ratio table: bench-ort.json, bench-ort.md.
async function benchOrt() {
  const opts = { rounds: Number(env.E2E_ORT_ROUNDS || 10), k: Number(env.E2E_ORT_K || 10), setUpRounds: Number(env.E2E_ORT_SETUP_ROUNDS || 10) };
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'visage-e2e-profile-'));
  const ctx = await chromium.launchPersistentContext(userDataDir, { executablePath: env.CHROMIUM || '/usr/bin/chromium', headless: true, args: FLAGS });
  try {
    const page = ctx.pages()[0] || await ctx.newPage();
    lastPage = page;
    page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
    await page.goto(`${ORIGIN}/bench/bench-ort.html`);
    await page.waitForFunction(() => window.benchReady === true, null, { timeout: 60_000 });
    const load_avg_start = load();
    const t0 = Date.now();
    log(`visage against onnxruntime-web: ${opts.rounds} rounds of ${opts.k} iterations per row, ${opts.setUpRounds} set-ups (plus a warm-up each)`);
    const r = await page.evaluate((o) => window.benchOrt(o), opts);
    const load_avg_end = load();
    const report = summariseOrt(r, { load_avg_start, load_avg_end, seconds: (Date.now() - t0) / 1000, dist: DIST });
    fs.writeFileSync(path.join(ART, 'bench-ort.json'), JSON.stringify({ ...report, raw: r }, null, 2));
    fs.writeFileSync(path.join(ART, 'bench-ort.md'), report.markdown);
    console.log(report.markdown);
  } finally {
    await ctx.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

/// Medians, p90 and ratios of bench-ort.mjs's samples, with the checks that both engines did
/// the work (the face found, 192-d embeddings).
function summariseOrt(r, meta) {
  const c = r.checks;
  assert(c.visage_faces.length > 0 && c.ort_faces.length > 0, `both engines find a face (visage ${c.visage_faces.length}, onnxruntime ${c.ort_faces.length})`);
  const iou = (a, b) => {
    const w = Math.max(0, Math.min(a.x + a.width, b.x + b.width) - Math.max(a.x, b.x));
    const h = Math.max(0, Math.min(a.y + a.height, b.y + b.height) - Math.max(a.y, b.y));
    return (w * h) / (a.width * a.height + b.width * b.height - w * h);
  };
  const bestIou = iou(c.visage_faces[0].bbox, c.ort_faces[0].bbox);
  assert(bestIou > 0.7, `onnxruntime finds visage's best face (IoU ${bestIou.toFixed(2)})`);
  assert(c.visage_embedding_len === 192 && c.ort_embedding_len === 192, `192-d embeddings (visage ${c.visage_embedding_len}, onnxruntime ${c.ort_embedding_len})`);
  // The minimum too: on a loaded machine it is the least disturbed run of each.
  const stat = (xs) => ({ p50: pct(xs, 0.5), p90: pct(xs, 0.9), min: Math.min(...xs), n: xs.length });
  const row = (name, v, o, extra = {}) => {
    const visage = stat(v), ort = o ? stat(o) : null;
    const ratio = (k) => (ort ? visage[k] / ort[k] : null);
    return { row: name, visage, ort, ratio_p50: ratio('p50'), ratio_p90: ratio('p90'), ratio_min: ratio('min'), ...extra };
  };
  const parts = (p) => Object.fromEntries(Object.entries(p).map(([k, xs]) => [k, stat(xs)]));
  const rows = [
    row('detection, 640x480 frame (visage: resize + YuNet 320x256 + decode + NMS; ORT: YuNet 1x3x256x320 run)', r.samples.detect.visage, r.samples.detect.ort, { ort_parts: parts(r.samples.detect.ort_parts) }),
    row('embedding job, one face (visage: 480x480 crop + YuNet refine + align + MobileFaceNet; ORT: YuNet 1x3x480x480 + MobileFaceNet 1x3x112x112 runs)', r.samples.embed.visage, r.samples.embed.ort, { ort_parts: parts(r.samples.embed.ort_parts) }),
    row('set-up, detector (visage: Detector::new + warm_up 640x480 at 320; ORT: InferenceSession.create)', r.set_up.detector.visage, r.set_up.detector.ort, { ort_parts: parts(r.set_up.detector.ort_parts) }),
    row('set-up, embedder (visage: Embedder::new; ORT: InferenceSession.create)', r.set_up.embedder.visage, r.set_up.embedder.ort, { ort_parts: parts(r.set_up.embedder.ort_parts) }),
    row('worker load, detect role (the app\'s `ready.load_ms`)', r.load.detect, null),
    row('worker load, embed role (the app\'s `ready.load_ms`; detector + embedder + the 480x480 plan)', r.load.embed, null),
  ];
  const f = (x) => (x == null ? '' : x < 10 ? x.toFixed(2) : x.toFixed(1));
  const fx = (x) => (x == null ? '' : `${x.toFixed(2)}x`);
  const md = [
    '# visage (tract, wasm) against onnxruntime-web, same models, same browser',
    '',
    `${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC; ${r.user_agent.match(/(Headless)?Chrome\/[\d.]+/)?.[0] ?? r.user_agent}; ` +
      `navigator.hardwareConcurrency ${r.hardware_concurrency}; load average (1, 5, 15 min) before ${meta.load_avg_start.join(' ')}, after ${meta.load_avg_end.join(' ')}; ` +
      `${Math.round(meta.seconds)} s.`,
    `visage: the app's build in ${path.relative(path.resolve(DIST, '../..'), meta.dist)}, in the app's module workers, one thread, SIMD128. ` +
      `onnxruntime-web ${r.ort.version ?? '1.30.0'}: wasm execution provider, numThreads 1, SIMD, graphOptimizationLevel 'all', in a module worker ` +
      `(its first session, which also starts its wasm, took ${f(r.ort.first_session_ms)} ms and is not counted).`,
    `Alternating rounds: ${r.rounds} x ${r.k} iterations per row (visage's ${r.k}, then onnxruntime's), set-ups ${r.set_up_rounds} x 1; a warm-up round of each is discarded. Milliseconds.`,
    '',
    '| row | visage p50 | p90 | min | ORT p50 | p90 | min | ratio p50 (visage/ORT) | ratio p90 | ratio min | n per side |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map((x) => `| ${x.row} | ${f(x.visage.p50)} | ${f(x.visage.p90)} | ${f(x.visage.min)} | ${f(x.ort?.p50)} | ${f(x.ort?.p90)} | ${f(x.ort?.min)} | ` +
      `${fx(x.ratio_p50)} | ${fx(x.ratio_p90)} | ${fx(x.ratio_min)} | ${x.visage.n} |`),
    '',
    `ORT parts (p50): ${rows.slice(0, 4).map((x, i) => `${['detection', 'embedding', 'detector set-up', 'embedder set-up'][i]}: ` +
      Object.entries(x.ort_parts).map(([k, v]) => `${k} ${f(v.p50)}`).join(', ')).join('; ')} ` +
      '(a set-up\'s `first_run`, the new session\'s first run, is not in the row: onnxruntime sizes its buffers then, visage\'s detector set-up builds its plan for the frame size).',
    `Checks: faces found in the frame at the video setting: visage ${c.visage_faces.length} (best ${c.visage_faces[0].score.toFixed(3)}), ` +
      `onnxruntime ${c.ort_faces.length} (best ${c.ort_faces[0].score.toFixed(3)}), best boxes IoU ${bestIou.toFixed(3)}; ` +
      `embeddings 192-d in both, cosine between them ${c.cosine_visage_ort?.toFixed(3)} (the ORT side aligned with a canvas transform).`,
    '',
    ...profileTables(r.profiles || {}, f),
  ].join('\n');
  const { samples: _s, set_up: _u, load: _l, ...about } = r;
  return { ...about, ...meta, rows, markdown: md };
}

/// The per-operator tables of the wasm plans (bench-ort.mjs's `profiles`): milliseconds per run
/// by operator, then the slowest nodes.
function profileTables(profiles, f) {
  const out = [];
  for (const [name, p] of Object.entries(profiles)) {
    const sum = p.ops.reduce((s, o) => s + o.ms, 0);
    out.push(`## Where the wasm ${name} plan spends its time (${p.runs} runs of zeros, median ${f(p.median_ms)} ms per run)`, '',
      '| operator | ms per run | share |', '|---|---:|---:|',
      ...p.ops.map((o) => `| ${o.op} | ${o.ms.toFixed(3)} | ${(100 * o.ms / sum).toFixed(1)}% |`), '',
      'Slowest nodes:', '', ...p.nodes.map((n) => `- ${n.ms.toFixed(3)} ms ${n.op}`), '');
  }
  return out;
}

// ---- main --------------------------------------------------------------------------------
let failed = false;
try {
  if (MODE === 'bench-ort') {
    await benchOrt();
  } else if (MODE === 'bench') {
    for (const c of (env.E2E_BENCH_CONFIGS || 'default').split(',')) {
      await bench(env.E2E_BENCH_LABEL || 'simd', c === 'default' ? '' : c);
    }
  } else {
    await eraseEveryone();
    await scenario('Fixture A', { enrollVideo: path.join(WORK, 'A1.y4m'), sameVideo: path.join(WORK, 'A2.y4m'), otherVideo: path.join(WORK, 'B.y4m'), viaSettings: true,
      photo: { file: path.join(WORK, 'demo', 'sample1.jpg'), faces: 3 }, paging: true });
    await withdrawal(path.join(WORK, 'B.y4m'));
    if (fs.existsSync(path.join(WORK, 'S1.y4m'))) {
      await scenario('Shared faces', { enrollVideo: path.join(WORK, 'S1.y4m'), sameVideo: path.join(WORK, 'S2.y4m'), otherVideo: path.join(WORK, 'B.y4m') });
    } else {
      log('../shared/faces not found: skipping the two-photo check');
    }
    checkRequests();
    const blocked = consoleErrors.filter((t) => /Content Security Policy/i.test(t));
    assert(blocked.length === 0, `nothing is blocked by the service's Content-Security-Policy: ${blocked.join('; ')}`);
    const leaks = consoleAll.filter((t) => secrets.some((x) => t.includes(x)));
    assert(leaks.length === 0, `no API key or withdrawal token ever appears in the console (${secrets.length} checked)`);
    log('PASS');
  }
} catch (e) {
  failed = true;
  console.error(e);
  if (lastPage && !lastPage.isClosed()) {
    await lastPage.screenshot({ path: path.join(ART, 'failure.png') }).catch(() => {});
    console.error('page text at failure:', (await lastPage.locator('body').innerText().catch(() => '')).slice(0, 1500));
  }
  if (consoleErrors.length) console.error('browser console errors:\n ', consoleErrors.slice(-20).join('\n  '));
} finally {
  if (!FROM_BACKEND) server.close();
}
process.exit(failed ? 1 : 0);
