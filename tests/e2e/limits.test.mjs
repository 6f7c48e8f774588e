// Connection limits of `nightshift serve`: --max-connections is checked, the server raises
// its soft descriptor limit itself (systemd starts services with 1024) and lowers the
// connection limit, with a warning, when even the hard limit is too small. The load itself
// is tests/load/wrk.sh (CTest load_wrk).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN, SPM_VOCAB, startServer, killHard, api } from './lib.mjs';

let dir, model;

before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ns-limits-'));
    model = path.join(dir, 'tiny.gguf');
    execFileSync(BIN, ['gen-model', '--vocab', SPM_VOCAB, '-o', model]);
});

after(() => {
    if (!process.env.NIGHTSHIFT_E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
});

test('--max-connections must be a positive integer', () => {
    for (const v of ['0', '-5', 'lots', '1e3']) {
        const r = spawnSync(BIN, ['serve', '--max-connections', v, '--model', model], { encoding: 'utf8' });
        assert.equal(r.status, 2, r.stderr);
        assert.match(r.stderr, /--max-connections must be an integer from 1 to 1000000/);
    }
});

const hasPrlimit = spawnSync('prlimit', ['--version']).status === 0;

test('the soft descriptor limit is raised to the hard one; a hard limit too low lowers --max-connections', { skip: !hasPrlimit && 'no prlimit', timeout: 120_000 }, async () => {
    // soft 256, hard 256: 256 - 128 descriptors kept for the rest = 128 connections
    const s = await startServer(['--model', `tiny=${model}`, '--data-dir', path.join(dir, 'd1'), '--threads', '1',
        '--parallel', '2', '--ctx', '1024'], { wrap: ['prlimit', '--nofile=256:256'] });
    try {
        assert.match(s.stderr(), /--max-connections 4096 is more than the descriptor limit allows \(ulimit -n 256\): 128 connections/);
        assert.equal((await api(s, 'GET', '/health')).status, 200);
    } finally {
        await killHard(s);
    }
    // soft 256, hard 8192: raised, no warning
    const s2 = await startServer(['--model', `tiny=${model}`, '--data-dir', path.join(dir, 'd2'), '--threads', '1',
        '--parallel', '2', '--ctx', '1024'], { wrap: ['prlimit', '--nofile=256:8192'] });
    try {
        const limit = fs.readFileSync(`/proc/${s2.child.pid}/limits`, 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
        assert.match(limit, /^Max open files\s+8192\s+8192\s/);
        assert.doesNotMatch(s2.stderr(), /descriptor limit/);
    } finally {
        await killHard(s2);
    }
});
