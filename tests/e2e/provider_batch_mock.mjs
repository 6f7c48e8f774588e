// A mock of a provider's OpenAI-style batch API (files + batches), parameterized by provider:
// Groq (https://console.groq.com/docs/batch) or kluster.ai (https://docs.kluster.ai/api-reference).
// It enforces what those providers document, and refuses what they would refuse, so a test
// that runs nightshift through it proves nightshift obeys them:
//   - an input file over the line or byte limit: 400 / 413 with the provider's error shape
//   - a completion_window the provider does not accept, an endpoint it does not run: 400
//   - a line whose url differs from the batch's endpoint, a custom_id twice in one file
//   - a missing or wrong Bearer key: 401
// and it misbehaves the way they do: 429 with retry-after (seconds) on some calls, 5xx on
// others, batches that stay in_progress for a few polls (kluster.ai passes "finalising"),
// partial failures in the error file (a 400 that is final, a 500 that is worth a retry), and
// an upstream batch that expires part-way: Groq writes the unfinished lines to the error
// file as batch_expired, kluster.ai leaves them out. Quirks of their batch objects are kept:
// Groq's `errors` is a bare array and `metadata` null; kluster.ai's timestamps are strings.
//
// Every refusal is recorded in `stats.violations`; a test asserts there are none.
import http from 'node:http';

const GROQ_ERR = (message, code, param = null) => ({ error: { message, type: 'invalid_request_error', param, code } });

const PROVIDERS = {
    groq: {
        prefix: '/openai/v1',
        endpoints: ['/v1/chat/completions', '/v1/audio/transcriptions', '/v1/audio/translations'],
        // "Durations from 24h to 7d are supported"
        windowOk: (w) => {
            const m = /^(\d+)([hd])$/.exec(w || '');
            const s = m ? Number(m[1]) * (m[2] === 'h' ? 3600 : 86400) : 0;
            return s >= 24 * 3600 && s <= 7 * 86400;
        },
        windowErr: (w) => GROQ_ERR(`invalid completion_window '${w}': durations from 24h to 7d are supported`, 'invalid_completion_window', 'completion_window'),
        ts: (t) => t,
        errors: (list) => list, // a bare array
        finalizing: 'finalizing',
        expiredLine: (cid) => ({ id: `batch_req_${cid}`, custom_id: cid, response: null,
            error: { code: 'batch_expired', message: 'This request could not be executed before the completion window expired.' } }),
    },
    kluster: {
        prefix: '/v1',
        endpoints: ['/v1/chat/completions'],
        windowOk: (w) => ['1h', '3h', '6h', '12h', '24h'].includes(w),
        windowErr: (w) => GROQ_ERR(`Invalid completion_window '${w}'. Supported values are 1h, 3h, 6h, 12h and 24h.`, null, 'completion_window'),
        ts: (t) => (t == null ? null : String(t)), // timestamps as strings
        errors: (list) => (list.length ? { object: 'list', data: list } : null),
        finalizing: 'finalising',
        expiredLine: null, // unfinished lines are not reported: see which ids are missing
    },
};

/* the file part and the purpose of a multipart/form-data upload */
function parseMultipart(buf, contentType) {
    const m = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType || '');
    if (!m) return null;
    const boundary = Buffer.from('--' + (m[1] || m[2]));
    const out = {};
    let at = buf.indexOf(boundary);
    while (at >= 0) {
        const start = at + boundary.length;
        const next = buf.indexOf(boundary, start);
        if (next < 0) break;
        const part = buf.subarray(start + 2, next - 2); // after CRLF, before CRLF
        const hEnd = part.indexOf('\r\n\r\n');
        if (hEnd >= 0) {
            const head = part.subarray(0, hEnd).toString();
            const name = /name="([^"]+)"/.exec(head)?.[1];
            if (name) out[name] = part.subarray(hEnd + 4);
        }
        at = next;
    }
    return out;
}

