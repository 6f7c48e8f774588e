// A mock of Google's Gemini Batch Mode API for the gemini-batch backend's tests: the Files
// API's resumable upload (start, then "upload, finalize" on the session URL it answers),
// models/{model}:batchGenerateContent with inline requests or an uploaded file, batches/{id}
// (GET, :cancel) and the batch list, and the responses file download. Jobs go
// BATCH_STATE_PENDING -> RUNNING -> SUCCEEDED over their polls (pendingPolls, runningPolls),
// or stay RUNNING while `hold` is set.
//
// Answers are made from the request, so a test can check the translation went through:
//   tools declared          -> a functionCall of the first tool, args {"city": "Paris"}
//   responseMimeType json   -> the text {"answer": "<last user text>"}
//   otherwise               -> the text "echo: <last user text>"
// and a user text containing FAIL400 answers that line with an INVALID_ARGUMENT status,
// FLAKY with an UNAVAILABLE (503) status the first time it is seen, EXPIRE makes the first
// job holding it end BATCH_STATE_EXPIRED without output.
//
// Faults: faults.create / .poll / .upload / .download are lists of HTTP codes answered to
// the next calls of that kind (429, 503, ...), each once. Everything seen is counted in
// `stats` (creations, uploads, downloads, cancels, polls; every created job in `jobs`).
import http from 'node:http';

