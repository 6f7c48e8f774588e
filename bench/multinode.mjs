// bench/multinode.mjs — how one batch's throughput scales from 1 to 3 nightshift nodes
// sharing one PostgreSQL database (issue 9), and what the shared queue costs per line.
//
//   node bench/multinode.mjs [--bin build/nightshift] [--lines 3000] [--delay-ms 20]
//                            [--concurrency 8] [--nodes 3] [--out bench/results/multinode-....md]
//
// Each node runs an openai-http model in front of bench/lib/instant_upstream.mjs with a fixed
// delay per request, so one node's ceiling is concurrency / delay lines per second and the
// scaling of the queue itself is what shows. Phases, in one run:
//   sqlite    one node on the embedded SQLite store (the anchor)
//   pg-N      N = 1..nodes nodes on one PostgreSQL database (a fresh database each), the
//             batch submitted to node 0
// Printed per phase: lines/s, speedup over pg-1, efficiency against N x the one-node ceiling,
// and the CPU per line of the nightshift nodes (all together) and of the PostgreSQL server
// (postmaster and its backends): the claim/commit overhead of the shared queue.
// A benchmark: it prints, it never fails on time. The PostgreSQL server is Debian's, started
// in a temporary directory (tests/e2e/pg_lib.mjs).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { postgresSync } from '../tests/e2e/pg_lib.mjs';
import { cpuSeconds, parseArgs, procStat, stamp, startChild, submitChatBatch, tmpDir } from './lib/proc.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const args = parseArgs();
const BIN = path.resolve(args.bin || path.join(HERE, '..', 'build', 'nightshift'));
const LINES = Number(args.lines || 3000);
const DELAY = Number(args['delay-ms'] || 20);
const CONC = Number(args.concurrency || 8);
const MAXN = Number(args.nodes || 3);
const OUT = args.out || path.join(HERE, 'results', `multinode-${stamp()}.md`);
const dir = tmpDir('ns-multinode-');

/* CPU seconds of the PostgreSQL server: the postmaster (with the backends of connections
 * that ended, which it waited for) and every process still under it */
function pgCpu(postmaster) {
    let total = cpuSeconds(postmaster, true);
    for (const p of fs.readdirSync('/proc')) {
        if (!/^\d+$/.test(p) || Number(p) === postmaster) continue;
        const f = procStat(p);
        if (f && Number(f[1]) === postmaster) total += cpuSeconds(Number(p));
    }
    return total;
}

async function phase(name, n, db, postmaster) {
    const nodes = [];
    for (let i = 0; i < n; i++) {
        const ini = path.join(dir, `${name}-${i}.ini`);
        fs.writeFileSync(ini, `[server]\ndata-dir = ${path.join(dir, `${name}-${i}`)}\n${db ? `db = ${db}\n` : ''}\n` +
            `[model fixed]\nbackend = openai-http\nurl = http://127.0.0.1:${UP.port}/v1\nconcurrency = ${CONC}\n`);
        nodes.push(await startChild(BIN, ['serve', '--config', ini, '--listen', '127.0.0.1:0'], /listening on http:\/\/127\.0\.0\.1:(\d+)/));
    }
    const cpu0 = nodes.reduce((a, x) => a + cpuSeconds(x.child.pid), 0);
    const pg0 = postmaster ? pgCpu(postmaster) : 0;
    const t0 = performance.now();
    const id = await submitChatBatch(nodes[0].port, LINES, 'fixed');
    let b;
    for (;;) {
        b = await (await fetch(`http://127.0.0.1:${nodes[0].port}/v1/batches/${id}`)).json();
        if (['completed', 'failed', 'expired', 'cancelled'].includes(b.status)) break;
        await new Promise((r) => setTimeout(r, 50));
    }
    const sec = (performance.now() - t0) / 1000;
    const cpu = nodes.reduce((a, x) => a + cpuSeconds(x.child.pid), 0) - cpu0;
    const pg = postmaster ? pgCpu(postmaster) - pg0 : 0;
    for (const x of nodes) x.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    console.error(`multinode: ${name}: ${LINES} lines in ${sec.toFixed(2)} s (${b.status})`);
    return { name, n, sec, rps: LINES / sec, cpuUs: (cpu / LINES) * 1e6, pgUs: (pg / LINES) * 1e6, ok: b.request_counts.completed };
}

const UP = await startChild(process.execPath, [path.join(HERE, 'lib', 'instant_upstream.mjs'), '--delay-ms', String(DELAY)], /PORT (\d+)/);
const PG = postgresSync();
const postmaster = Number(fs.readFileSync(path.join(PG.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
const ceiling = (CONC / DELAY) * 1000;

const results = [await phase('sqlite', 1, null, 0)];
for (let n = 1; n <= MAXN; n++) results.push(await phase(`pg-${n}`, n, PG.createDb(`bench_${n}`), postmaster));

const base = results.find((r) => r.name === 'pg-1');
const rows = [
    `# multi-node benchmark ${stamp()}`,
    '',
    `Machine: ${os.cpus()[0].model}, ${os.cpus().length} CPUs; every node, the upstream and PostgreSQL ${fs.readdirSync('/usr/lib/postgresql').join(',')} on it.`,
    `Workload: one batch of ${LINES} lines; each node an openai-http model with concurrency ${CONC} in front of an upstream that answers after ${DELAY} ms ` +
        `(one node's ceiling: ${ceiling.toFixed(0)} lines/s).`,
    `Command: \`node bench/multinode.mjs --lines ${LINES} --delay-ms ${DELAY} --concurrency ${CONC} --nodes ${MAXN}\``,
    '',
    '| phase | nodes | seconds | lines/s | speedup vs pg-1 | efficiency vs N x ceiling | nightshift CPU µs/line | PostgreSQL CPU µs/line | ok |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...results.map((r) => `| ${r.name} | ${r.n} | ${r.sec.toFixed(2)} | ${r.rps.toFixed(0)} | ${(r.rps / base.rps).toFixed(2)} | ` +
        `${((r.rps / (r.n * ceiling)) * 100).toFixed(0)}% | ${r.cpuUs.toFixed(0)} | ${r.name === 'sqlite' ? '–' : r.pgUs.toFixed(0)} | ${r.ok} |`),
    '',
    `pg-1 / sqlite (the cost of the shared store on one node): ${(base.rps / results[0].rps).toFixed(2)}x the lines/s.`,
    `Claim/commit overhead of the shared queue per line: ${(base.cpuUs + base.pgUs).toFixed(0)} µs CPU at one node ` +
        `(nightshift ${base.cpuUs.toFixed(0)} + PostgreSQL ${base.pgUs.toFixed(0)}; the SQLite node spends ${results[0].cpuUs.toFixed(0)} µs in all).`,
];
const text = rows.join('\n') + '\n';
fs.mkdirSync(path.dirname(OUT), { recursive: true });
fs.writeFileSync(OUT, text);
console.log(text);
console.error(`multinode: written to ${OUT}`);
process.exit(0);
