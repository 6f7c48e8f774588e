// nightshift as a service: `make install` (file list, config never overwritten), the systemd
// units (systemd-analyze verify; the server unit's command line run by hand with its
// environment), the man page against every --help, --version, graceful shutdown (SIGTERM
// during a batch and during a streaming request), SIGHUP, the data dir lock, `doctor`,
// `backup`/`restore`, and the refusal of a store written by a newer nightshift.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { BIN, SPM_VOCAB, REPO_ROOT, THREADS, sleep, startServer, mkTmp, rmTmp } from './serve_lib.mjs';
import { api, submitBatch, waitBatch, killHard, runNs, describeRun, TERMINAL } from './lib.mjs';

let dir, model;
const servers = [];

/* a server on dataDir (serve_lib adds --listen 127.0.0.1:0 --threads) */
async function serve(dataDir, extra = []) {
    const s = await startServer(['--model', `tiny=${model}`, '--data-dir', dataDir, '--parallel', '4', ...extra]);
    servers.push(s);
    return s;
}

const chat = (i, maxTokens = 24) => ({
    custom_id: `c-${i}`, method: 'POST', url: '/v1/chat/completions',
    body: { model: 'tiny', messages: [{ role: 'user', content: `request ${i}` }], max_tokens: maxTokens, ignore_eos: true },
});

/* custom_id -> times seen, across a batch's output and error files */
async function idCounts(s, b) {
    const seen = new Map();
    for (const fid of [b.output_file_id, b.error_file_id]) {
        if (!fid) continue;
        const r = await api(s, 'GET', `/v1/files/${fid}/content`);
        assert.equal(r.status, 200, r.text);
        for (const l of r.text.split('\n').filter(Boolean)) {
            const id = JSON.parse(l).custom_id;
            seen.set(id, (seen.get(id) || 0) + 1);
        }
    }
    return seen;
}

function assertEachOnce(seen, n, what) {
    assert.equal(seen.size, n, `${what}: ${seen.size} of ${n} custom_ids`);
    for (const [id, k] of seen) assert.equal(k, 1, `${what}: ${id} appears ${k} times`);
}

/* wait for a child to exit; { code, signal } */
function exited(child, timeoutMs = 60_000) {
    if (child.exitCode !== null || child.signalCode !== null)
        return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
    return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`process ${child.pid} did not exit in ${timeoutMs} ms`)), timeoutMs);
        child.once('exit', (code, signal) => {
            clearTimeout(t);
            resolve({ code, signal });
        });
    });
}

const sqlite = (db, sql) => execFileSync('sqlite3', [db, sql]).toString().trim();

before(() => {
    dir = mkTmp('ns-service-');
    model = path.join(dir, 'tiny.gguf');
    execFileSync(BIN, ['gen-model', '--vocab', SPM_VOCAB, '-o', model]);
});

after(async () => {
    for (const s of servers) await killHard(s);
    rmTmp(dir);
});

/* ---- --version and the man page ----------------------------------------------------- */

test('--version and version print nightshift and llama.cpp versions', async () => {
    for (const arg of ['--version', 'version']) {
        const r = await runNs([arg]);
        assert.equal(r.code, 0, describeRun(r));
        assert.match(r.stdout, /^nightshift \d+\.\d+\.\d+ \(llama\.cpp [^,)]+(, commit [0-9a-f]{7,})?\)\n$/, r.stdout);
    }
});

/* issue 31.9: every command (and each keys sub-command) answers --help and -h with its usage
 * on stdout, nothing on stderr, exit 0 */
test('--help and -h: every command and sub-command prints its usage and exits 0', async () => {
    const top = await runNs(['--help']);
    assert.equal(top.code, 0, describeRun(top));
    const commands = [...top.stdout.matchAll(/^ {2}([a-z-]+) /gm)].map((m) => m[1]);
    assert.ok(commands.includes('keys') && commands.includes('version') && commands.length >= 13, top.stdout);
    const lines = [...commands.map((c) => [c]), ...['create', 'list', 'revoke', 'rotate'].map((k) => ['keys', k])];
    for (const cmd of lines) {
        for (const h of ['--help', '-h']) {
            const r = await runNs([...cmd, h], { env: { NIGHTSHIFT_SERVER: 'http://127.0.0.1:9' } });
            const what = `nightshift ${cmd.join(' ')} ${h}: ${describeRun(r)}`;
            assert.equal(r.code, 0, what);
            assert.match(r.stdout, /^usage: nightshift /, what);
            assert.equal(r.stderr, '', what);
        }
    }
    const v = await runNs(['version', 'extra']);
    assert.equal(v.code, 2, describeRun(v));
    assert.match(v.stderr, /version: unexpected argument 'extra'/);
});

const COMMANDS = ['run', 'serve', 'submit', 'batches', 'status', 'results', 'cancel', 'doctor', 'backup', 'restore', 'gen-model'];
const CLIENT = ['submit', 'batches', 'status', 'results', 'cancel'];
const longOptions = (text) => new Set([...text.matchAll(/(?<![\w-])--([a-z][a-z0-9-]*)/g)].map((m) => m[1]));

