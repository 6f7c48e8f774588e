// prompts.mjs — N unique pseudo-English prompts of about the same token count, for bench/core.sh.
//
//   node bench/lib/prompts.mjs --n 256 --words 190 --max-tokens 64 --model bench \
//        --batch OUT.jsonl --list OUT.json
//
// Every prompt starts with a different word sequence (a seeded PRNG per prompt), so no
// two prompts share more than a token or two of prefix: neither side gets prefix reuse.
// The words are common English words that the Qwen2 BPE vocabulary holds as single
// tokens (with their leading space), so --words W gives about W + 6 tokens; the benchmark
// prints the real counts as both engines report them.
//
// --batch writes an OpenAI Batch input file (POST /v1/completions lines) for nightshift;
// --list writes a JSON array of the same prompt strings for the llama-server client.
//
// Heavy-tailed lengths (--dist lognormal): prompt i has W_i words and max_tokens G_i, each
// drawn from a log-normal distribution (median --words / --max-tokens, shape --sigma,
// default 1.0: mean ≈ 1.6 × median, the top 1% ≈ 10 × median), clipped to
// [--min-words, --max-words] and [1, --max-gen]; seeded (--seed), so both sides and every
// run get the same lengths. --list then holds {prompt, max_tokens} objects, and --stats FILE
// gets {requests, words_max, words_sum, max_tokens_sum, max_tokens_max, percentiles}.
import { writeFileSync } from 'node:fs';
import { mulberry32 } from './rand.mjs';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, arr) => (a.startsWith('--') ? acc.concat([[a.slice(2), arr[i + 1]]]) : acc), []));
const N = parseInt(args.n ?? '256', 10);
const WORDS = parseInt(args.words ?? '190', 10);
const MAX_TOKENS = parseInt(args['max-tokens'] ?? '64', 10);
const MODEL = args.model ?? 'bench';
const SEED = parseInt(args.seed ?? '12345', 10);
const DIST = args.dist ?? 'fixed';
const SIGMA = Number(args.sigma ?? '1.0');
const MIN_WORDS = parseInt(args['min-words'] ?? '8', 10);
const MAX_WORDS = parseInt(args['max-words'] ?? String(WORDS * 8), 10);
const MAX_GEN = parseInt(args['max-gen'] ?? String(MAX_TOKENS * 8), 10);
if (DIST !== 'fixed' && DIST !== 'lognormal') throw new Error(`--dist must be fixed or lognormal, not ${DIST}`);

const VOCAB = (`time year people way day man thing woman life child world school state family student group
country problem hand part place case week company system program question work government number night point
home water room mother area money story fact month lot right study book eye job word business issue side kind
head house service friend father power hour game line end member law car city community name president team
minute idea kid body information back parent face others level office door health person art war history party
result change morning reason research girl guy moment air teacher force education foot boy age policy music
market sense nation plan college interest death experience effect use class control care field development role
effort rate heart drug show leader light voice wife police mind price report decision son view relationship town
road arm difference value building action model season society tax director position player record paper space
ground form event official matter center couple site project activity star table need court oil situation cost
industry figure street image phone data picture practice piece land product doctor wall patient worker news test
movie north love support technology step baby computer type attention film tree source organization hair window
evidence population truth song quickly slowly often never always green blue red small large early late open close
bring carry build write read speak listen watch follow create offer serve develop happen include continue learn
change lead understand remember consider appear allow begin grow walk win offer`).split(/\s+/).filter(Boolean);

// log-normal draw with the given median: exp(ln(median) + sigma * z), z standard normal
// (Box-Muller on the lengths' own seeded stream)
const lengths = mulberry32(SEED * 7919 + 17);
const lognormal = (median) => {
  const u1 = Math.max(lengths(), 1e-12), u2 = lengths();
  const z = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  return median * Math.exp(SIGMA * z);
};
const clip = (x, lo, hi) => Math.min(hi, Math.max(lo, Math.round(x)));
const nWords = [], maxTokens = [];
for (let i = 0; i < N; i++) {
  nWords.push(DIST === 'fixed' ? WORDS : clip(lognormal(WORDS), MIN_WORDS, MAX_WORDS));
  maxTokens.push(DIST === 'fixed' ? MAX_TOKENS : clip(lognormal(MAX_TOKENS), 1, MAX_GEN));
}

const prompts = [];
const seen = new Set();
for (let i = 0; i < N; i++) {
  const rnd = mulberry32(SEED * 1000003 + i);
  const w = [];
  for (let k = 0; k < nWords[i]; k++) w.push(VOCAB[Math.floor(rnd() * VOCAB.length)]);
  // a sentence-ish shape: capital first letter, a period every 12 words
  let text = '';
  for (let k = 0; k < w.length; k++) {
    let word = w[k];
    if (k % 12 === 0) word = word[0].toUpperCase() + word.slice(1);
    text += (k ? ' ' : '') + word + (k % 12 === 11 ? '.' : '');
  }
  text += ` (note ${i}).`;
  if (seen.has(text)) throw new Error('duplicate prompt');
  seen.add(text);
  prompts.push(text);
}

if (args.batch) {
  const lines = prompts.map((p, i) => JSON.stringify({
    custom_id: `req-${i}`, method: 'POST', url: '/v1/completions',
    body: { model: MODEL, prompt: p, max_tokens: maxTokens[i], temperature: 0, ignore_eos: true },
  }));
  writeFileSync(args.batch, lines.join('\n') + '\n');
}
if (args.list)
  writeFileSync(args.list, JSON.stringify(DIST === 'fixed' ? prompts : prompts.map((p, i) => ({ prompt: p, max_tokens: maxTokens[i] }))));
if (args.stats) {
  const pct = (a, q) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(q * s.length))]; };
  const sum = (a) => a.reduce((x, y) => x + y, 0);
  writeFileSync(args.stats, JSON.stringify({
    requests: N, dist: DIST, sigma: SIGMA,
    words_min: Math.min(...nWords), words_p50: pct(nWords, 0.5), words_p90: pct(nWords, 0.9), words_p99: pct(nWords, 0.99),
    words_max: Math.max(...nWords), words_sum: sum(nWords),
    max_tokens_min: Math.min(...maxTokens), max_tokens_p50: pct(maxTokens, 0.5), max_tokens_p90: pct(maxTokens, 0.9),
    max_tokens_p99: pct(maxTokens, 0.99), max_tokens_max: Math.max(...maxTokens), max_tokens_sum: sum(maxTokens),
  }) + '\n');
}
