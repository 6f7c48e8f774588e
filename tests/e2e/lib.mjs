// Helpers for the end-to-end tests of the nightshift binary (node:test, no dependencies).
//
// Environment (all optional):
//   NIGHTSHIFT_BIN            the binary            (default: <repo>/build/nightshift)
//   NIGHTSHIFT_VOCAB_DIR      llama.cpp vocab files (default: ~/.cache/nightshift/llama-3.22.1-*/src/models)
//   NIGHTSHIFT_SHARED_MODELS  small real models     (default: <repo>/../shared/models)
//   NIGHTSHIFT_E2E_THREADS    --threads for each run (default: 1; see THREADS)
//   NIGHTSHIFT_E2E_KEEP       set: keep the temporary directory
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

function envPath(name, fallback) {
    const v = process.env[name];
    return v ? path.resolve(v) : fallback;
}

function defaultVocabDir() {
    const cache = path.join(os.homedir(), '.cache', 'nightshift');
    let dirs = [];
    try {
        dirs = fs.readdirSync(cache).filter((d) => d.startsWith('llama-3.22.1-')).sort();
    } catch {
        /* no cache: the check in before() reports it */
    }
    return dirs.length ? path.join(cache, dirs[0], 'src', 'models') : path.join(cache, 'llama-3.22.1-*', 'src', 'models');
}

export const BIN = envPath('NIGHTSHIFT_BIN', path.join(REPO_ROOT, 'build', 'nightshift'));
export const VOCAB_DIR = envPath('NIGHTSHIFT_VOCAB_DIR', defaultVocabDir());
export const SHARED_MODELS = envPath('NIGHTSHIFT_SHARED_MODELS', path.resolve(REPO_ROOT, '..', 'shared', 'models'));
export const SPM_VOCAB = path.join(VOCAB_DIR, 'ggml-vocab-llama-spm.gguf');

/* CPU threads for `nightshift run` unless a test passes --threads itself. One by default:
 * llama.cpp's worker threads spin at barriers, so with every core in use (the default) a
 * run slows down 20x or more as soon as anything else wants a core (a parallel ctest, a
 * build); the tiny test model gains nothing from a second thread anyway. */
export const THREADS = process.env.NIGHTSHIFT_E2E_THREADS || '1';

/* a model store directory that does not exist: servers list no pulled models */
export const NO_MODEL_STORE = path.join(os.tmpdir(), 'nightshift-e2e-no-model-store');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* Start the binary; stdout/stderr are collected. Returns
 * { child, out: {stdout, stderr}, exited: () => bool, done: Promise<{code, signal, stdout, stderr, ms}> }.
 * The process is killed (SIGKILL) after timeoutMs so that a hang fails the test instead of blocking it. */
export function spawnNs(args, { timeoutMs = 120_000, env = {}, cwd, bin = BIN } = {}) {
    if (args[0] === 'run' && !args.some((a) => a === '--threads' || a === '-t' || a.startsWith('--threads=')))
        args = [...args, '--threads', THREADS];
    const t0 = performance.now();
    /* never the developer's model store (~/.cache/nightshift/models): a test that wants one
     * sets NIGHTSHIFT_MODELS */
    const childEnv = { ...process.env, NIGHTSHIFT_MODELS: NO_MODEL_STORE };
    delete childEnv.NIGHTSHIFT_MODEL; /* only --model counts, unless a test sets it */
    const child = spawn(bin, args, {
        cwd,
        env: { ...childEnv, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out = { stdout: '', stderr: '' };
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d) => (out.stdout += d));
    child.stderr.on('data', (d) => (out.stderr += d));
    let exited = false;
    let timedOut = false;
    const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
    }, timeoutMs);
    const done = new Promise((resolve, reject) => {
        child.on('error', (e) => {
            clearTimeout(timer);
            reject(e);
        });
        child.on('close', (code, signal) => {
            exited = true;
            clearTimeout(timer);
            if (timedOut)
                reject(new Error(`nightshift ${args.join(' ')} did not finish in ${timeoutMs} ms\nstderr:\n${out.stderr}`));
            else resolve({ code, signal, stdout: out.stdout, stderr: out.stderr, ms: performance.now() - t0 });
        });
    });
    return { child, out, exited: () => exited, done };
}

export function runNs(args, opts) {
    return spawnNs(args, opts).done;
}

/* a readable description of a finished run, for assertion messages */
export function describeRun(r) {
    return `exit ${r.code}${r.signal ? ` (signal ${r.signal})` : ''} after ${Math.round(r.ms)} ms\n` +
        `--- stdout ---\n${r.stdout.slice(-3000)}\n--- stderr ---\n${r.stderr.slice(-3000)}`;
}