/* the man page as { section title: text }, roff comments dropped, \- read as - */
function manSections() {
    const text = fs.readFileSync(path.join(REPO_ROOT, 'docs', 'nightshift.1'), 'utf8');
    const sections = {};
    let cur = '';
    for (const raw of text.split('\n')) {
        if (raw.startsWith('.\\"')) continue;
        const line = raw.replace(/\\-/g, '-').replace(/\\&/g, '');
        const h = /^\.S[SH] "?(.*?)"?$/.exec(line);
        if (h) {
            cur = h[1];
            sections[cur] = '';
            continue;
        }
        sections[cur] = (sections[cur] || '') + line + '\n';
    }
    return sections;
}

/* does `nightshift cmd` accept --opt? (getopt says "unrecognized option" otherwise; the
 * probe value makes every command stop early on a missing argument or file) */
function accepts(cmd, opt, cwd) {
    const env = { ...process.env, NIGHTSHIFT_SERVER: 'http://127.0.0.1:9' };
    delete env.NIGHTSHIFT_MODEL;
    const r = spawnSync(BIN, [cmd, `--${opt}=__probe__`], { cwd, env, encoding: 'utf8', timeout: 60_000 });
    return !/unrecognized option/.test(r.stderr);
}

test('man page: every --help option is documented, every documented option exists', () => {
    const sections = manSections();
    const titles = Object.keys(sections);
    const common = sections[titles.find((t) => t.startsWith('Options of every client command'))];
    assert.ok(common, 'the man page has a section of the client commands\' common options');
    const cwd = fs.mkdtempSync(path.join(dir, 'probe-'));
    const documented = new Set(['version', 'help']);
    for (const cmd of COMMANDS) {
        const title = titles.find((t) => t === `nightshift ${cmd}` || t.startsWith(`nightshift ${cmd} `));
        assert.ok(title, `no section 'nightshift ${cmd}' in docs/nightshift.1`);
        const help = execFileSync(BIN, [cmd, '--help']).toString();
        const man = sections[title] + (CLIENT.includes(cmd) ? common : '');
        const inMan = longOptions(man);
        for (const o of longOptions(help)) {
            if (o === 'help') continue;
            assert.ok(inMan.has(o), `--${o} of 'nightshift ${cmd} --help' is not in its man page section`);
        }
        const inHelp = longOptions(help);
        for (const o of inMan) {
            // exactly as --help names it (getopt would also take an abbreviation), and accepted
            assert.ok(inHelp.has(o), `the man page names --${o} for 'nightshift ${cmd}', which its --help does not`);
            assert.ok(accepts(cmd, o, cwd), `the man page names --${o} for 'nightshift ${cmd}', which does not accept it`);
            documented.add(o);
        }
    }
    // elsewhere (SIGNALS, FILES, ...): only options documented above; example command lines
    // of nightshift are checked against their command
    for (const [title, text] of Object.entries(sections)) {
        if (title.startsWith('nightshift ') || title.startsWith('Options of every')) continue;
        for (const line of text.split('\n')) {
            const cmd = [...line.matchAll(/\bnightshift ([a-z-]+)/g)].map((m) => m[1]).find((c) => COMMANDS.includes(c));
            if (cmd) {
                for (const o of longOptions(line))
                    assert.ok(documented.has(o) && accepts(cmd, o, cwd), `man page example: 'nightshift ${cmd}' does not accept --${o}`);
            } else if (title !== 'EXAMPLES') {
                for (const o of longOptions(line)) assert.ok(documented.has(o), `man page ${title}: --${o} is no option`);
            }
        }
    }
});

/* ---- make install and the systemd units --------------------------------------------- */

function listTree(root) {
    const out = [];
    const walk = (d) => {
        for (const e of fs.readdirSync(d, { withFileTypes: true })) {
            const p = path.join(d, e.name);
            if (e.isDirectory()) walk(p);
            else out.push('/' + path.relative(root, p));
        }
    };
    walk(root);
    return out.sort();
}

function makeInstall(vars, target = 'install') {
    const args = ['-s', '-C', REPO_ROOT, target, `BIN=${BIN}`, ...Object.entries(vars).map(([k, v]) => `${k}=${v}`)];
    const r = spawnSync('make', args, { encoding: 'utf8' });
    assert.equal(r.status, 0, `make ${args.join(' ')}:\n${r.stdout}${r.stderr}`);
    return r;
}

