// bench/lib/proc.mjs — what the node benchmarks share: --flag value arguments, child
// processes started and killed with the benchmark, a temporary directory removed at exit,
// and a process's CPU time from /proc.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/* --name value pairs (a flag with no value is 'true') */
export function parseArgs(argv = process.argv.slice(2)) {
    return Object.fromEntries(argv.reduce((a, v, i, all) => {
        if (v.startsWith('--')) a.push([v.slice(2), all[i + 1] && !all[i + 1].startsWith('--') ? all[i + 1] : 'true']);
        return a;
    }, []));
}

/* YYYYMMDD-HHMMSS, for result file names */
export const stamp = () => new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);

const children = [];
const dirs = [];
process.on('exit', () => {
    for (const c of children) c.kill('SIGKILL');
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/* a temporary directory, removed when the process exits */
export function tmpDir(prefix) {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    dirs.push(d);
    return d;
}

/* spawn cmd; resolves { child, port } once its output matches re (whose group 1 is the
 * port); the child is killed when this process exits */
export function startChild(cmd, argv, re) {
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let out = '';
    return new Promise((resolve, reject) => {
        const on = (d) => {
            out += d;
            const m = re.exec(out);
            if (m) resolve({ child, port: Number(m[1]) });
        };
        child.stdout.on('data', on);
        child.stderr.on('data', on);
        child.on('exit', (code) => reject(new Error(`${cmd} exited (${code}):\n${out}`)));
    });
}

const TICK = 100; /* clock ticks per second of /proc/PID/stat (USER_HZ) on Linux */

/* the fields of /proc/PID/stat after the command name; null when the process is gone */
export function procStat(pid) {
    try {
        const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
        return f.slice(f.lastIndexOf(')') + 2).split(' ');
    } catch {
        return null;
    }
}

/* user + system CPU seconds of a process (and, with children, of its waited-for children) */
export function cpuSeconds(pid, children = false) {
    const f = procStat(pid);
    if (!f) return 0;
    return (Number(f[11]) + Number(f[12]) + (children ? Number(f[13]) + Number(f[14]) : 0)) / TICK;
}

/* upload n chat lines (model, max_tokens 1) to the server on port and create a batch of them;
 * resolves to the batch id */
export async function submitChatBatch(port, n, model) {
    const lines = Array.from({ length: n }, (_, i) => JSON.stringify({ custom_id: `r${i}`, method: 'POST', url: '/v1/chat/completions',
        body: { model, messages: [{ role: 'user', content: `Classify item ${i}: the parcel arrived late.` }], max_tokens: 1 } }));
    const form = new FormData();
    form.append('purpose', 'batch');
    form.append('file', new Blob([lines.join('\n') + '\n']), 'in.jsonl');
    const up = await (await fetch(`http://127.0.0.1:${port}/v1/files`, { method: 'POST', body: form })).json();
    const b = await (await fetch(`http://127.0.0.1:${port}/v1/batches`, { method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ input_file_id: up.id, endpoint: '/v1/chat/completions', completion_window: '24h' }) })).json();
    return b.id;
}
