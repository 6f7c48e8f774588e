// Chat-template parity with llama-server (issue 29): every Jinja template llama.cpp bundles
// (src/models/templates/*.jinja), with a matching real tokenizer in a random-weight model,
// renders a fixed conversation (a system message, two tools, an assistant tool call, a tool
// result, a final user message) to the same bytes through nightshift's POST /apply-template
// as through `llama-server --jinja`'s /apply-template, built from the same llama.cpp. Once
// as it is, once with chat_template_kwargs {"enable_thinking": false}.
//
// A template llama-server itself cannot load or render is listed as skipped with its reason;
// any template llama-server renders and nightshift renders differently is a failure. The
// table (template -> identical / differs / skipped: reason) is printed as diagnostics and
// written to <dir of the binary>/templates-parity.txt (NIGHTSHIFT_E2E_TEMPLATES_REPORT
// overrides the path).
//
// Speed: one llama-server per template, 4 at a time; one nightshift per vocab serving each
// of its templates as a model of its own ([model NAME] chat_template_file in a config).
//
// Also: --chat-template-file with a file of our own, Qwen3's enable_thinking false, and the
// errors of the option, the config key and the route.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { BIN, VOCAB_DIR, mkTmp, rmTmp, runNs, startServer, killHard, api, describeRun, writeJsonl } from './lib.mjs';

const LLAMA_DIR = path.resolve(VOCAB_DIR, '..', '..');
const LLAMA_SERVER = path.join(LLAMA_DIR, 'bin', 'llama-server');
const TEMPLATE_DIR = path.join(VOCAB_DIR, 'templates');
const REPORT = process.env.NIGHTSHIFT_E2E_TEMPLATES_REPORT || path.join(path.dirname(BIN), 'templates-parity.txt');
const CONCURRENCY = 4;

/* template name -> the vocab whose special tokens it uses (first match wins) */
const VOCABS = [
    [/qwen3\.5/i, 'qwen35'],
    [/deepseek-r1-distill-qwen/i, 'deepseek-llm'],
    [/deepseek/i, 'deepseek-llm'],
    [/qwen|qwq|mimo/i, 'qwen2'],
    [/llama-3|firefunction|functionary/i, 'llama-bpe'],
    [/mistral|ministral|devstral|mixtral/i, 'llama-spm'],
    [/gemma/i, 'gemma-4'],
    [/command-r|cohere/i, 'command-r'],
    [/phi-3/i, 'phi-3'],
];
const vocabOf = (name) => {
    for (const [re, v] of VOCABS)
        if (re.test(name) && fs.existsSync(path.join(VOCAB_DIR, `ggml-vocab-${v}.gguf`))) return v;
    return 'llama-bpe';
};

const TOOLS = [
    {
        type: 'function',
        function: {
            name: 'get_weather',
            description: 'The current weather in a city.',
            parameters: {
                type: 'object',
                properties: {
                    city: { type: 'string', description: 'The city, e.g. Paris' },
                    unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
                },
                required: ['city'],
            },
        },
    },
    {
        type: 'function',
        function: {
            name: 'calculate',
            description: 'Evaluate an arithmetic expression.',
            parameters: {
                type: 'object',
                properties: { expression: { type: 'string' } },
                required: ['expression'],
            },
        },
    },
];
/* the tool call id is 9 alphanumerics: Mistral's templates refuse any other */
const MESSAGES = [
    { role: 'system', content: 'You are a careful assistant. Use the tools when they help.' },
    { role: 'user', content: 'What is the weather in Paris?' },
    {
        role: 'assistant',
        content: null,
        tool_calls: [
            {
                id: 'call12345',
                type: 'function',
                function: { name: 'get_weather', arguments: '{"city": "Paris", "unit": "celsius"}' },
            },
        ],
    },
    { role: 'tool', tool_call_id: 'call12345', content: '{"temperature": 18, "sky": "cloudy"}' },
    { role: 'user', content: 'Thanks! And what is 17 * 23?' },
];
/* plain: a conversation every template should take (no system, no tools: gemma-2 and the
 * Mistral family refuse the others' roles), so that none goes unchecked */