test('make install DESTDIR PREFIX=/usr: the file list; the config is never overwritten', () => {
    const dest = path.join(dir, 'destdir');
    makeInstall({ DESTDIR: dest, PREFIX: '/usr' });
    assert.deepEqual(listTree(dest), [
        '/etc/nightshift/nightshift.ini',
        '/etc/nightshift/nightshift.ini.default',
        '/usr/bin/nightshift',
        '/usr/lib/systemd/system/nightshift-nightly.service',
        '/usr/lib/systemd/system/nightshift-nightly.timer',
        '/usr/lib/systemd/system/nightshift.service',
        '/usr/lib/sysusers.d/nightshift.conf',
        '/usr/share/man/man1/nightshift.1',
    ]);
    assert.equal(fs.statSync(path.join(dest, 'usr/bin/nightshift')).mode & 0o777, 0o755);
    const pristine = fs.readFileSync(path.join(REPO_ROOT, 'dist', 'nightshift.ini'), 'utf8');
    const conf = path.join(dest, 'etc/nightshift/nightshift.ini');
    assert.equal(fs.readFileSync(conf, 'utf8'), pristine);
    assert.equal(fs.readFileSync(conf + '.default', 'utf8'), pristine);
    const unit = fs.readFileSync(path.join(dest, 'usr/lib/systemd/system/nightshift.service'), 'utf8');
    assert.match(unit, /^ExecStart=\/usr\/bin\/nightshift serve --config \/etc\/nightshift\/nightshift\.ini$/m);
    assert.doesNotMatch(unit + fs.readFileSync(path.join(dest, 'usr/lib/systemd/system/nightshift-nightly.service')), /@[A-Z]+@/);

    // an upgrade: the operator's config stays, the .default is this release's
    fs.writeFileSync(conf, '# mine\n[server]\nlisten = 0.0.0.0:9000\n');
    fs.writeFileSync(conf + '.default', 'stale\n');
    const r = makeInstall({ DESTDIR: dest, PREFIX: '/usr' });
    assert.match(r.stderr, /kept .*nightshift\.ini/);
    assert.equal(fs.readFileSync(conf, 'utf8'), '# mine\n[server]\nlisten = 0.0.0.0:9000\n');
    assert.equal(fs.readFileSync(conf + '.default', 'utf8'), pristine);

    // uninstall keeps only the operator's config
    makeInstall({ DESTDIR: dest, PREFIX: '/usr' }, 'uninstall');
    assert.deepEqual(listTree(dest), ['/etc/nightshift/nightshift.ini']);
});

test('make install without a built program says what to do', () => {
    const r = spawnSync('make', ['-s', '-C', REPO_ROOT, 'install', `DESTDIR=${path.join(dir, 'nobin')}`,
        `BIN=${path.join(dir, 'no-such-binary')}`], { encoding: 'utf8' });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /no program at .*no-such-binary.*build it first/);
});

/* a unit file as [[section, key, value], ...] */
function parseUnit(text) {
    const out = [];
    let sec = '';
    for (const line of text.split('\n')) {
        const t = line.trim();
        if (!t || t.startsWith('#') || t.startsWith(';')) continue;
        const s = /^\[(.+)\]$/.exec(t);
        if (s) sec = s[1];
        else {
            const eq = t.indexOf('=');
            out.push([sec, t.slice(0, eq), t.slice(eq + 1)]);
        }
    }
    return out;
}
const unitValues = (u, sec, key) => u.filter(([s, k]) => s === sec && k === key).map(([, , v]) => v);

test('the systemd units: systemd-analyze verify, and the settings the service relies on', (t) => {
    const prefix = path.join(dir, 'prefix-verify');
    makeInstall({ PREFIX: prefix, SYSCONFDIR: path.join(prefix, 'etc') });
    const units = path.join(prefix, 'lib/systemd/system');
    const u = parseUnit(fs.readFileSync(path.join(units, 'nightshift.service'), 'utf8'));
    const one = (key) => {
        const v = unitValues(u, 'Service', key);
        assert.equal(v.length, 1, `nightshift.service: ${key}= ${v.length} times`);
        return v[0];
    };
    assert.equal(one('User'), 'nightshift');
    assert.equal(one('StateDirectory'), 'nightshift');
    assert.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID');
    assert.equal(one('ProtectSystem'), 'strict');
    assert.equal(one('ProtectHome'), 'yes');
    assert.equal(one('PrivateTmp'), 'yes');
    assert.equal(one('NoNewPrivileges'), 'yes');
    assert.equal(one('KillSignal'), 'SIGTERM');
    assert.ok(Number.parseInt(one('TimeoutStopSec'), 10) > 30, 'TimeoutStopSec must exceed the default --grace-period (30 s)');
    assert.equal(unitValues(u, 'Install', 'WantedBy')[0], 'multi-user.target');
    const timer = parseUnit(fs.readFileSync(path.join(units, 'nightshift-nightly.timer'), 'utf8'));
    assert.ok(unitValues(timer, 'Timer', 'OnCalendar').length === 1);
    const nightly = parseUnit(fs.readFileSync(path.join(units, 'nightshift-nightly.service'), 'utf8'));
    assert.match(unitValues(nightly, 'Service', 'ExecStart')[0], new RegExp(`^${prefix}/bin/nightshift submit `));

    const sa = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
    if (sa.error) {
        t.skip('systemd-analyze is not installed (Debian package systemd)');
        return;
    }
    const man = spawnSync('man', ['--version'], { encoding: 'utf8' });
    const files = ['nightshift.service', 'nightshift-nightly.service', 'nightshift-nightly.timer'].map((f) => path.join(units, f));
    const r = spawnSync('systemd-analyze', ['verify', ...(man.error ? ['--man=no'] : []), ...files], {
        encoding: 'utf8', env: { ...process.env, MANPATH: path.join(prefix, 'share/man') },
    });
    // verify reports unknown keys and bad values on stderr but still exits 0: both must be clean
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', 'systemd-analyze verify');
});