export function mkTmp(prefix = 'nightshift-e2e-') {
    return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function rmTmp(dir) {
    if (dir && !process.env.NIGHTSHIFT_E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
}

export function fileSize(p) {
    try {
        return fs.statSync(p).size;
    } catch {
        return -1;
    }
}

/* ---- batch lines -------------------------------------------------------------------- */

export function chatLine(customId, content, body = {}, model = 'tiny') {
    return {
        custom_id: customId,
        method: 'POST',
        url: '/v1/chat/completions',
        body: { model, messages: [{ role: 'user', content }], ...body },
    };
}

export function completionLine(customId, prompt, body = {}, model = 'tiny') {
    return { custom_id: customId, method: 'POST', url: '/v1/completions', body: { model, prompt, ...body } };
}

/* lines: objects (serialised) or strings (written as they are) */
export function writeJsonl(file, lines) {
    fs.writeFileSync(file, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n');
}

/* parse a JSONL output file: every line must be a JSON object, the file must end with a
 * newline when not empty, and there must be no blank lines */
export function readJsonl(file) {
    const text = fs.readFileSync(file, 'utf8');
    if (text === '') return [];
    if (!text.endsWith('\n')) throw new Error(`${file} does not end with a newline`);
    return text
        .slice(0, -1)
        .split('\n')
        .map((l, i) => {
            try {
                return JSON.parse(l);
            } catch (e) {
                throw new Error(`${file} line ${i + 1} is not JSON: ${e.message}: ${l.slice(0, 200)}`);
            }
        });
}

export function readJson(file) {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/* the validation lines printed on stderr: [{line, code, message}] */
export function stderrValidationErrors(stderr) {
    const out = [];
    for (const l of stderr.split('\n')) {
        const m = /^ {2}line (\d+) \[([a-z_]+)\]: (.*)$/.exec(l);
        if (m) out.push({ line: Number(m[1]), code: m[2], message: m[3] });
    }
    return out;
}

/* an output line without the fields that differ from run to run (ids, timestamps) */
export function normalizeLine(line) {
    const c = structuredClone(line);
    delete c.id;
    if (c.response) {
        delete c.response.request_id;
        if (c.response.body) {
            delete c.response.body.id;
            delete c.response.body.created;
        }
    }
    return c;
}

/* the generated text of a success line (chat or completion) */
export function choiceText(line) {
    const ch = line.response.body.choices[0];
    return ch.message ? ch.message.content : ch.text;
}

export function byCustomId(lines) {
    const m = new Map();
    for (const l of lines) {
        if (m.has(l.custom_id)) throw new Error(`custom_id ${l.custom_id} appears twice`);
        m.set(l.custom_id, l);
    }
    return m;
}

/* Start `nightshift serve` on a free loopback port with the given extra arguments.
 * Resolves { child, url, stderr() } once it listens. */
export function startServer(args, { timeoutMs = 60_000, env = {}, wrap = [], bin = BIN } = {}) {
    return new Promise((resolve, reject) => {
        /* wrap: a command that execs the server, e.g. ['prlimit', '--nofile=256:256'] */
        const argv = [...wrap, bin, 'serve', '--listen', '127.0.0.1:0', ...args];
        const child = spawn(argv[0], argv.slice(1), {
            stdio: ['ignore', 'ignore', 'pipe'],
            env: { ...process.env, NIGHTSHIFT_MODELS: NO_MODEL_STORE, ...env },
        });
        let err = '';
        const timer = setTimeout(() => reject(new Error(`server did not start: ${err}`)), timeoutMs);
        child.stderr.on('data', (d) => {
            err += d;
            const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(err);
            if (m) {
                clearTimeout(timer);
                resolve({ child, url: `http://127.0.0.1:${m[1]}`, stderr: () => err });
            }
        });
        child.on('exit', (code) => {
            clearTimeout(timer);
            reject(new Error(`server exited with ${code}: ${err}`));
        });
    });
}

/* SIGKILL a server started by startServer and wait for it to be gone */
export async function killHard(s) {
    if (!s || s.child.exitCode !== null || s.child.signalCode !== null) return;
    const gone = new Promise((r) => s.child.once('exit', r));
    s.child.kill('SIGKILL');
    await gone;
}

/* one HTTP call; returns { status, text, headers, json() } */
export async function api(s, method, p, body, headers = {}) {
    const res = await fetch(s.url + p, { method, body, headers });
    const text = await res.text();
    return { status: res.status, text, headers: res.headers, json: () => JSON.parse(text) };
}

/* upload JSONL lines as a batch input file and create a batch; returns the batch object */
export async function submitBatch(s, lines, { window = '24h', metadata, endpoint = '/v1/chat/completions' } = {}) {
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n']), 'in.jsonl');
    const up = await api(s, 'POST', '/v1/files', form);
    if (up.status !== 200) throw new Error(`upload failed: ${up.text}`);
    const body = { input_file_id: up.json().id, endpoint, completion_window: window };
    if (metadata) body.metadata = metadata;
    const cr = await api(s, 'POST', '/v1/batches', JSON.stringify(body), { 'content-type': 'application/json' });
    if (cr.status !== 200) throw new Error(`create failed: ${cr.text}`);
    return cr.json();
}

/* poll a batch until pred(batch) or the timeout */
export async function waitBatch(s, id, pred, timeoutMs = 120_000) {
    const t0 = Date.now();
    for (;;) {
        const b = (await api(s, 'GET', `/v1/batches/${id}`)).json();
        if (pred(b)) return b;
        if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for batch: ${JSON.stringify(b)}`);
        await sleep(100);
    }
}

export const TERMINAL = ['completed', 'failed', 'expired', 'cancelled'];
