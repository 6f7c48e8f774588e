// Helpers for serve.test.mjs: the npm dependencies, starting and stopping `nightshift serve`,
// polling a batch, and JSONL in memory. No npm imports here: this module must load before
// the dependencies are installed.
//
// Environment (all optional):
//   NIGHTSHIFT_BIN          the binary            (default: <repo>/build/nightshift)
//   NIGHTSHIFT_VOCAB_DIR    llama.cpp vocab files (default: ~/.cache/nightshift/llama-3.22.1-*/src/models)
//   NIGHTSHIFT_E2E_THREADS  --threads of each server (default: 1)
//   NIGHTSHIFT_E2E_KEEP     set: keep the temporary directory
//   NIGHTSHIFT_E2E_VERBOSE  set: copy the servers' stderr to this process's stderr
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { e2eStoreUri } from './pg_lib.mjs';

export const E2E_DIR = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(E2E_DIR, '..', '..');

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
export const SPM_VOCAB = path.join(VOCAB_DIR, 'ggml-vocab-llama-spm.gguf');
/* one CPU thread per server: llama.cpp's threads spin at barriers, which slows everything
 * down badly on a machine whose cores are busy with other tests */
export const THREADS = process.env.NIGHTSHIFT_E2E_THREADS || '1';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* ---- npm dependencies --------------------------------------------------------------- */

function runCmd(cmd, args, { cwd, timeoutMs }) {
    return new Promise((resolve, reject) => {
        const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], shell: process.platform === 'win32' });
        let out = '';
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (out += d));
        const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
        child.on('error', (e) => {
            clearTimeout(timer);
            reject(e);
        });
        child.on('close', (code, signal) => {
            clearTimeout(timer);
            resolve({ code, signal, out });
        });
    });
}

/* install tests/e2e/package.json's dependencies unless node_modules already has the pinned
 * versions (a clean clone has no node_modules) */
export async function ensureNpmDeps() {
    const pkg = JSON.parse(fs.readFileSync(path.join(E2E_DIR, 'package.json'), 'utf8'));
    const missing = Object.entries(pkg.dependencies || {}).filter(([name, version]) => {
        try {
            const p = path.join(E2E_DIR, 'node_modules', name, 'package.json');
            return JSON.parse(fs.readFileSync(p, 'utf8')).version !== version;
        } catch {
            return true;
        }
    });
    if (!missing.length) return;
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const ci = fs.existsSync(path.join(E2E_DIR, 'package-lock.json'));
    const args = [ci ? 'ci' : 'install', '--no-audit', '--no-fund', '--loglevel=error', '--prefix', E2E_DIR];
    const r = await runCmd(npm, args, { cwd: E2E_DIR, timeoutMs: 300_000 });
    if (r.code !== 0)
        throw new Error(`npm ${args.join(' ')} failed (exit ${r.code}${r.signal ? `, ${r.signal}` : ''}):\n${r.out.slice(-4000)}`);
}

/* ---- the server --------------------------------------------------------------------- */

/* start `nightshift serve ARGS --listen 127.0.0.1:0`; resolves once it prints its port.
 * Returns { port, url, child, log(), stop() }; stop() sends SIGTERM and resolves to the
 * exit {code, signal} (SIGKILL after killMs). */