export async function startProviderMock({ provider, key, maxLines, maxBytes, slowPolls = 2, rateLimitEvery = 0,
    serverErrorEvery = 0, retryAfter = '1' }) {
    const P = PROVIDERS[provider];
    if (!P) throw new Error(`no such provider mock: ${provider}`);
    const files = new Map(); // id -> { text, lines, purpose }
    const batches = new Map(); // id -> batch state
    const flaky = new Set(); // contents whose first try failed with a 500 already
    let expiredOnce = false;
    let seq = 0, calls = 0;
    const stats = { uploads: [], windows: [], endpoints: [], violations: [], rateLimited: 0, serverErrors: 0, expired: 0,
        polls: 0, calls: 0 };
    const now = () => Math.floor(Date.now() / 1000);

    const violation = (res, code, body, what) => {
        stats.violations.push(what);
        send(res, code, body);
    };
    const send = (res, code, body, headers = {}) => {
        const text = typeof body === 'string' ? body : JSON.stringify(body);
        res.writeHead(code, { 'content-type': typeof body === 'string' ? 'text/html' : 'application/json', ...headers });
        res.end(text);
    };

    const batchObject = (b) => ({
        id: b.id, object: 'batch', endpoint: b.endpoint, errors: P.errors(b.errors), input_file_id: b.input_file_id,
        completion_window: b.completion_window, status: b.status, output_file_id: b.output_file_id ?? null,
        error_file_id: b.error_file_id ?? null, created_at: P.ts(b.created_at), in_progress_at: P.ts(b.in_progress_at ?? null),
        expires_at: P.ts(b.created_at + 86400), finalizing_at: null, completed_at: P.ts(b.completed_at ?? null), failed_at: null,
        expired_at: P.ts(b.expired_at ?? null), cancelling_at: null, cancelled_at: null,
        request_counts: { total: b.lines.length, completed: b.completed ?? 0, failed: b.failed ?? 0 },
        metadata: provider === 'groq' ? null : (b.metadata ?? {}),
    });

    /* the answer to one line; { out } for the output file, { err } for the error file, or
     * nothing (expired, not reported) */
    const answer = (line, expired) => {
        const cid = line.custom_id;
        const msgs = line.body?.messages || [];
        const content = String(msgs[msgs.length - 1]?.content ?? '');
        if (expired) return P.expiredLine ? { err: P.expiredLine(cid) } : {};
        const resp = (status_code, body) => ({ id: `batch_req_${++seq}`, custom_id: cid,
            response: { status_code, request_id: `req_${seq}`, body }, error: null });
        if (content.startsWith('reject')) {
            return { err: resp(400, { error: { message: `'${content}' is not a valid prompt`, type: 'invalid_request_error',
                code: 'invalid_prompt' } }) };
        }
        if (content.startsWith('flaky') && !flaky.has(content)) {
            flaky.add(content);
            return { err: resp(500, { error: { message: 'internal error, please retry', type: 'internal_server_error' } }) };
        }
        const body = { id: `chatcmpl-${seq + 1}`, object: 'chat.completion', created: now(), model: line.body.model,
            choices: [{ index: 0, message: { role: 'assistant', content: `echo: ${content}` }, logprobs: null, finish_reason: 'stop' }],
            usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 } };
        if (provider === 'groq') body.x_groq = { id: `req_${seq + 1}` };
        else Object.assign(body, { prompt_logprobs: null });
        return { out: resp(200, body) };
    };

    const finish = (b) => {
        // the first batch with an "expire" line expires half-way: lines after the middle never ran
        const expires = !expiredOnce && b.lines.some((l) => JSON.stringify(l.body).includes('expire'));
        if (expires) expiredOnce = true;
        const out = [], err = [];
        b.lines.forEach((l, i) => {
            const a = answer(l, expires && i >= b.lines.length / 2);
            if (a.out) out.push(a.out);
            if (a.err) err.push(a.err);
        });
        const mk = (list) => {
            if (!list.length) return null;
            const id = `file_${provider}_${++seq}`;
            files.set(id, { text: list.map((x) => JSON.stringify(x)).join('\n') + '\n', purpose: 'batch_output' });
            return id;
        };
        b.output_file_id = mk(out);
        b.error_file_id = mk(err);
        b.completed = out.length;
        b.failed = err.length;
        if (expires) {
            b.status = 'expired';
            b.expired_at = now();
            stats.expired++;
        } else {
            b.status = 'completed';
            b.completed_at = now();
        }
    };

    const route = (req, res, body) => {
        if (req.headers.authorization !== `Bearer ${key}`)
            return violation(res, 401, { error: { message: 'Invalid API Key', type: 'invalid_request_error', code: 'invalid_api_key' } }, 'auth');
        stats.calls = ++calls;
        if (rateLimitEvery && calls % rateLimitEvery === 0) {
            stats.rateLimited++;
            return send(res, 429, { error: { message: 'Rate limit reached, please try again in 1s', type: 'tokens', code: 'rate_limit_exceeded' } },
                { 'retry-after': retryAfter });
        }
        if (serverErrorEvery && calls % serverErrorEvery === 0) {
            stats.serverErrors++;
            return calls % 2 ? send(res, 503, '<html><body>503 Service Unavailable</body></html>')
                : send(res, 500, { error: { message: 'Internal Server Error', type: 'internal_server_error' } });
        }
        const url = new URL(req.url, 'http://x');
        if (!url.pathname.startsWith(P.prefix + '/')) return send(res, 404, GROQ_ERR('Unknown request URL', 'unknown_url'));
        const p = url.pathname.slice(P.prefix.length);
        let m;
        if (req.method === 'POST' && p === '/files') {
            const form = parseMultipart(body, req.headers['content-type']);
            if (!form?.file || form.purpose?.toString() !== 'batch')
                return violation(res, 400, GROQ_ERR("'file' and purpose 'batch' are required", 'invalid_request'), 'upload form');
            const bytes = form.file.length;
            const text = form.file.toString();
            const lines = text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
            if (bytes > maxBytes)
                return violation(res, 413, GROQ_ERR(`file too large: ${bytes} bytes, the limit is ${maxBytes}`, 'file_too_large'), `bytes ${bytes} > ${maxBytes}`);
            if (lines.length > maxLines)
                return violation(res, 400, GROQ_ERR(`file has ${lines.length} lines, the limit is ${maxLines}`, 'too_many_lines'), `lines ${lines.length} > ${maxLines}`);
            const ids = new Set(lines.map((l) => l.custom_id));
            if (ids.size !== lines.length) return violation(res, 400, GROQ_ERR('duplicate custom_id', 'duplicate_custom_id'), 'duplicate custom_id');
            const id = `file_${provider}_${++seq}`;
            files.set(id, { text, lines, purpose: 'batch' });
            stats.uploads.push({ id, lines: lines.length, bytes });
            return send(res, 200, { id, object: 'file', bytes, created_at: P.ts(now()), filename: 'nightshift-batch.jsonl', purpose: 'batch' });
        }
        if (req.method === 'POST' && p === '/batches') {
            let b;
            try { b = JSON.parse(body.toString()); } catch { return violation(res, 400, GROQ_ERR('body is not JSON', 'invalid_json'), 'json'); }
            const f = files.get(b.input_file_id);
            if (!f || f.purpose !== 'batch') return violation(res, 400, GROQ_ERR('input_file_id not found', 'not_found'), 'file id');
            if (!P.endpoints.includes(b.endpoint))
                return violation(res, 400, GROQ_ERR(`endpoint '${b.endpoint}' is not supported`, 'invalid_endpoint', 'endpoint'), `endpoint ${b.endpoint}`);
            if (!P.windowOk(b.completion_window)) return violation(res, 400, P.windowErr(b.completion_window), `window ${b.completion_window}`);
            if (f.lines.some((l) => l.url !== b.endpoint || l.method !== 'POST'))
                return violation(res, 400, GROQ_ERR("a line's url is not the batch's endpoint", 'invalid_url'), 'line url');
            stats.windows.push(b.completion_window);
            stats.endpoints.push(b.endpoint);
            const id = `batch_${provider}_${++seq}`;
            const st = { id, endpoint: b.endpoint, input_file_id: b.input_file_id, completion_window: b.completion_window,
                status: 'validating', lines: f.lines, created_at: now(), polls: 0, errors: [], metadata: b.metadata };
            batches.set(id, st);
            return send(res, 200, batchObject(st));
        }
        if (req.method === 'GET' && (m = /^\/batches\/([^/]+)$/.exec(p))) {
            const b = batches.get(m[1]);
            if (!b) return send(res, 404, GROQ_ERR('batch not found', 'not_found'));
            stats.polls++;
            b.polls++;
            if (b.status === 'validating') {
                b.status = 'in_progress';
                b.in_progress_at = now();
            } else if (b.status === 'in_progress' && b.polls > slowPolls) {
                b.status = P.finalizing;
            } else if (b.status === P.finalizing) {
                finish(b);
            }
            return send(res, 200, batchObject(b));
        }
        if (req.method === 'GET' && (m = /^\/files\/([^/]+)\/content$/.exec(p))) {
            const f = files.get(m[1]);
            if (!f) return send(res, 404, GROQ_ERR('file not found', 'not_found'));
            res.writeHead(200, { 'content-type': 'application/octet-stream' });
            return res.end(f.text);
        }
        return send(res, 404, GROQ_ERR(`no route ${req.method} ${p}`, 'unknown_url'));
    };

    const server = http.createServer((req, res) => {
        const chunks = [];
        req.on('data', (c) => chunks.push(c));
        req.on('end', () => {
            try {
                route(req, res, Buffer.concat(chunks));
            } catch (e) {
                stats.violations.push(`mock error: ${e.message}`);
                send(res, 500, { error: { message: String(e) } });
            }
        });
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    const port = server.address().port;
    return {
        url: `http://127.0.0.1:${port}${P.prefix}`,
        stats,
        batches,
        close: () => new Promise((r) => server.close(r)),
    };
}
