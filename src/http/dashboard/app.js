// nightshift dashboard: reads the server's own API (with the user's key, when the server has
// one) every two seconds. Views: the overview (models and backends, batches with progress
// and ETA, throughput and queue depth over the last hour) and a batch's detail page
// (counts, tokens, cost, errors grouped by code with example lines). No framework: the page
// is small and is served from the binary.
'use strict';

const $ = (sel) => document.querySelector(sel);
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
const fmt = (n, d = 0) => (n == null || Number.isNaN(n) ? '–' : Number(n).toLocaleString(undefined, { maximumFractionDigits: d }));
const TERMINAL = ['completed', 'failed', 'expired', 'cancelled'];

let key = new URLSearchParams(location.search).get('key') || sessionStorage.getItem('nightshift-key') || '';
if (key) sessionStorage.setItem('nightshift-key', key);
let charts = {};
let timer = null;

async function api(path, asText = false) {
    const r = await fetch(path, { headers: key ? { Authorization: `Bearer ${key}` } : {} });
    if (r.status === 401) {
        askKey();
        throw new Error('unauthorized');
    }
    if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
    return asText ? r.text() : r.json();
}

function askKey() {
    const dlg = $('#keydlg');
    if (dlg.open) return;
    $('#keyform').onsubmit = () => {
        key = $('#keyinput').value.trim();
        sessionStorage.setItem('nightshift-key', key);
        refresh();
    };
    dlg.showModal();
}