/* The server unit's ExecStart run by hand, the way systemd would: its Environment= and
 * EnvironmentFile=, %S as a temporary state dir. */
test('the unit\'s command line starts a working server; SIGHUP does not stop it; SIGTERM does', async () => {
    const prefix = path.join(dir, 'prefix-run');
    const etc = path.join(prefix, 'etc');
    makeInstall({ PREFIX: prefix, SYSCONFDIR: etc });
    const u = parseUnit(fs.readFileSync(path.join(prefix, 'lib/systemd/system/nightshift.service'), 'utf8'));
    const stateDir = path.join(dir, 'state');
    fs.mkdirSync(stateDir);
    const spec = (v) => v.replace(/%S/g, stateDir);
    const dataDir = path.join(stateDir, unitValues(u, 'Service', 'StateDirectory')[0]);
    fs.mkdirSync(dataDir); // systemd creates StateDirectory=

    // the installed config, pointed at this test's data dir, port and model
    const conf = path.join(etc, 'nightshift', 'nightshift.ini');
    let ini = fs.readFileSync(conf, 'utf8')
        .replace(/^listen = .*$/m, 'listen = 127.0.0.1:0')
        .replace(/^data-dir = .*$/m, `data-dir = ${dataDir}`)
        .replace(/^\[server\]$/m, `[server]\nthreads = ${THREADS}\nparallel = 4`);
    ini += `\n[model tiny]\nbackend = local\npath = ${model}\n`;
    fs.writeFileSync(conf, ini);
    fs.writeFileSync(path.join(etc, 'nightshift', 'nightshift.env'), 'NIGHTSHIFT_API_KEY=unit-key\n', { mode: 0o600 });

    const env = { ...process.env };
    delete env.NIGHTSHIFT_API_KEY;
    delete env.NIGHTSHIFT_MODEL;
    for (const e of unitValues(u, 'Service', 'Environment')) {
        const [k, ...v] = spec(e).split('=');
        env[k] = v.join('=');
    }
    for (let f of unitValues(u, 'Service', 'EnvironmentFile')) {
        const optional = f.startsWith('-');
        f = spec(optional ? f.slice(1) : f);
        if (!fs.existsSync(f) && optional) continue;
        for (const l of fs.readFileSync(f, 'utf8').split('\n')) {
            const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(l);
            if (m) env[m[1]] = m[2];
        }
    }
    assert.equal(env.NIGHTSHIFT_API_KEY, 'unit-key', 'EnvironmentFile= names the installed nightshift.env');
    const argv = spec(unitValues(u, 'Service', 'ExecStart')[0]).split(/\s+/);
    assert.equal(argv[0], path.join(prefix, 'bin', 'nightshift'));
    assert.deepEqual(argv.slice(1, 4), ['serve', '--config', conf]);

    const cwd = spec(unitValues(u, 'Service', 'WorkingDirectory')[0]);
    const child = spawn(argv[0], argv.slice(1), { cwd, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => (log += d));
    const gone = exited(child, 120_000);
    try {
        const t0 = Date.now();
        while (!/listening on http:\/\/127\.0\.0\.1:(\d+)/.test(log)) {
            assert.ok(child.exitCode === null, `the unit's command exited: ${log}`);
            assert.ok(Date.now() - t0 < 60_000, `no 'listening' from the unit's command: ${log}`);
            await sleep(50);
        }
        const s = { url: `http://127.0.0.1:${/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(log)[1]}` };
        assert.match(log, new RegExp(`data dir ${dataDir}`));
        const body = JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
        const ct = { 'content-type': 'application/json' };
        assert.equal((await api(s, 'POST', '/v1/chat/completions', body, ct)).status, 401, 'the env file\'s key is required');
        const ok = await api(s, 'POST', '/v1/chat/completions', body, { ...ct, authorization: 'Bearer unit-key' });
        assert.equal(ok.status, 200, ok.text);
        assert.ok(fs.existsSync(path.join(dataDir, 'nightshift.db')), 'the store is in the StateDirectory');

        // ExecReload: SIGHUP is a reload request, never a stop
        process.kill(child.pid, 'SIGHUP');
        await sleep(300);
        process.kill(child.pid, 'SIGHUP');
        await sleep(300);
        assert.equal(child.exitCode, null, `SIGHUP stopped the server: ${log}`);
        assert.equal((log.match(/reloaded .*nightshift\.ini: 1 model updated/g) || []).length, 2, log);
        assert.equal((await api(s, 'GET', '/health', undefined, { authorization: 'Bearer unit-key' })).status, 200);
        const again = await api(s, 'POST', '/v1/chat/completions', body, { ...ct, authorization: 'Bearer unit-key' });
        assert.equal(again.status, 200, again.text);

        process.kill(child.pid, 'SIGTERM');
        const x = await gone;
        assert.deepEqual(x, { code: 0, signal: null }, log);
        assert.match(log, /shutting down/);
        assert.match(log, /stopped\n$/);
    } finally {
        if (child.exitCode === null) child.kill('SIGKILL');
    }
});

/* ---- graceful shutdown -------------------------------------------------------------- */

test('SIGTERM during a batch: in-flight lines finish within the grace period, the rest run after a restart', async () => {
    const dataDir = path.join(dir, 'sigterm-grace');
    const N = 60;
    let s = await serve(dataDir);
    const lines = [];
    for (let i = 0; i < N; i++) lines.push(chat(i));
    const b = await submitBatch(s, lines);
    await waitBatch(s, b.id, (x) => x.request_counts.completed >= 8 || TERMINAL.includes(x.status));
    const x = await s.stop();
    assert.deepEqual(x, { code: 0, signal: null }, s.log());
    assert.match(s.stderr(), /shutting down: taking no new work/);
    assert.doesNotMatch(s.stderr(), /grace period over/, 'the default grace period covers lines of 24 tokens');

    s = await serve(dataDir);
    const done = await waitBatch(s, b.id, (y) => TERMINAL.includes(y.status), 300_000);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.equal(done.request_counts.completed, N);
    assertEachOnce(await idCounts(s, done), N, 'after SIGTERM and a restart');
    await s.stop();
});

test('SIGTERM with --grace-period 0: running lines are cancelled, stay claimed, and run once after a restart', async () => {
    const dataDir = path.join(dir, 'sigterm-now');
    const N = 40;
    let s = await serve(dataDir, ['--grace-period', '0']);
    const lines = [];
    for (let i = 0; i < N; i++) lines.push(chat(i, 400));
    const b = await submitBatch(s, lines);
    await waitBatch(s, b.id, (x) => x.request_counts.completed >= 2 || TERMINAL.includes(x.status));
    const x = await s.stop();
    assert.deepEqual(x, { code: 0, signal: null }, s.log());
    assert.match(s.stderr(), /grace period over: stopping \d+ HTTP requests and [1-9]\d* engine requests/);
    const db = path.join(dataDir, 'nightshift.db');
    assert.notEqual(sqlite(db, `SELECT count(*) FROM lines WHERE batch_id='${b.id}' AND state=1`), '0',
        'the cancelled lines (and those claimed but not started) stay running for the next start to requeue');
    assert.equal(sqlite(db, 'PRAGMA integrity_check'), 'ok');

    s = await serve(dataDir);
    const done = await waitBatch(s, b.id, (y) => TERMINAL.includes(y.status), 300_000);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.equal(done.request_counts.completed, N, 'no line failed: shutdown cancellations are not results');
    assertEachOnce(await idCounts(s, done), N, 'after SIGTERM with no grace');
    await s.stop();
});

/* one HTTP request through a given agent; resolves { status, body } */
function request(url, { agent, method = 'GET', body, headers = {} } = {}) {
    return new Promise((resolve, reject) => {
        const req = http.request(url, { agent, method, headers }, (res) => {
            let data = '';
            res.setEncoding('utf8');
            res.on('data', (d) => (data += d));
            res.on('end', () => resolve({ status: res.statusCode, body: data }));
        });
        req.on('error', reject);
        req.end(body);
    });
}

test('SIGTERM during a streaming request: it streams to the end; new connections are refused, new requests get 503', async () => {
    const s = await serve(path.join(dir, 'sigterm-stream'));
    const keep = new http.Agent({ keepAlive: true, maxSockets: 1 });
    assert.equal((await request(`${s.url}/health`, { agent: keep })).status, 200); // an idle keep-alive connection

    const res = await fetch(`${s.url}/v1/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'go' }], max_tokens: 2000, ignore_eos: true, stream: true }),
    });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let text = dec.decode((await reader.read()).value);
    const stopped = s.stop(60_000);

    // the listening socket closes at once; the stream and its connection go on
    let refused = false;
    for (let i = 0; i < 100 && !refused; i++) {
        try {
            await request(`${s.url}/health`, { agent: false });
            await sleep(20);
        } catch (e) {
            refused = e.code === 'ECONNREFUSED';
        }
    }
    assert.ok(refused, 'a new connection during the drain is refused');
    const late = await request(`${s.url}/v1/models`, { agent: keep });
    assert.equal(late.status, 503, late.body);
    assert.match(JSON.parse(late.body).error.message, /shutting down/);

    for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += dec.decode(value);
    }
    const events = text.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6));
    assert.equal(events.at(-1), '[DONE]');
    const last = JSON.parse(events.at(-2));
    assert.equal(last.choices[0].finish_reason, 'length', 'the running request ran to its max_tokens');
    assert.deepEqual(await stopped, { code: 0, signal: null }, s.log());
    assert.doesNotMatch(s.stderr(), /grace period over/);
    keep.destroy();
});

test('a second SIGTERM ends the grace period at once; SIGHUP while stopping is ignored', async () => {
    const s = await serve(path.join(dir, 'sigterm-twice'));
    const res = await fetch(`${s.url}/v1/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'go' }], max_tokens: 2000, ignore_eos: true, stream: true }),
    });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    await reader.read();
    const stopped = s.stop(60_000);
    await sleep(100);
    s.child.kill('SIGHUP');
    await sleep(100);
    s.child.kill('SIGTERM');
    let text = '';
    try {
        for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            text += new TextDecoder().decode(value);
        }
    } catch {
        /* the connection may close under the stream */
    }
    assert.deepEqual(await stopped, { code: 0, signal: null }, s.log());
    assert.match(s.stderr(), /reload requested while shutting down: ignored/);
    assert.match(s.stderr(), /second stop signal: not waiting for 1 HTTP and 1 engine requests/);
    assert.doesNotMatch(text, /"finish_reason":"length"/, 'the stream was cut short');
});

