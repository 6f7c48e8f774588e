// `nightshift run --input-format gemini`: Gemini batch lines in, Gemini-shaped results out.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { runNs, describeRun, mkTmp, rmTmp, writeJsonl, readJsonl, SPM_VOCAB } from './lib.mjs';

let dir, model;
before(async () => {
    dir = mkTmp('nightshift-gemini-');
    model = path.join(dir, 'tiny.gguf');
    const r = await runNs(['gen-model', '--vocab', SPM_VOCAB, '-o', model]);
    assert.equal(r.code, 0, describeRun(r));
});
after(() => rmTmp(dir));

const lines = [
    { key: 'g1', request: { contents: [{ role: 'user', parts: [{ text: 'Hello' }] }], generationConfig: { maxOutputTokens: 5, temperature: 0 } } },
    { key: 'g2', request: { system_instruction: { parts: [{ text: 'Be brief' }] }, contents: [{ parts: [{ text: 'Hi' }] },
        { role: 'model', parts: [{ text: 'Hello!' }] }, { role: 'user', parts: [{ text: 'More' }] }],
        generation_config: { max_output_tokens: 4, stop_sequences: ['zzzz'], candidate_count: 2 } } },
    { key: 'g3', request: { contents: [{ role: 'user', parts: [{ inlineData: { mimeType: 'image/png', data: 'AAA' } }] }] } },
    { request: { contents: [{ parts: [{ text: 'x' }] }] } },
    { key: 'g5', request: { contents: [{ parts: [{ text: 'x' }] }], generationConfig: { temperature: 9 } } },
];

test('gemini input: invalid lines fail validation by line, naming the Gemini field', async () => {
    const input = path.join(dir, 'in.jsonl');
    writeJsonl(input, lines);
    const r = await runNs(['run', input, '-o', path.join(dir, 'o1.jsonl'), '--model', model, '--input-format', 'gemini', '-q']);
    assert.equal(r.code, 1, describeRun(r));
    assert.match(r.stderr, /line 3 \[unsupported_part\]: .*inlineData/);
    assert.match(r.stderr, /line 4 \[missing_required_parameter\]: .*key is missing/);
    assert.doesNotMatch(r.stderr, /line [125] \[/);
});

test('gemini input with --skip-invalid: GenerateContentResponse lines and google.rpc.Status errors', async () => {
    const input = path.join(dir, 'in.jsonl');
    writeJsonl(input, lines);
    const out = path.join(dir, 'o2.jsonl');
    const r = await runNs(['run', input, '-o', out, '--model', model, '--input-format', 'gemini', '--skip-invalid', '-q']);
    assert.equal(r.code, 0, describeRun(r));
    const ok = readJsonl(out);
    assert.deepEqual(ok.map((l) => l.key), ['g1', 'g2']);
    for (const l of ok) {
        const c = l.response.candidates[0];
        assert.equal(c.content.role, 'model');
        assert.equal(typeof c.content.parts[0].text, 'string');
        assert.ok(['STOP', 'MAX_TOKENS'].includes(c.finishReason));
        const u = l.response.usageMetadata;
        assert.equal(u.totalTokenCount, u.promptTokenCount + u.candidatesTokenCount);
    }
    assert.equal(ok[0].response.usageMetadata.candidatesTokenCount <= 5, true);
    // candidateCount 2 runs as n = 2: two candidates
    assert.deepEqual(ok[1].response.candidates.map((c) => c.index), [0, 1]);
    const errs = readJsonl(path.join(dir, 'o2.errors.jsonl'));
    assert.deepEqual(errs.map((l) => l.key), ['g3', null, 'g5']);
    for (const e of errs) {
        assert.equal(e.status.code, 3); // INVALID_ARGUMENT
        assert.equal(typeof e.status.message, 'string');
    }
    assert.match(errs[2].status.message, /temperature/);
});

/* issue 27.16: errors name the Gemini fields the user wrote, not the OpenAI ones they ran as */
test('gemini errors say key, candidateCount, stopSequences (not custom_id, n, stop)', async () => {
    const input = path.join(dir, 'names.jsonl');
    const req = (gc) => ({ contents: [{ parts: [{ text: 'x' }] }], generationConfig: { maxOutputTokens: 2, ...gc } });
    writeJsonl(input, [
        { key: 'a', request: req({}) },
        { key: 'a', request: req({}) },
        { key: 'c', request: req({ candidateCount: 100 }) },
        { key: 'd', request: req({ stopSequences: ['1', '2', '3', '4', '5', '6', '7', '8'] }) },
    ]);
    const out = path.join(dir, 'names-out.jsonl');
    const r = await runNs(['run', input, '-o', out, '--model', model, '--input-format', 'gemini', '--skip-invalid', '-q']);
    assert.equal(r.code, 0, describeRun(r));
    const errs = readJsonl(path.join(dir, 'names-out.errors.jsonl'));
    const msg = (k) => errs.filter((e) => e.key === k).map((e) => e.status.message).join(' | ');
    assert.equal(errs.length, 3, JSON.stringify(errs));
    assert.match(msg('a'), /\bkey\b/);
    assert.match(msg('c'), /candidateCount/);
    assert.match(msg('d'), /stopSequences/);
    for (const e of errs) assert.doesNotMatch(e.status.message, /custom_id|'n'|'stop'/, e.status.message);
});