export function startServer(args, { env = {}, startMs = 60_000, name = 'serve' } = {}) {
    /* never the developer's model store (~/.cache/nightshift/models) unless a test names one */
    const childEnv = { ...process.env, NIGHTSHIFT_MODELS: path.join(os.tmpdir(), 'nightshift-e2e-no-model-store') };
    delete childEnv.NIGHTSHIFT_API_KEY; /* only --api-key counts, unless a caller sets it */
    delete childEnv.NIGHTSHIFT_MODEL;
    const fullArgs = ['serve', ...args, '--listen', '127.0.0.1:0', '--threads', THREADS];
    /* the same tests on the PostgreSQL store (NIGHTSHIFT_E2E_STORE=postgres) */
    if (!args.includes('--db')) {
        let i = args.indexOf('--data-dir');
        let dataDir = i >= 0 ? args[i + 1] : null;
        let ownDb = false;
        i = args.indexOf('--config');
        if (i >= 0) {
            const ini = fs.readFileSync(args[i + 1], 'utf8');
            ownDb = /^\s*db\s*=/m.test(ini);
            dataDir = dataDir || (/^\s*data-dir\s*=\s*(.+?)\s*$/m.exec(ini) || [])[1] || null;
        }
        const uri = ownDb ? null : e2eStoreUri(dataDir);
        if (uri) fullArgs.push('--db', uri);
    }
    const child = spawn(BIN, fullArgs, { env: { ...childEnv, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    let exit = null;
    const exited = new Promise((resolve) => {
        child.on('close', (code, signal) => {
            exit = { code, signal };
            resolve(exit);
        });
    });
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d) => (stdout += d));
    const verbose = !!process.env.NIGHTSHIFT_E2E_VERBOSE;
    const log = () => `--- ${name} stderr ---\n${stderr.slice(-4000)}${stdout ? `\n--- stdout ---\n${stdout.slice(-2000)}` : ''}`;
    return new Promise((resolve, reject) => {
        let done = false;
        const timer = setTimeout(() => {
            if (done) return;
            done = true;
            child.kill('SIGKILL');
            reject(new Error(`nightshift ${fullArgs.join(' ')} did not report its port in ${startMs} ms\n${log()}`));
        }, startMs);
        child.on('error', (e) => {
            if (done) return;
            done = true;
            clearTimeout(timer);
            reject(new Error(`cannot start ${BIN}: ${e.message}`));
        });
        exited.then((x) => {
            if (done) return;
            done = true;
            clearTimeout(timer);
            reject(new Error(`nightshift ${fullArgs.join(' ')} exited early (code ${x.code}, signal ${x.signal})\n${log()}`));
        });
        child.stderr.on('data', (d) => {
            stderr += d;
            if (verbose) process.stderr.write(`[${name}] ${d}`);
            const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr);
            if (m && !done) {
                done = true;
                clearTimeout(timer);
                const port = Number(m[1]);
                resolve({
                    port,
                    url: `http://127.0.0.1:${port}`,
                    child,
                    log,
                    stderr: () => stderr,
                    async stop(killMs = 20_000) {
                        if (exit) return exit;
                        child.kill('SIGTERM');
                        const t = setTimeout(() => child.kill('SIGKILL'), killMs);
                        const x = await exited;
                        clearTimeout(t);
                        return x;
                    },
                });
            }
        });
    });
}

/* ---- polling ------------------------------------------------------------------------ */

/* poll get() until done(value); returns { value, seen: [values] }. Throws with the last
 * value after timeoutMs. */
export async function pollUntil(get, done, { timeoutMs = 90_000, intervalMs = 100, what = 'condition' } = {}) {
    const t0 = Date.now();
    const seen = [];
    for (;;) {
        const v = await get();
        seen.push(v);
        if (done(v)) return { value: v, seen };
        if (Date.now() - t0 > timeoutMs)
            throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last value:\n${JSON.stringify(v, null, 1).slice(0, 3000)}`);
        await sleep(intervalMs);
    }
}

/* ---- JSONL -------------------------------------------------------------------------- */

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

/* lines: objects (serialised) or strings (taken as they are) */
export function toJsonl(lines) {
    return lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n';
}

/* parse JSONL text: every line a JSON object, a final newline unless empty, no blank lines */
export function parseJsonl(text, what = 'JSONL') {
    if (text === '') return [];
    if (!text.endsWith('\n')) throw new Error(`${what} does not end with a newline`);
    return text
        .slice(0, -1)
        .split('\n')
        .map((l, i) => {
            try {
                return JSON.parse(l);
            } catch (e) {
                throw new Error(`${what} line ${i + 1} is not JSON: ${e.message}: ${l.slice(0, 200)}`);
            }
        });
}

/* Map custom_id -> line; throws on a repeated custom_id */
export function byCustomId(lines, what = 'lines') {
    const m = new Map();
    for (const l of lines) {
        if (m.has(l.custom_id)) throw new Error(`custom_id ${l.custom_id} appears twice in ${what}`);
        m.set(l.custom_id, l);
    }
    return m;
}

export function mkTmp(prefix = 'nightshift-serve-e2e-') {
    return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function rmTmp(dir) {
    if (dir && !process.env.NIGHTSHIFT_E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
}