test('serve --grace-period must be 0 to 3600 seconds', async () => {
    for (const bad of ['-1', '3601', 'abc', '1.5']) {
        const r = await runNs(['serve', '--model', `tiny=${model}`, '--grace-period', bad]);
        assert.equal(r.code, 2, describeRun(r));
        assert.match(r.stderr, new RegExp(`--grace-period must be a number of seconds from 0 to 3600, not '${bad.replace('.', '\\.')}'`));
    }
});

/* ---- one server per data dir, newer schemas ----------------------------------------- */

test('a second server on the same data dir is refused, naming the first one\'s pid', async () => {
    const dataDir = path.join(dir, 'locked');
    const s = await serve(dataDir);
    const r = await runNs(['serve', '--model', `tiny=${model}`, '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--threads', THREADS]);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, new RegExp(`data dir '${dataDir}' is in use by another nightshift \\(pid ${s.child.pid}\\)`));
    await s.stop();
    // kill -9 leaves the lock file but not the lock
    const k = await serve(dataDir);
    await killHard(k);
    const again = await serve(dataDir);
    await again.stop();
});

test('a store written by a newer nightshift is refused with a clear message', async () => {
    const dataDir = path.join(dir, 'newer');
    const s = await serve(dataDir);
    await s.stop();
    sqlite(path.join(dataDir, 'nightshift.db'), 'PRAGMA user_version=99');
    const r = await runNs(['serve', '--model', `tiny=${model}`, '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--threads', THREADS]);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, /has schema version 99, newer than this nightshift understands \(8\); use a newer nightshift/);
    const d = await runNs(['doctor', '--data-dir', dataDir]);
    assert.equal(d.code, 1, describeRun(d));
    assert.match(d.stdout, /^FAIL {2}store: schema version 99 is newer than this nightshift knows \(8\)/m);
});

