// client.mjs — drive llama-server with a fixed concurrency, for bench/core.sh.
//
//   node bench/lib/client.mjs --url http://127.0.0.1:PORT --prompts LIST.json \
//        --concurrency K --max-tokens 64 [--out RESULT.json]
//
// Keeps exactly K requests in flight (one keep-alive connection each) until every prompt
// has an answer; POST /v1/completions {prompt, max_tokens, temperature 0, ignore_eos,
// cache_prompt}. An entry of LIST is a prompt string (max_tokens from --max-tokens) or
// {prompt, max_tokens} (heavy-tailed workloads); expected_tokens is the sum of max_tokens. Wall time runs from the first send to the last answer. Prints (and
// writes to --out) a JSON object: wall_seconds, requests, failures, prompt_tokens (usage),
// prompt_n (timings: tokens the server computed), predicted_n, completion_tokens,
// short (answers with fewer than max_tokens tokens), client_cpu_seconds.
// node:http rather than fetch: fetch's default 300 s header timeout can fire on a slow,
// shared machine; here nothing times out.
import http from 'node:http';
import { readFileSync, writeFileSync } from 'node:fs';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, arr) => (a.startsWith('--') ? acc.concat([[a.slice(2), arr[i + 1]]]) : acc), []));
const url = new URL(args.url);
const prompts = JSON.parse(readFileSync(args.prompts, 'utf8'));
const K = parseInt(args.concurrency ?? '8', 10);
const MAX_TOKENS = parseInt(args['max-tokens'] ?? '64', 10);
const agent = new http.Agent({ keepAlive: true, maxSockets: K });

function post(path, body) {
  return new Promise((resolve, reject) => {
    const data = Buffer.from(JSON.stringify(body));
    const req = http.request({
      host: url.hostname, port: url.port, path, method: 'POST', agent,
      headers: { 'content-type': 'application/json', 'content-length': data.length },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 300)}`));
        try { resolve(JSON.parse(text)); } catch (e) { reject(new Error(`bad JSON: ${text.slice(0, 300)}`)); }
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(data);
  });
}

const item = (i) => (typeof prompts[i] === 'string' ? { prompt: prompts[i], max_tokens: MAX_TOKENS } : prompts[i]);
const st = { requests: prompts.length, expected_tokens: prompts.reduce((a, _, i) => a + item(i).max_tokens, 0), failures: 0, prompt_tokens: 0, prompt_n: 0, predicted_n: 0,
             completion_tokens: 0, short: 0, errors: [] };
let next = 0;
async function worker() {
  while (next < prompts.length) {
    const i = next++;
    const { prompt, max_tokens } = item(i);
    try {
      const j = await post('/v1/completions', {
        prompt, max_tokens, n_predict: max_tokens, temperature: 0,
        ignore_eos: true, cache_prompt: true,
      });
      const ct = j.usage?.completion_tokens ?? j.timings?.predicted_n ?? 0;
      st.prompt_tokens += j.usage?.prompt_tokens ?? 0;
      st.prompt_n += j.timings?.prompt_n ?? 0;
      st.predicted_n += j.timings?.predicted_n ?? 0;
      st.completion_tokens += ct;
      if (ct < max_tokens) st.short++;
    } catch (e) {
      st.failures++;
      if (st.errors.length < 5) st.errors.push(String(e.message ?? e));
    }
  }
}

const t0 = performance.now();
await Promise.all(Array.from({ length: Math.min(K, prompts.length) }, worker));
st.wall_seconds = (performance.now() - t0) / 1000;
const cu = process.cpuUsage();
st.client_cpu_seconds = (cu.user + cu.system) / 1e6;
agent.destroy();
const out = JSON.stringify(st);
if (args.out) writeFileSync(args.out, out + '\n');
console.log(out);
process.exit(st.failures ? 1 : 0);