export async function startGeminiMock({ key }) {
    const m = {
        key,
        hold: false,
        inlineNoMetadata: false, // inline responses without their request's metadata
        dropCreate: false, // create calls are left unanswered and make no job
        createDelayMs: 0, // the create call's answer is this late (the job exists already)
        // malformed answers, each given to that many calls: an upload start without
        // X-Goog-Upload-URL, a finalize without a file name, a create without a batch name
        // (no job made), a create or poll answer that is not JSON
        bad: { startNoUrl: 0, finalizeNoName: 0, createNoName: 0, createNotJson: 0, pollNotJson: 0 },
        pendingPolls: 1,
        runningPolls: 1,
        faults: { create: [], poll: [], upload: [], download: [] },
        stats: { dropped: 0, creations: 0, uploads: 0, downloads: 0, cancels: 0, polls: 0, faults: 0, badKey: 0, uploadHeaders: [] },
        jobs: new Map(), // name -> job
        files: new Map(), // files/x -> text
        sessions: new Map(), // upload session id -> { display }
        seenFlaky: new Set(),
        expiredOnce: false,
    };
    let nextId = 1;

    const send = (res, code, obj, headers = {}) => {
        const body = typeof obj === 'string' ? obj : JSON.stringify(obj);
        res.writeHead(code, { 'content-type': 'application/json', ...headers });
        res.end(body);
    };
    const gerr = (res, code, status, message) => send(res, code, { error: { code, message, status } });
    const bad = (what) => (m.bad[what] > 0 ? (m.bad[what]--, m.stats.faults++, true) : false);
    const fault = (kind, res) => {
        const c = m.faults[kind].shift();
        if (!c) return false;
        m.stats.faults++;
        gerr(res, c, c === 429 ? 'RESOURCE_EXHAUSTED' : 'UNAVAILABLE', `injected ${c} on ${kind}`);
        return true;
    };

    const lastUserText = (req) => {
        const users = (req.contents || []).filter((c) => c.role === 'user');
        const parts = users.length ? users[users.length - 1].parts || [] : [];
        return parts.map((p) => p.text || '').join('');
    };
    const answer = (req) => {
        const text = lastUserText(req);
        if (text.includes('FAIL400')) return { error: { code: 400, message: 'Request contains an invalid argument (FAIL400).', status: 'INVALID_ARGUMENT' } };
        if (text.includes('FLAKY') && !m.seenFlaky.has(text)) {
            m.seenFlaky.add(text);
            return { error: { code: 503, message: 'The model is overloaded.', status: 'UNAVAILABLE' } };
        }
        const decl = req.tools?.[0]?.functionDeclarations?.[0];
        const usageMetadata = { promptTokenCount: 11, candidatesTokenCount: 5, thoughtsTokenCount: 2, totalTokenCount: 18 };
        if (decl)
            return { response: { candidates: [{ content: { role: 'model', parts: [{ functionCall: { name: decl.name, args: { city: 'Paris' } } }] }, finishReason: 'STOP' }], usageMetadata } };
        const json = req.generationConfig?.responseMimeType === 'application/json';
        const out = json ? JSON.stringify({ answer: text }) : `echo: ${text}`;
        return { response: { candidates: [{ content: { role: 'model', parts: [{ text: 'hmm', thought: true }, { text: out }] }, finishReason: 'STOP' }], usageMetadata, modelVersion: 'gemini-mock' } };
    };

    const view = (job) => {
        const md = { '@type': 'type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch', name: job.name, displayName: job.display, model: job.model, state: job.state };
        const o = { name: job.name, metadata: md };
        if (job.output) {
            o.done = true;
            md.output = job.output;
            o.response = { '@type': 'type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput', ...job.output };
        } else if (['BATCH_STATE_EXPIRED', 'BATCH_STATE_CANCELLED', 'BATCH_STATE_FAILED'].includes(job.state)) {
            o.done = true;
        }
        return o;
    };

    const finish = (job) => {
        if (job.requests.some((r) => lastUserText(r.request).includes('EXPIRE')) && !m.expiredOnce) {
            m.expiredOnce = true;
            job.state = 'BATCH_STATE_EXPIRED';
            return;
        }
        const results = job.requests.map((r) => ({ ...answer(r.request), key: r.key }));
        job.state = 'BATCH_STATE_SUCCEEDED';
        if (job.fromFile) {
            const name = `files/out-${nextId++}`;
            m.files.set(name, results.map((x) => JSON.stringify(x.error ? { key: x.key, error: x.error } : { key: x.key, response: x.response })).join('\n') + '\n');
            job.output = { responsesFile: name };
        } else {
            const md = (x) => (m.inlineNoMetadata ? {} : { metadata: { key: x.key } }); // order alone then keys them
            job.output = { inlinedResponses: { inlinedResponses: results.map((x) => (x.error ? { error: x.error, ...md(x) } : { response: x.response, ...md(x) })) } };
        }
    };

    const read = (req) => new Promise((resolve) => {
        const chunks = [];
        req.on('data', (c) => chunks.push(c));
        req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    });

    const server = http.createServer(async (req, res) => {
        const body = await read(req);
        const url = new URL(req.url, 'http://x');
        const p = url.pathname;
        if (!p.startsWith('/upload-session/') && req.headers['x-goog-api-key'] !== m.key) {
            m.stats.badKey++;
            return gerr(res, 401, 'UNAUTHENTICATED', 'API key not valid. Please pass a valid API key.');
        }
        if (req.method === 'POST' && p === '/upload/v1beta/files') {
            if (fault('upload', res)) return;
            if (req.headers['x-goog-upload-protocol'] !== 'resumable' || req.headers['x-goog-upload-command'] !== 'start')
                return gerr(res, 400, 'INVALID_ARGUMENT', 'resumable start expected');
            m.stats.uploadHeaders.push({ protocol: req.headers['x-goog-upload-protocol'], length: req.headers['x-goog-upload-header-content-length'], type: req.headers['x-goog-upload-header-content-type'] });
            if (bad('startNoUrl')) return send(res, 200, {});
            const sid = String(nextId++);
            m.sessions.set(sid, { length: Number(req.headers['x-goog-upload-header-content-length']) });
            return send(res, 200, {}, { 'x-goog-upload-url': `http://127.0.0.1:${m.port}/upload-session/${sid}`, 'x-goog-upload-status': 'active' });
        }
        if (req.method === 'POST' && p.startsWith('/upload-session/')) {
            const s = m.sessions.get(p.split('/').pop());
            if (!s || req.headers['x-goog-upload-command'] !== 'upload, finalize' || req.headers['x-goog-upload-offset'] !== '0')
                return gerr(res, 400, 'INVALID_ARGUMENT', 'bad upload session call');
            if (Buffer.byteLength(body) !== s.length) return gerr(res, 400, 'INVALID_ARGUMENT', `length ${Buffer.byteLength(body)} != ${s.length}`);
            if (bad('finalizeNoName')) return send(res, 200, { file: {} });
            const name = `files/in-${nextId++}`;
            m.files.set(name, body);
            m.stats.uploads++;
            return send(res, 200, { file: { name, mimeType: 'application/jsonl', sizeBytes: String(s.length), state: 'ACTIVE' } }, { 'x-goog-upload-status': 'final' });
        }
        let mm;
        if (req.method === 'POST' && (mm = /^\/v1beta\/models\/([^/:]+):batchGenerateContent$/.exec(p))) {
            if (fault('create', res)) return;
            if (m.dropCreate) return void m.stats.dropped++; // never answered, no job made (a kill comes)
            if (bad('createNoName')) return send(res, 200, { metadata: {} });
            if (bad('createNotJson')) return send(res, 200, '<html>busy</html>');
            const b = JSON.parse(body).batch;
            let requests;
            let fromFile = false;
            if (b.inputConfig?.fileName) {
                const text = m.files.get(b.inputConfig.fileName);
                if (text === undefined) return gerr(res, 404, 'NOT_FOUND', `no file ${b.inputConfig.fileName}`);
                requests = text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
                fromFile = true;
            } else {
                requests = b.inputConfig.requests.requests.map((r) => ({ key: r.metadata?.key, request: r.request }));
            }
            m.stats.creations++;
            const job = { name: `batches/job${nextId++}`, display: b.displayName, model: `models/${mm[1]}`, state: 'BATCH_STATE_PENDING', polls: 0, requests, fromFile };
            m.jobs.set(job.name, job);
            if (m.createDelayMs) await new Promise((r) => setTimeout(r, m.createDelayMs)); // a kill may come first
            return send(res, 200, view(job));
        }
        if (req.method === 'GET' && p === '/v1beta/batches') {
            return send(res, 200, { batches: [...m.jobs.values()].map(view) });
        }
        if (req.method === 'POST' && (mm = /^\/v1beta\/(batches\/[^/:]+):cancel$/.exec(p))) {
            const job = m.jobs.get(mm[1]);
            if (!job) return gerr(res, 404, 'NOT_FOUND', 'no such batch');
            m.stats.cancels++;
            if (!job.output) job.state = 'BATCH_STATE_CANCELLED';
            return send(res, 200, {});
        }
        if (req.method === 'GET' && (mm = /^\/v1beta\/(batches\/[^/:]+)$/.exec(p))) {
            if (fault('poll', res)) return;
            if (bad('pollNotJson')) return send(res, 200, 'not json');
            const job = m.jobs.get(mm[1]);
            if (!job) return gerr(res, 404, 'NOT_FOUND', 'no such batch');
            m.stats.polls++;
            if (job.state === 'BATCH_STATE_PENDING' || job.state === 'BATCH_STATE_RUNNING') {
                job.polls++;
                if (m.hold) job.state = job.polls > m.pendingPolls ? 'BATCH_STATE_RUNNING' : job.state;
                else if (job.polls > m.pendingPolls + m.runningPolls) finish(job);
                else if (job.polls > m.pendingPolls) job.state = 'BATCH_STATE_RUNNING';
            }
            return send(res, 200, view(job));
        }
        if (req.method === 'GET' && (mm = /^\/download\/v1beta\/(files\/[^/:]+):download$/.exec(p))) {
            if (fault('download', res)) return;
            if (url.searchParams.get('alt') !== 'media') return gerr(res, 400, 'INVALID_ARGUMENT', 'alt=media expected');
            const text = m.files.get(mm[1]);
            if (text === undefined) return gerr(res, 404, 'NOT_FOUND', 'no such file');
            m.stats.downloads++;
            res.writeHead(200, { 'content-type': 'application/octet-stream' });
            return res.end(text);
        }
        gerr(res, 404, 'NOT_FOUND', `the mock has no ${req.method} ${p}`);
    });
    await new Promise((r) => server.listen(0, '127.0.0.1', r));
    m.port = server.address().port;
    m.url = `http://127.0.0.1:${m.port}`;
    m.close = () => new Promise((r) => server.close(r));
    // end a job from outside, as Google would (cancel / fail it)
    m.endJob = (name, state) => {
        const j = m.jobs.get(name);
        if (j && !j.output) j.state = state;
    };
    return m;
}