/* ---- doctor ------------------------------------------------------------------------- */

test('doctor: all ok on a good data dir and model; says when a server uses it', async () => {
    const dataDir = path.join(dir, 'doctor-ok');
    const s = await serve(dataDir);
    let r = await runNs(['doctor', '--data-dir', dataDir, '--model', `tiny=${model}`]);
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stdout, new RegExp(`^ok {4}data dir '${dataDir}': writable; a server is using it \\(pid ${s.child.pid}\\)$`, 'm'));
    await s.stop();
    r = await runNs(['doctor', '--data-dir', dataDir, '--model', `tiny=${model}`]);
    assert.equal(r.code, 0, describeRun(r));
    const lines = r.stdout.trim().split('\n');
    assert.match(lines[0], /^nightshift doctor: nightshift \d/);
    assert.match(lines.at(-1), /^0 failed, \d+ warnings$/);
    for (const l of lines.slice(1, -1)) assert.match(l, /^(ok  |warn|FAIL)  \S/, 'one line per check');
    assert.match(r.stdout, /^ok {4}data dir .*: writable; no server is using it$/m);
    assert.match(r.stdout, /^ok {4}store: schema version 8 \(current\)$/m);
    assert.match(r.stdout, /^ok {4}model '.*tiny\.gguf': GGUF, general\.name '[^']*', [\d.]+ MiB$/m);
    assert.match(r.stdout, /^(ok|warn) {2,4}cpu: /m);
    assert.doesNotMatch(r.stdout, /^FAIL/m);
    assert.match(r.stdout, /^(ok|warn) {2,4}free disk space: /m);
    if (/\bamx_tile\b/.test(fs.readFileSync('/proc/cpuinfo', 'utf8')))
        assert.match(r.stdout, /AMX present and deliberately unused/);

    // a fresh data dir: created at the first start, nothing failed
    r = await runNs(['doctor', '--data-dir', path.join(dir, 'doctor-fresh')]);
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stdout, /^warn {2}data dir .* does not exist yet: 'nightshift serve' creates it$/m);
    assert.match(r.stdout, /^ok {4}store: no database yet/m);

    // an older schema: the next start migrates it
    const old = path.join(dir, 'doctor-old');
    fs.mkdirSync(old);
    fs.copyFileSync(path.join(dataDir, 'nightshift.db'), path.join(old, 'nightshift.db'));
    sqlite(path.join(old, 'nightshift.db'), 'PRAGMA user_version=1');
    r = await runNs(['doctor', '--data-dir', old]);
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stdout, /^warn {2}store: schema version 1, older than this nightshift's 8: the next start migrates it/m);
});

