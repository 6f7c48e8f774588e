// The dashboard (issue 7), end to end in a real browser: headless Chromium from Debian
// (`chromium`, installed by scripts/bootstrap.sh) driven by playwright-core (npm, pinned in
// package.json), against a real `nightshift serve` with an API key.
//
//   node --test tests/e2e/dashboard.test.mjs
//
// Checked: the page asks for the key and then shows the models and the charts; a batch
// submitted during the test appears and reaches 100%; its detail page groups its errors by
// code with example lines and shows tokens and cost; the files are served without the key but
// the data is not. A screenshot of each view is saved in build/test-artifacts/ (or
// NIGHTSHIFT_ARTIFACTS).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { runNs } from './lib.mjs';
import { BIN, REPO_ROOT, SPM_VOCAB, ensureNpmDeps, mkTmp, rmTmp, startServer } from './serve_lib.mjs';

const KEY = 'sk-dashboard-e2e';
const CHROMIUM = process.env.NIGHTSHIFT_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.NIGHTSHIFT_ARTIFACTS || path.join(path.dirname(BIN), 'test-artifacts');
let TMP;
let NS;
let browser;
let page;

const auth = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' };

async function submit(lines) {
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([lines.map((l) => JSON.stringify(l)).join('\n') + '\n']), 'in.jsonl');
    const up = await (await fetch(`${NS.url}/v1/files`, { method: 'POST', body: form, headers: { authorization: `Bearer ${KEY}` } })).json();
    const r = await fetch(`${NS.url}/v1/batches`, { method: 'POST', headers: auth,
        body: JSON.stringify({ input_file_id: up.id, endpoint: '/v1/chat/completions', completion_window: '24h' }) });
    return (await r.json()).id;
}

before(async () => {
    assert.ok(fs.existsSync(CHROMIUM), `Chromium is missing: ${CHROMIUM} (scripts/bootstrap.sh installs Debian's chromium)`);
    await ensureNpmDeps();
    const { chromium } = await import('playwright-core');
    TMP = mkTmp('nightshift-dashboard-e2e-');
    const model = path.join(TMP, 'tiny.gguf');
    const g = await runNs(['gen-model', '--vocab', SPM_VOCAB, '-o', model, '--seed', '9'], { timeoutMs: 60_000 });
    assert.equal(g.code, 0, g.stderr);
    const ini = path.join(TMP, 'ns.ini');
    fs.writeFileSync(ini, `[server]\nparallel = 4\nctx = 4096\n\n[model tiny]\nbackend = local\npath = ${model}\nprice_input = 0.5\nprice_output = 1.5\n`);
    NS = await startServer(['--config', ini, '--data-dir', path.join(TMP, 'data'), '--api-key', KEY], { name: 'dash' });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    fs.mkdirSync(ARTIFACTS, { recursive: true });
});

after(async () => {
    if (browser) await browser.close();
    if (NS) await NS.stop();
    rmTmp(TMP);
});

test('the files are public, the data is not', async () => {
    const html = await fetch(`${NS.url}/`, { headers: { accept: 'text/html' } });
    assert.equal(html.status, 200);
    assert.match(html.headers.get('content-type'), /text\/html/);
    assert.match(await html.text(), /<title>nightshift<\/title>/);
    for (const f of ['app.js', 'app.css', 'uPlot.min.js', 'uPlot.min.css']) {
        const r = await fetch(`${NS.url}/dashboard/${f}`);
        assert.equal(r.status, 200, f);
    }
    assert.equal((await fetch(`${NS.url}/dashboard/nope.js`)).status, 404);
    assert.equal((await fetch(`${NS.url}/v1/nightshift/stats`)).status, 401);
    const st = await fetch(`${NS.url}/v1/nightshift/stats`, { headers: auth });
    assert.equal(st.status, 200);
    const j = await st.json();
    assert.equal(j.models[0].name, 'tiny');
    assert.equal(j.models[0].backend, 'local');
    assert.ok(Array.isArray(j.series.t) && j.series.t.length >= 1, 'the sampler took a sample at start');
    /* Ollama tools probing the root still get their answer */
    assert.equal(await (await fetch(`${NS.url}/`)).text(), 'Ollama is running');
});

test('a batch submitted while the page is open shows up and reaches 100%', async () => {
    await page.goto(`${NS.url}/`);
    await page.waitForSelector('#keydlg[open]', { timeout: 15_000 });
    await page.fill('#keyinput', KEY);
    await page.click('#keyform button');
    await page.waitForSelector('[data-model="tiny"]', { timeout: 15_000 });
    await page.waitForSelector('#chart-tput .uplot', { timeout: 15_000 });
    const lines = Array.from({ length: 40 }, (_, i) => ({ custom_id: `d-${i}`, method: 'POST', url: '/v1/chat/completions',
        body: { model: 'tiny', messages: [{ role: 'user', content: `row ${i}` }], max_tokens: i % 10 === 3 ? 100000 : 8 } }));
    const id = await submit(lines);
    await page.waitForSelector(`tr[data-batch-id="${id}"]`, { timeout: 30_000 });
    await page.waitForSelector(`tr[data-batch-id="${id}"][data-status="completed"] .bar[data-progress="100"]`, { timeout: 120_000 });
    const cost = await page.textContent(`tr[data-batch-id="${id}"] td:nth-child(7)`);
    assert.match(cost, /^\$\d/, `cost shown: ${cost}`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-overview.png'), fullPage: true });

    await page.click(`tr[data-batch-id="${id}"] a`);
    await page.waitForSelector('#batch-title', { timeout: 15_000 });
    await page.waitForSelector('tr[data-error-code="context_length_exceeded"]', { timeout: 15_000 });
    const count = await page.textContent('tr[data-error-code="context_length_exceeded"] td:nth-child(2)');
    assert.equal(count.trim(), '4', 'four lines asked for too many tokens');
    const row = await page.textContent('tr[data-error-code="context_length_exceeded"]');
    assert.match(row, /d-3: This model's maximum context length/, 'with example lines');
    const kv = await page.textContent('.kv');
    assert.match(kv, /36 ok, 4 failed/);
    assert.match(kv, /cost\$\d/);
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-batch.png'), fullPage: true });
    assert.ok(fs.statSync(path.join(ARTIFACTS, 'dashboard-batch.png')).size > 10_000);
});
