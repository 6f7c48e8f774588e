// bench/lib/instant_upstream.mjs — a minimal OpenAI-compatible upstream that answers every
// POST .../chat/completions at once with the same small chat.completion, so that what a
// benchmark measures in front of it is the forwarding, not the model.
//
//   node bench/lib/instant_upstream.mjs [--delay-ms N]
//   (prints "PORT <n>" once listening on 127.0.0.1; --delay-ms: answer after N ms, a fixed
//   cost per request, for benchmarks of the queue rather than of the forwarding)
import http from 'node:http';

const answer = (model) =>
    JSON.stringify({
        id: 'chatcmpl-instant',
        object: 'chat.completion',
        created: 0,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 12, completion_tokens: 1, total_tokens: 13 },
    });

const di = process.argv.indexOf('--delay-ms');
const DELAY = di > 0 ? Number(process.argv[di + 1]) : 0;

const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
        let model = 'instant';
        try {
            model = JSON.parse(body).model || model;
        } catch {
            /* answer anyway */
        }
        const out = answer(model);
        const send = () => {
            res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
            res.end(out);
        };
        if (DELAY > 0) setTimeout(send, DELAY);
        else send();
    });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => console.log(`PORT ${server.address().port}`));