test('doctor: FAIL lines say what to fix, and the exit status is 1', async () => {
    const notDir = path.join(dir, 'doctor-file');
    fs.writeFileSync(notDir, 'not a directory\n');
    const bad = path.join(dir, 'bad.gguf');
    fs.writeFileSync(bad, 'hello\n');
    let r = await runNs(['doctor', '--data-dir', notDir, '--model', bad, '--model', path.join(dir, 'missing.gguf')]);
    assert.equal(r.code, 1, describeRun(r));
    assert.match(r.stdout, /^FAIL {2}data dir '.*doctor-file' is not a directory: give --data-dir a directory$/m);
    assert.match(r.stdout, /^FAIL {2}model: '.*bad\.gguf' is not a GGUF model file .*: give the path of a GGUF model file$/m);
    assert.match(r.stdout, /^FAIL {2}model: cannot open model '.*missing\.gguf': No such file or directory/m);
    assert.match(r.stdout, /^3 failed, \d+ warnings$/m);

    const notDb = path.join(dir, 'doctor-notdb');
    fs.mkdirSync(notDb);
    fs.writeFileSync(path.join(notDb, 'nightshift.db'), 'x'.repeat(4096));
    r = await runNs(['doctor', '--data-dir', notDb]);
    assert.equal(r.code, 1, describeRun(r));
    assert.match(r.stdout, /^FAIL {2}store: cannot read database '.*nightshift\.db': file is not a database: restore a backup/m);

    r = await runNs(['doctor', '--db', 'mysql://db.example/ns', '--data-dir', dir]);
    assert.equal(r.code, 1, describeRun(r));
    assert.match(r.stdout, /^FAIL {2}store 'mysql:\/\/db\.example\/ns': no such store in this build \(it has: sqlite:PATH, postgres:\/\/\.\.\.\): fix --db$/m);
    r = await runNs(['doctor', '--db', 'postgres://db.invalid/ns', '--data-dir', dir]);
    assert.equal(r.code, 1, describeRun(r));
    assert.match(r.stdout, /^FAIL {2}store: cannot connect to PostgreSQL at 'postgres:\/\/db\.invalid\/ns': .*: check the --db URI and that the database server is up$/m);

    r = await runNs(['doctor', '--bogus']);
    assert.equal(r.code, 2, describeRun(r));
    r = await runNs(['doctor', 'extra']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unexpected argument 'extra'/);
});

/* ---- backup and restore ------------------------------------------------------------- */

test('backup while a batch runs, restore into a fresh data dir: the batches and files are there', async () => {
    const dataDir = path.join(dir, 'bk-src');
    const N = 60;
    const s = await serve(dataDir);
    const form = new FormData();
    form.append('purpose', 'batch');
    const extra = 'a file that is not used by a batch\n';
    form.append('file', new Blob([extra]), 'extra.jsonl');
    const up = await api(s, 'POST', '/v1/files', form);
    assert.equal(up.status, 200, up.text);
    const lines = [];
    for (let i = 0; i < N; i++) lines.push(chat(i));
    const b = await submitBatch(s, lines);
    const mid = await waitBatch(s, b.id, (x) => x.request_counts.completed >= 5 || TERMINAL.includes(x.status));

    const bk = path.join(dir, 'bk');
    const r = await runNs(['backup', bk, '--data-dir', dataDir]);
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stdout, /^backed up '.*bk-src' into '.*bk': the store and \d+ files/);
    assert.equal(sqlite(path.join(bk, 'nightshift.db'), 'PRAGMA integrity_check'), 'ok');
    assert.equal(sqlite(path.join(bk, 'nightshift.db'), 'PRAGMA journal_mode'), 'delete', 'a backup is one self-contained file');
    assert.ok(!fs.readdirSync(path.join(bk, 'files')).some((f) => f.startsWith('.') || f.startsWith('upload-') || f.includes('.tmp-') || f.endsWith('.tmp')));
    assert.equal(fs.readFileSync(path.join(bk, 'files', up.json().id), 'utf8'), extra);
    const atBackup = Number(sqlite(path.join(bk, 'nightshift.db'), `SELECT completed FROM batches WHERE id='${b.id}'`));
    assert.ok(atBackup >= mid.request_counts.completed && atBackup <= N, `completed at backup: ${atBackup}`);

    // the source server was not disturbed
    const srcDone = await waitBatch(s, b.id, (x) => TERMINAL.includes(x.status), 300_000);
    assert.equal(srcDone.status, 'completed');

    const dst = path.join(dir, 'bk-dst');
    const rr = await runNs(['restore', bk, '--data-dir', dst]);
    assert.equal(rr.code, 0, describeRun(rr));
    assert.match(rr.stdout, /^restored '.*bk' into '.*bk-dst': the store and \d+ files/);
    const t = await serve(dst);
    const f = await api(t, 'GET', `/v1/files/${up.json().id}/content`);
    assert.equal(f.status, 200, f.text);
    assert.equal(f.text, extra);
    const input = await api(t, 'GET', `/v1/files/${b.input_file_id}/content`);
    assert.equal(input.status, 200);
    assert.equal(input.text.split('\n').filter(Boolean).length, N);
    // the batch was in progress in the backup: it resumes on the restored data dir
    const done = await waitBatch(t, b.id, (x) => TERMINAL.includes(x.status), 300_000);
    assert.equal(done.status, 'completed', JSON.stringify(done));
    assert.equal(done.request_counts.completed, N);
    assertEachOnce(await idCounts(t, done), N, 'the restored batch');
    // paths point into the new data dir, not the old one
    assert.equal(sqlite(path.join(dst, 'nightshift.db'), `SELECT count(*) FROM files WHERE path NOT LIKE '${fs.realpathSync(dst)}/files/%'`), '0');

    // refused while a server uses the data dir, even with --force
    const busy = await runNs(['restore', bk, '--data-dir', dst, '--force']);
    assert.equal(busy.code, 2, describeRun(busy));
    assert.match(busy.stderr, new RegExp(`is in use by another nightshift \\(pid ${t.child.pid}\\): stop that server before restoring`));
    await t.stop();
    await s.stop();

    // refused over an existing database without --force; --force replaces it
    const again = await runNs(['restore', bk, '--data-dir', dst]);
    assert.equal(again.code, 2, describeRun(again));
    assert.match(again.stderr, /already holds a database \(schema version 8\): restore into an empty data dir, or add --force/);
    const forced = await runNs(['restore', bk, '--data-dir', dst, '--force']);
    assert.equal(forced.code, 0, describeRun(forced));
    assert.match(forced.stdout, /removed \d+ files the backup does not have/, 'the results written after the backup are gone');
    assert.equal(sqlite(path.join(dst, 'nightshift.db'), `SELECT completed FROM batches WHERE id='${b.id}'`), String(atBackup));
});

