// prefix_prompts.mjs — the prompts of bench/prefix.sh: one long shared instruction followed
// by a short unique item per request ("shared"), or prompts of the same length with
// nothing in common ("unique").
//
//   node bench/lib/prefix_prompts.mjs --mode shared --n 256 --shared-tokens 1500 \
//        --item-tokens 48 --max-tokens 32 --model bench --batch OUT.jsonl --list OUT.json
//   node bench/lib/prefix_prompts.mjs --mode unique --n 256 --shared-tokens 1500 --item-tokens 48 ...
//
// Text is built from lowercase common English words that the Qwen2 BPE vocabulary holds as
// single tokens with their leading space, in "sentences" of 11 words and a period (the
// period is a token of its own), so a piece of T tokens is exactly T tokens long as long as
// the first word of a prompt is one token without its space too (all these words are). The
// benchmark does not rely on that: it reports the counts both engines give back.
//
//   shared: prompt i = INSTRUCTION (shared-tokens, the same for all) + ITEM_i (item-tokens).
//           Item i starts with a word no other item starts with, so two prompts share
//           exactly the instruction and nothing more.
//   unique: prompt i = shared-tokens + item-tokens tokens of its own; prompt i starts with a
//           word no other prompt starts with, so no two prompts share even one token.
//
// --batch writes an OpenAI Batch input file (POST /v1/completions lines) for nightshift;
// --list writes a JSON array of the same prompt strings for the llama-server client
// (bench/lib/client.mjs). Prints {mode, n, tokens_per_prompt, shared_tokens, item_tokens}.
import { writeFileSync } from 'node:fs';
import { mulberry32 } from './rand.mjs';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, arr) => (a.startsWith('--') ? acc.concat([[a.slice(2), arr[i + 1]]]) : acc), []));
const MODE = args.mode ?? 'shared';
const N = parseInt(args.n ?? '256', 10);
const SHARED = parseInt(args['shared-tokens'] ?? '1500', 10);
const ITEM = parseInt(args['item-tokens'] ?? '48', 10);
const MAX_TOKENS = parseInt(args['max-tokens'] ?? '32', 10);
const MODEL = args.model ?? 'bench';
const SEED = parseInt(args.seed ?? '4242', 10);
if (!['shared', 'unique'].includes(MODE)) throw new Error(`--mode must be shared or unique, not ${MODE}`);
for (const [k, v] of Object.entries({ N, SHARED, ITEM, MAX_TOKENS }))
  if (!(v > 0)) throw new Error(`${k} must be a positive integer`);

const VOCAB = [...new Set(`time year people way day man thing woman life child world school state family student group
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
lead understand remember consider appear allow begin grow walk win animal answer ball bank bed bird board boat
bread brother card chair church coach color culture cup daughter dog dream dress east economy energy evening fire
fish floor food fruit garden glass gold island kitchen king lake language letter list machine manager map memory
message metal milk mission moon mouth nature ocean owner page pain paper pair park peace plane plant pool radio rain
river rock salt science sea seat ship shoe shop sister skin sky snow soil soldier sound south speech spring square
staff stage station stone store sun task tea theory tour track trade train travel trip unit visit weight west wheel
wine winter wood yard`.split(/\s+/).filter(Boolean))];
if (N > VOCAB.length) throw new Error(`--n ${N}: at most ${VOCAB.length} prompts have distinct first words`);

// `tokens` tokens of text: words with a period as every 12th token (and as the last one);
// `first` (optional) is the first word; `lead` says whether the piece starts with a space.
function piece(rnd, tokens, first, lead) {
  let s = '';
  for (let k = 0; k < tokens; k++) {
    if (k % 12 === 11 || (k === tokens - 1 && k > 0)) { s += '.'; continue; }
    const w = k === 0 && first ? first : VOCAB[Math.floor(rnd() * VOCAB.length)];
    s += (k === 0 && !lead ? '' : ' ') + w;
  }
  return s;
}

// which distinct first word prompt/item i gets: a seeded permutation of the vocabulary
const perm = VOCAB.map((w, i) => [mulberry32(SEED * 7 + i)(), w]).sort((a, b) => a[0] - b[0]).map((x) => x[1]);

const prompts = [];
const seen = new Set();
const instruction = MODE === 'shared' ? piece(mulberry32(SEED), SHARED, null, false) : '';
for (let i = 0; i < N; i++) {
  const rnd = mulberry32(SEED * 1000003 + i + 1);
  const text = MODE === 'shared'
    ? instruction + piece(rnd, ITEM, perm[i], true)
    : piece(rnd, SHARED + ITEM, perm[i], false);
  if (seen.has(text)) throw new Error('duplicate prompt');
  seen.add(text);
  prompts.push(text);
}

if (args.batch) {
  const lines = prompts.map((p, i) => JSON.stringify({
    custom_id: `req-${i}`, method: 'POST', url: '/v1/completions',
    body: { model: MODEL, prompt: p, max_tokens: MAX_TOKENS, temperature: 0, ignore_eos: true },
  }));
  writeFileSync(args.batch, lines.join('\n') + '\n');
}
if (args.list) writeFileSync(args.list, JSON.stringify(prompts));
console.log(JSON.stringify({ mode: MODE, n: N, tokens_per_prompt: SHARED + ITEM,
  shared_tokens: MODE === 'shared' ? SHARED : 0, item_tokens: MODE === 'shared' ? ITEM : SHARED + ITEM }));