const CASES = {
    tools: { messages: MESSAGES, tools: TOOLS },
    no_thinking: { messages: MESSAGES, tools: TOOLS, chat_template_kwargs: { enable_thinking: false } },
    plain: {
        messages: [
            { role: 'user', content: 'Hello!' },
            { role: 'assistant', content: 'Hi. How can I help?' },
            { role: 'user', content: 'Name a colour.' },
        ],
    },
};

let dir;
let haveLlama = false;
const models = new Map(); /* vocab -> model file */

const post = (url, body) =>
    fetch(url + '/apply-template', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
    }).then(async (r) => ({ status: r.status, text: await r.text() }));

function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.on('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

function modelFor(vocab) {
    if (!models.has(vocab)) {
        const out = path.join(dir, `${vocab}.gguf`);
        execFileSync(BIN, ['gen-model', '--vocab', path.join(VOCAB_DIR, `ggml-vocab-${vocab}.gguf`), '-o', out], {
            stdio: 'pipe',
        });
        models.set(vocab, out);
    }
    return models.get(vocab);
}

/* the last meaningful line llama-server wrote (why it stopped) */
function reasonOf(stderr) {
    const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
    const hit = lines.filter((l) => /error|exception|fail/i.test(l));
    return (hit.length ? hit[0] : lines[lines.length - 1] || 'no output').slice(0, 200);
}

/* one llama-server for one template: each case's {status, prompt | error}, or {skip: reason} */
async function llamaRender(tmpl, model) {
    const port = await freePort();
    const child = spawn(
        LLAMA_SERVER,
        ['-m', model, '--jinja', '--chat-template-file', tmpl, '--host', '127.0.0.1', '--port', String(port),
            '-c', '256', '-np', '1', '-t', '1', '--no-webui', '--no-warmup'],
        { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise((r) => child.on('exit', r));
    let gone = false;
    exited.then(() => (gone = true));
    const url = `http://127.0.0.1:${port}`;
    try {
        const t0 = Date.now();
        for (;;) {
            if (gone) return { skip: `llama-server does not start: ${reasonOf(stderr)}` };
            if (Date.now() - t0 > 30_000) return { skip: 'llama-server did not become ready in 30 s' };
            const ok = await fetch(url + '/health').then((r) => r.status === 200, () => false);
            if (ok) break;
            await new Promise((r) => setTimeout(r, 50));
        }
        const out = {};
        for (const [name, body] of Object.entries(CASES)) out[name] = answerOf(await post(url, body));
        return out;
    } finally {
        if (!gone) {
            child.kill('SIGKILL');
            await exited;
        }
    }
}

/* an /apply-template answer: {prompt} or {error: "STATUS message"} */
function answerOf(r) {
    let j = null;
    try {
        j = JSON.parse(r.text);
    } catch {
        /* not JSON: kept as text */
    }
    if (r.status === 200 && j && typeof j.prompt === 'string') return { prompt: j.prompt };
    let msg = String(j?.error?.message ?? r.text).replace(/\s+/g, ' ').trim();
    const jinja = /Jinja Exception: (.*)/.exec(msg);
    if (jinja) msg = `${/Unable to generate parser/.test(msg) ? 'no parser: ' : ''}template raises: ${jinja[1]}`;
    return { error: `${r.status} ${msg || '(no message)'}`.slice(0, 200) };
}

/* at most n of fns at a time */
async function pool(fns, n) {
    const results = new Array(fns.length);
    let next = 0;
    const worker = async () => {
        while (next < fns.length) {
            const i = next++;
            results[i] = await fns[i]();
        }
    };
    await Promise.all(Array.from({ length: Math.min(n, fns.length) }, worker));
    return results;
}

/* one nightshift serving each template of a vocab as model t<i> */
async function nightshiftGroup(vocab, entries, tag) {
    const cfg = path.join(dir, `ns-${tag}.ini`);
    const lines = ['[server]', `data-dir = ${path.join(dir, `data-${tag}`)}`];
    for (const e of entries)
        lines.push(`[model ${e.model}]`, 'backend = local', `path = ${modelFor(vocab)}`, `chat_template_file = ${e.file}`);
    fs.writeFileSync(cfg, lines.join('\n') + '\n');
    return startServer(['--config', cfg, '--no-auth', '-c', '256', '-p', '1', '--interactive-slots', '1', '-t', '1'],
        { timeoutMs: 120_000 });
}

before(() => {
    dir = mkTmp('ns-templates-');
    haveLlama = fs.existsSync(LLAMA_SERVER) && fs.existsSync(TEMPLATE_DIR);
});

after(() => rmTmp(dir));

test('every bundled template renders as llama-server --jinja renders it', { timeout: 600_000 }, async (t) => {
    if (!haveLlama) {
        t.skip(`no ${LLAMA_SERVER} or ${TEMPLATE_DIR} (scripts/bootstrap.sh builds them)`);
        return;
    }
    const files = fs.readdirSync(TEMPLATE_DIR).filter((f) => f.endsWith('.jinja')).sort();
    assert.ok(files.length > 10, `only ${files.length} templates in ${TEMPLATE_DIR}`);
    const entries = files.map((f, i) => ({
        name: f.replace(/\.jinja$/, ''),
        file: path.join(TEMPLATE_DIR, f),
        vocab: vocabOf(f),
        model: `t${i}`,
    }));
    for (const e of entries) modelFor(e.vocab);

    /* llama-server first: what it renders is the reference, what it cannot is skipped */
    const refs = await pool(entries.map((e) => () => llamaRender(e.file, models.get(e.vocab))), CONCURRENCY);
    entries.forEach((e, i) => (e.ref = refs[i]));

    /* nightshift: one process per vocab for the templates llama-server loaded */
    const byVocab = new Map();
    for (const e of entries)
        if (!e.ref.skip) byVocab.set(e.vocab, [...(byVocab.get(e.vocab) || []), e]);
    const servers = [];
    try {
        await Promise.all([...byVocab].map(async ([vocab, group]) => {
            let s;
            try {
                s = await nightshiftGroup(vocab, group, vocab);
            } catch (err) {
                /* one template nightshift cannot load stops the group: find it, one at a time */
                for (const e of group) {
                    try {
                        const one = await nightshiftGroup(vocab, [e], e.model);
                        servers.push(one);
                        e.ns = one;
                    } catch (err1) {
                        e.nsStartError = String(err1.message).split('\n').find((l) => /nightshift:|error/i.test(l)) ||
                            String(err1.message).slice(0, 200);
                    }
                }
                return;
            }
            servers.push(s);
            for (const e of group) e.ns = s;
        }));
        await pool(entries.filter((e) => e.ns).map((e) => async () => {
            e.got = {};
            for (const [name, body] of Object.entries(CASES))
                e.got[name] = answerOf(await post(e.ns.url, { model: e.model, ...body }));
        }), CONCURRENCY);
    } finally {
        await Promise.all(servers.map((s) => killHard(s)));
    }

    /* the first words of nightshift's fallback tool instruction (engine/toolwire.c) */
    const FALLBACK_MARK = 'You can call these functions (JSON, one per line):';
    /* the table */
    const rows = [];
    const failures = [];
    let identical = 0;
    let partly = 0;
    let differ = 0;
    let skipped = 0;
    for (const e of entries) {
        let verdict;
        if (e.ref.skip) {
            verdict = `skipped: ${e.ref.skip}`;
            skipped++;
        } else if (e.nsStartError) {
            verdict = `differs: nightshift does not load it: ${e.nsStartError}`;
            failures.push(`${e.name}: ${verdict}`);
            differ++;
        } else {
            const parts = [];
            let same = 0;
            let compared = 0;
            for (const name of Object.keys(CASES)) {
                const ref = e.ref[name];
                const got = e.got[name];
                if (ref.error) {
                    /* not compared; what nightshift does with it is said */
                    const ns = got.error ? `nightshift refuses it too, ${got.error.split(' ')[0]}` : 'nightshift renders it';
                    parts.push(`${name} skipped: llama-server answers ${ref.error} (${ns})`);
                    continue;
                }
                if (!got.error && got.prompt !== ref.prompt && got.prompt.includes(FALLBACK_MARK)) {
                    /* llama.cpp knows no tool format for this template (llama-server drops the
                     * tools): nightshift shows them in its fallback format, by design
                     * (engine/toolwire.h); the cases without tools are compared */
                    parts.push(`${name}: tools in nightshift's fallback format (llama.cpp has none for this template)`);
                    continue;
                }
                compared++;
                if (got.error) {
                    parts.push(`${name} differs: nightshift answers ${got.error}`);
                    failures.push(`${e.name} [${name}]: llama-server renders, nightshift answers ${got.error}`);
                } else if (got.prompt !== ref.prompt) {
                    let at = 0;
                    while (at < ref.prompt.length && ref.prompt[at] === got.prompt[at]) at++;
                    const show = (s) => JSON.stringify(s.slice(Math.max(0, at - 40), at + 60));
                    parts.push(`${name} differs at byte ${at}`);
                    failures.push(`${e.name} [${name}]: differs at char ${at}:\n  llama-server ${show(ref.prompt)}\n` +
                        `  nightshift   ${show(got.prompt)}`);
                } else {
                    same++;
                }
            }
            if (compared === 0) {
                verdict = `skipped: ${parts.join('; ')}`;
                skipped++;
            } else if (same === compared) {
                verdict = parts.length ? `identical on the cases compared (${parts.join('; ')})` : 'identical';
                if (parts.length) partly++;
                else identical++;
            } else {
                verdict = `differs: ${parts.join('; ')}`;
                differ++;
            }
        }
        rows.push(`${e.name.padEnd(56)} ${e.vocab.padEnd(13)} ${verdict}`);
    }
    const summary = `${entries.length} templates: ${identical} identical on every case, ${partly} identical on the ` +
        `cases compared (llama-server refuses the others, or the tools go in nightshift's fallback format), ` +
        `${differ} differ, ${skipped} skipped`;
    const report = [`# chat templates: nightshift /apply-template vs llama-server --jinja /apply-template`,
        `# cases: ${Object.keys(CASES).join(', ')}; llama.cpp ${LLAMA_DIR}`,
        ...rows, summary, ...failures.map((f) => `FAIL ${f}`)].join('\n') + '\n';
    try {
        fs.writeFileSync(REPORT, report);
    } catch {
        /* a read-only build dir: the diagnostics still carry it */
    }
    for (const r of rows) t.diagnostic(r);
    t.diagnostic(summary);
    t.diagnostic(`table written to ${REPORT}`);
    assert.deepEqual(failures, [], `templates llama-server renders that nightshift renders differently:\n${failures.join('\n')}`);
    assert.ok(identical + partly >= 30, `only ${identical + partly} templates compared identical`);
});

/* ---- --chat-template-file and enable_thinking on nightshift alone ------------------------ */

const hi = (extra = {}) => ({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], ...extra });

test('--chat-template-file renders with the file, not the model\'s template', async () => {
    const model = modelFor('qwen2');
    const tmpl = path.join(dir, 'own.jinja');
    fs.writeFileSync(tmpl, '{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}' +
        '{% if add_generation_prompt %}[assistant]{% endif %}');
    let plain, own;
    try {
        plain = await startServer(['-m', `tiny=${model}`, '-d', path.join(dir, 'own-a'), '--no-auth', '-c', '256',
            '-p', '1', '--interactive-slots', '1', '-t', '1']);
        own = await startServer(['-m', `tiny=${model}`, '-d', path.join(dir, 'own-b'), '--no-auth', '-c', '256',
            '-p', '1', '--interactive-slots', '1', '-t', '1', '--chat-template-file', tmpl]);
        const a = await post(plain.url, hi());
        const b = await post(own.url, hi());
        assert.equal(a.status, 200, a.text);
        assert.equal(b.status, 200, b.text);
        assert.equal(JSON.parse(b.text).prompt, '[user] hi\n[assistant]');
        assert.notEqual(JSON.parse(a.text).prompt, JSON.parse(b.text).prompt);
        assert.match(JSON.parse(a.text).prompt, /<\|im_start\|>user\nhi<\|im_end\|>/);
    } finally {
        await killHard(plain);
        await killHard(own);
    }
});

test('Qwen3 with enable_thinking false ends in an empty think block, as llama-server renders it', async (t) => {
    const tmpl = path.join(TEMPLATE_DIR, 'Qwen-Qwen3-0.6B.jinja');
    if (!fs.existsSync(tmpl)) {
        t.skip(`no ${tmpl}`);
        return;
    }
    const s = await startServer(['-m', `tiny=${modelFor('qwen2')}`, '-d', path.join(dir, 'qwen3'), '--no-auth', '-c',
        '256', '-p', '1', '--interactive-slots', '1', '-t', '1', '--chat-template-file', tmpl]);
    try {
        const off = await post(s.url, hi({ chat_template_kwargs: { enable_thinking: false } }));
        assert.equal(off.status, 200, off.text);
        assert.equal(JSON.parse(off.text).prompt,
            '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n');
        const on = await post(s.url, hi());
        assert.equal(JSON.parse(on.text).prompt, '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n');
        /* a string is not a boolean: refused as llama-server refuses it */
        const bad = await post(s.url, hi({ chat_template_kwargs: { enable_thinking: 'no' } }));
        assert.equal(bad.status, 400, bad.text);
        assert.match(JSON.parse(bad.text).error.message, /enable_thinking/);
    } finally {
        await killHard(s);
    }
});

test('/apply-template errors are OpenAI errors', async () => {
    const model = modelFor('qwen2');
    const cfg = path.join(dir, 'errors.ini');
    fs.writeFileSync(cfg, ['[model up]', 'backend = openai-http', 'url = http://127.0.0.1:9/v1', ''].join('\n'));
    let s, emb;
    try {
        s = await startServer(['-m', `tiny=${model}`, '--config', cfg, '-d', path.join(dir, 'errs'), '--no-auth', '-c',
            '256', '-p', '1', '--interactive-slots', '1', '-t', '1']);
        emb = await startServer(['-m', `tiny=${modelFor('llama-spm')}`, '-d', path.join(dir, 'errs-emb'), '--no-auth',
            '--embedding', '-p', '4', '-c', '2048', '-t', '1']);
        const unknown = await post(s.url, { ...hi(), model: 'nope' });
        assert.equal(unknown.status, 404, unknown.text);
        assert.equal(JSON.parse(unknown.text).error.param, 'model');
        const noMsgs = await post(s.url, { model: 'tiny' });
        assert.equal(noMsgs.status, 400, noMsgs.text);
        assert.equal(JSON.parse(noMsgs.text).error.param, 'messages');
        const notJson = await api(s, 'POST', '/apply-template', '{', { 'content-type': 'application/json' });
        assert.equal(notJson.status, 400, notJson.text);
        assert.ok(notJson.json().error.message);
        const upstream = await post(s.url, { ...hi(), model: 'up' });
        assert.equal(upstream.status, 400, upstream.text);
        assert.match(JSON.parse(upstream.text).error.message, /upstream/);
        const embed = await post(emb.url, hi());
        assert.equal(embed.status, 400, embed.text);
        assert.match(JSON.parse(embed.text).error.message, /embeddings only/);
        /* a conversation the template refuses (a tool call continued as the last message) */
        const refused = await post(s.url, {
            model: 'tiny',
            messages: [{ role: 'user', content: 'x' }, MESSAGES[2]],
        });
        assert.equal(refused.status, 400, refused.text);
        assert.equal(JSON.parse(refused.text).error.param, 'messages');
    } finally {
        await killHard(s);
        await killHard(emb);
    }
});

test('a chat template file that cannot be used is one line and exit 2', async () => {
    const model = modelFor('qwen2');
    const empty = path.join(dir, 'empty.jinja');
    fs.writeFileSync(empty, '');
    const binary = path.join(dir, 'binary.jinja');
    fs.writeFileSync(binary, Buffer.from([0x7b, 0x7b, 0x00, 0x7d, 0x7d]));
    const big = path.join(dir, 'big.jinja');
    fs.writeFileSync(big, 'x'.repeat((1 << 20) + 1));
    const missing = path.join(dir, 'missing.jinja');
    const input = path.join(dir, 'in.jsonl');
    writeJsonl(input, [{ custom_id: 'a', method: 'POST', url: '/v1/chat/completions',
        body: { model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 } }]);
    const cases = [
        [missing, /--chat-template-file: cannot read '.*missing\.jinja': No such file/],
        [empty, /--chat-template-file: '.*empty\.jinja' is empty/],
        [binary, /--chat-template-file: '.*binary\.jinja' is binary/],
        [big, /--chat-template-file: '.*big\.jinja' is over 1 MB/],
    ];
    for (const [file, re] of cases) {
        const serve = await runNs(['serve', '-m', model, '-d', path.join(dir, 'never'), '--chat-template-file', file],
            { timeoutMs: 30_000 });
        assert.equal(serve.code, 2, describeRun(serve));
        assert.match(serve.stderr, re);
        assert.equal(serve.stderr.trim().split('\n').length, 1, describeRun(serve));
        const run = await runNs(['run', '-m', model, input, '-o', path.join(dir, 'out.jsonl'), '--chat-template-file',
            file], { timeoutMs: 30_000 });
        assert.equal(run.code, 2, describeRun(run));
        assert.match(run.stderr, re);
        assert.equal(run.stderr.trim().split('\n').length, 1, describeRun(run));
    }
    assert.equal(fs.existsSync(path.join(dir, 'never')), false, 'serve made its data dir before failing');
    const both = await runNs(['serve', '-m', model, '-d', path.join(dir, 'never'), '--chat-template', 'chatml',
        '--chat-template-file', empty], { timeoutMs: 30_000 });
    assert.equal(both.code, 2, describeRun(both));
    assert.match(both.stderr, /give one/);
    const bothRun = await runNs(['run', '-m', model, input, '-o', path.join(dir, 'out.jsonl'), '--chat-template',
        'chatml', '--chat-template-file', empty], { timeoutMs: 30_000 });
    assert.equal(bothRun.code, 2, describeRun(bothRun));
    assert.match(bothRun.stderr, /give one/);
    /* the config key: a missing file names the file, the line and the section */
    const cfg = path.join(dir, 'bad.ini');
    fs.writeFileSync(cfg, ['[model tiny]', 'backend = local', `path = ${model}`, `chat_template_file = ${missing}`, '']
        .join('\n'));
    const conf = await runNs(['serve', '--config', cfg, '-d', path.join(dir, 'never')], { timeoutMs: 30_000 });
    assert.equal(conf.code, 2, describeRun(conf));
    assert.match(conf.stderr, /bad\.ini:4: \[model tiny\]: chat_template_file: cannot read '.*missing\.jinja'/);
    const twice = path.join(dir, 'twice.ini');
    fs.writeFileSync(twice, ['[model tiny]', 'backend = local', `path = ${model}`, `chat_template_file = ${empty}`,
        `chat_template_file = ${empty}`, ''].join('\n'));
    const tw = await runNs(['serve', '--config', twice, '-d', path.join(dir, 'never')], { timeoutMs: 30_000 });
    assert.equal(tw.code, 2, describeRun(tw));
    const upstream = path.join(dir, 'up.ini');
    const own = path.join(dir, 'own.jinja');
    fs.writeFileSync(own, '{{ messages[0].content }}');
    fs.writeFileSync(upstream, ['[model up]', 'backend = openai-http', 'url = http://127.0.0.1:9/v1',
        `chat_template_file = ${own}`, ''].join('\n'));
    const up = await runNs(['serve', '--config', upstream, '-d', path.join(dir, 'never')], { timeoutMs: 30_000 });
    assert.equal(up.code, 2, describeRun(up));
    assert.match(up.stderr, /\[model up\]: chat_template_file is for backend local/);
});

test('--chat-template-file in `nightshift run` renders the batch with the file', async () => {
    const model = modelFor('qwen2');
    const tmpl = path.join(dir, 'run.jinja');
    fs.writeFileSync(tmpl, '{% for m in messages %}{{ m.content }}{% endfor %}');
    const input = path.join(dir, 'run-in.jsonl');
    writeJsonl(input, [{ custom_id: 'a', method: 'POST', url: '/v1/chat/completions',
        body: { model: 'tiny', messages: [{ role: 'user', content: 'hello there' }], max_tokens: 1 } }]);
    const out = path.join(dir, 'run-out.jsonl');
    const r = await runNs(['run', '-m', model, '--model-alias', 'tiny', input, '-o', out, '--chat-template-file', tmpl,
        '-c', '256', '-p', '1'], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, describeRun(r));
    assert.match(r.stderr, /chat template file/);
    const line = JSON.parse(fs.readFileSync(out, 'utf8').trim());
    /* "hello there" alone: 2 tokens on Qwen2's tokenizer, where ChatML's wrapping is ~10 */
    assert.ok(line.response.body.usage.prompt_tokens <= 3, JSON.stringify(line.response.body.usage));
});