function duration(s) {
    if (s == null || !Number.isFinite(s)) return '–';
    s = Math.max(0, Math.round(s));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

function progress(b) {
    const rc = b.request_counts || { total: 0, completed: 0, failed: 0 };
    const done = rc.completed + rc.failed;
    const pct = rc.total ? Math.floor((100 * done) / rc.total) : b.status === 'completed' ? 100 : 0;
    const bad = rc.total ? (100 * rc.failed) / rc.total : 0;
    return { pct, done, total: rc.total, failed: rc.failed, bad };
}

function eta(b) {
    if (TERMINAL.includes(b.status) || !b.in_progress_at) return null;
    const p = progress(b);
    const elapsed = Date.now() / 1000 - b.in_progress_at;
    if (!p.done || elapsed <= 0) return null;
    return ((p.total - p.done) * elapsed) / p.done;
}

function bar(b) {
    const p = progress(b);
    return `<div class="bar" data-progress="${p.pct}"><span style="width:${p.pct}%"></span>` +
        (p.bad ? `<span class="bad" style="width:${p.bad.toFixed(1)}%;right:0"></span>` : '') +
        `<em>${p.pct}% · ${fmt(p.done)}/${fmt(p.total)}</em></div>`;
}

function cost(b) {
    const c = b.nightshift?.cost_usd;
    return c == null ? '–' : `$${c.toFixed(c < 1 ? 4 : 2)}`;
}

// where the lines ran (spill-over and fail-over: nightshift.backends), one line per backend
function backends(b) {
    const bk = b.nightshift?.backends;
    if (!bk || !Object.keys(bk).length) return '–';
    return Object.entries(bk).map(([name, r]) =>
        `<div data-backend="${esc(name)}"><code>${esc(name)}</code>: ${fmt(r.lines)} ran` +
        (r.pending || r.running ? `, ${fmt(r.pending + r.running)} waiting` : '') +
        (r.cost_usd != null ? `, $${r.cost_usd.toFixed(r.cost_usd < 1 ? 4 : 2)}` : '') + '</div>').join('');
}

function renderCharts(stats) {
    const s = stats.series;
    const t = s.t;
    const defs = [
        ['tput', 'Throughput (last hour)', [{ label: 'tokens/s', stroke: '#3b5bdb' }, { label: 'lines/s', stroke: '#2b8a3e' }], [s.tokens_per_s, s.lines_per_s]],
        ['queue', 'Queue depth (last hour)', [{ label: 'batch lines waiting', stroke: '#e67700' }, { label: 'real-time waiting', stroke: '#c92a2a' }], [s.batch_pending, s.interactive_waiting]],
    ];
    for (const [id, title, series, data] of defs) {
        const el = document.getElementById(`chart-${id}`);
        if (!el) continue;
        const width = Math.max(300, el.clientWidth - 16);
        if (!charts[id] || charts[id].root.parentNode !== el) {
            el.innerHTML = '';
            charts[id] = new uPlot({ title, width, height: 200, series: [{}, ...series], axes: [{}, { size: 60 }] }, [t, ...data], el);
        } else {
            charts[id].setData([t, ...data]);
        }
    }
}

async function overview() {
    const [stats, list] = await Promise.all([api('/v1/nightshift/stats'), api('/v1/batches?limit=100')]);
    const models = stats.models.map((m) => `
      <div class="card" data-model="${esc(m.name)}">
        <h3>${esc(m.name)} <span class="muted">· ${esc(m.backend)}</span></h3>
        <div class="kv">
          <span>real-time waiting</span><span>${fmt(m.interactive_waiting)}</span>
          <span>active batches</span><span>${fmt(m.active_batches)}</span>
          <span>lines done</span><span>${fmt(m.batch_lines_done)} (${fmt(m.batch_lines_failed)} failed)</span>
          <span>real-time done</span><span>${fmt(m.interactive_done)} (${fmt(m.interactive_failed)} failed)</span>
          <span>tokens in / out</span><span>${fmt(m.prompt_tokens)} / ${fmt(m.completion_tokens)}</span>
          ${m.engine ? `<span>engine</span><span>${fmt(m.engine.sequences_per_step, 1)} seq/step, ${fmt(m.engine.steps)} steps</span>` : ''}
          ${m.interactive_done ? `<span>real-time latency</span><span>TTFT p99 ≤ ${fmt(m.ttft_p99 * 1000)} ms, between tokens p99 ≤ ${fmt(m.itl_p99 * 1000)} ms</span>` : ''}
          ${m.engine && m.engine.steps_interactive ? `<span>latency budget</span><span>${fmt(100 * m.engine.steps_budget_kept / m.engine.steps_interactive, 0)}% of ${fmt(m.engine.steps_interactive)} steps kept it</span>` : ''}
          ${m.upstream ? `<span>upstream</span><span>circuit ${esc(m.upstream.circuit)}, ${fmt(m.upstream.inflight)} in flight, ${fmt(m.upstream.retries)} retries, ${fmt(m.upstream.failures)} failed</span>` : ''}
          ${m.cost_usd != null ? `<span>cost</span><span>$${m.cost_usd.toFixed(4)}</span>` : ''}
        </div>
      </div>`).join('');
    const rows = list.data.map((b) => `
      <tr data-batch-id="${esc(b.id)}" data-status="${esc(b.status)}">
        <td><a href="#/batch/${esc(b.id)}">${esc(b.id)}</a></td>
        <td>${esc(b.model ?? '–')}</td>
        <td class="st-${esc(b.status)}">${esc(b.status)}</td>
        <td>${bar(b)}</td>
        <td>${duration(eta(b))}</td>
        <td>${fmt(b.usage?.input_tokens)} / ${fmt(b.usage?.output_tokens)}</td>
        <td>${cost(b)}</td>
        <td class="muted">${new Date(b.created_at * 1000).toLocaleString()}</td>
      </tr>`).join('');
    $('#app').innerHTML = `
      <h2>Models and backends</h2><div class="cards">${models}</div>
      <h2>Activity</h2><div class="charts"><div class="chart" id="chart-tput"></div><div class="chart" id="chart-queue"></div></div>
      <h2>Batches</h2>
      <table id="batches"><thead><tr><th>batch</th><th>model</th><th>status</th><th>progress</th><th>ETA</th><th>tokens in / out</th><th>cost</th><th>created</th></tr></thead>
      <tbody>${rows || '<tr><td colspan="8" class="muted">no batches yet</td></tr>'}</tbody></table>`;
    charts = {};
    renderCharts(stats);
    $('#status').textContent = `${stats.models.length} model(s) · updated ${new Date().toLocaleTimeString()}`;
}

function errorCode(line) {
    const body = line.response?.body;
    return body?.error?.code || body?.error?.type || line.error?.code || `HTTP ${line.response?.status_code ?? '?'}`;
}

function errorMessage(line) {
    return line.response?.body?.error?.message || line.error?.message || JSON.stringify(line).slice(0, 200);
}

async function detail(id) {
    const [b, errText] = await Promise.all([api(`/v1/batches/${encodeURIComponent(id)}`), api(`/v1/batches/${encodeURIComponent(id)}/errors`, true)]);
    const groups = new Map();
    for (const l of errText.split('\n').filter(Boolean).map((x) => JSON.parse(x))) {
        const c = errorCode(l);
        if (!groups.has(c)) groups.set(c, []);
        groups.get(c).push(l);
    }
    const errs = [...groups.entries()].sort((a, b2) => b2[1].length - a[1].length).map(([c, ls]) => `
      <tr data-error-code="${esc(c)}"><td><code>${esc(c)}</code></td><td>${fmt(ls.length)}</td>
      <td>${ls.slice(0, 3).map((l) => `<div><code>${esc(l.custom_id)}</code>: ${esc(errorMessage(l))}</div>`).join('')}</td></tr>`).join('');
    const p = progress(b);
    $('#app').innerHTML = `
      <p><a href="#/">← all batches</a></p>
      <h2 id="batch-title">${esc(b.id)} <span class="st-${esc(b.status)}">${esc(b.status)}</span></h2>
      <div class="cards"><div class="card"><div class="kv">
        <span>model</span><span>${esc(b.model ?? '–')}</span>
        <span>endpoint</span><span>${esc(b.endpoint)}</span>
        <span>progress</span><span>${bar(b)}</span>
        <span>ETA</span><span>${duration(eta(b))}</span>
        <span>requests</span><span>${fmt(p.total)} total, ${fmt(b.request_counts.completed)} ok, ${fmt(p.failed)} failed</span>
        <span>tokens</span><span>${fmt(b.usage?.input_tokens)} in (${fmt(b.usage?.input_tokens_details?.cached_tokens)} cached), ${fmt(b.usage?.output_tokens)} out</span>
        <span>prompt computed</span><span>${fmt(b.nightshift?.prompt_tokens_computed)}</span>
        <span>cost</span><span>${cost(b)}</span>
        <span>backends</span><span id="backends">${backends(b)}</span>
        <span>created</span><span>${new Date(b.created_at * 1000).toLocaleString()}</span>
        <span>files</span><span>in <code>${esc(b.input_file_id)}</code>${b.output_file_id ? `, out <code>${esc(b.output_file_id)}</code>` : ''}${b.error_file_id ? `, errors <code>${esc(b.error_file_id)}</code>` : ''}</span>
      </div></div></div>
      <h2>Errors by code</h2>
      <table id="errors"><thead><tr><th>code</th><th>lines</th><th>examples</th></tr></thead>
      <tbody>${errs || '<tr><td colspan="3" class="muted">no errors</td></tr>'}</tbody></table>`;
    $('#status').textContent = `updated ${new Date().toLocaleTimeString()}`;
}

async function refresh() {
    clearTimeout(timer);
    try {
        const m = /^#\/batch\/(.+)$/.exec(location.hash);
        await (m ? detail(decodeURIComponent(m[1])) : overview());
    } catch (e) {
        if (e.message !== 'unauthorized') $('#status').innerHTML = `<span class="err">${esc(e.message)}</span>`;
    }
    timer = setTimeout(refresh, 2000);
}

window.addEventListener('hashchange', refresh);
refresh();