test('backup and restore refuse what they cannot do, clearly', async () => {
    const empty = path.join(dir, 'bk-none');
    let r = await runNs(['backup', path.join(dir, 'bk-x'), '--data-dir', path.join(dir, 'no-such-data')]);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, /no data dir '.*no-such-data'/);

    const dataDir = path.join(dir, 'bk-small');
    const s = await serve(dataDir);
    await s.stop();
    const full = path.join(dir, 'bk-full');
    fs.mkdirSync(full);
    fs.writeFileSync(path.join(full, 'something'), 'x');
    r = await runNs(['backup', full, '--data-dir', dataDir]);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, /'.*bk-full' is not empty: back up into a new or empty directory/);

    r = await runNs(['backup', path.join(full, 'something', 'sub'), '--data-dir', dataDir]);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, /cannot create '.*bk-full\/something\/sub': Not a directory/);
    r = await runNs(['backup', path.join(dir, 'bk-my'), '--db', 'mysql://db.example/ns', '--data-dir', dataDir]);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, /no store for 'mysql:\/\/db\.example\/ns' \(this build has: sqlite:PATH, postgres:\/\/\.\.\.\)/);
    r = await runNs(['backup', path.join(dir, 'bk-pg'), '--db', 'postgres://db.invalid/ns', '--data-dir', dataDir]);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, /the postgres store cannot be backed up by nightshift; use its own tools \(pg_dump \/ pg_restore/);

    r = await runNs(['backup', path.join(dir, 'bk-f'), '--data-dir', dataDir, '--force']);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, /unrecognized option '--force' \(only restore has it\)/);
    r = await runNs(['restore', path.join(dir, 'bk-f'), 'extra', '--data-dir', dataDir]);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, /unexpected argument 'extra'/);

    r = await runNs(['backup', '--data-dir', dataDir]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no backup directory given/);

    fs.mkdirSync(empty);
    r = await runNs(['restore', empty, '--data-dir', path.join(dir, 'r1')]);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, /'.*bk-none' is not a nightshift backup: no readable nightshift\.db/);
    r = await runNs(['restore', empty]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /no data dir given \(--data-dir D\)/);

    // a backup from a newer nightshift is refused
    const newer = path.join(dir, 'bk-newer');
    r = await runNs(['backup', newer, '--data-dir', dataDir]);
    assert.equal(r.code, 0, describeRun(r));
    r = await runNs(['restore', newer, '--data-dir', path.join(full, 'something')]);
    assert.equal(r.code, 2, describeRun(r));
    assert.match(r.stderr, /cannot create '.*bk-full\/something\/files': Not a directory/);
    sqlite(path.join(newer, 'nightshift.db'), 'PRAGMA user_version=99');
    r = await runNs(['restore', newer, '--data-dir', path.join(dir, 'r2')]);
    assert.equal(r.code, 1, describeRun(r));
    assert.match(r.stderr, /the backup '.*' has schema version 99, newer than this nightshift understands \(8\)/);
});
