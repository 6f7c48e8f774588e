// timeproc.mjs — run a command, timing it from spawn to exit and from spawn to the first
// stderr line matching a pattern (for nightshift: "nightshift: model ...", printed once the
// model is loaded and the context created, before the first request is decoded).
//
//   node bench/lib/timeproc.mjs --mark '^nightshift: model ' --out T.json --log L.txt -- CMD ARGS...
//
// Writes {rc, total_seconds, mark_seconds (null if never seen), after_mark_seconds,
// user_seconds, sys_seconds} (CPU times of the child from /usr/bin/time when present).
// stderr of the command goes to --log.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const argv = process.argv.slice(2);
const dd = argv.indexOf('--');
if (dd < 0) { console.error('usage: timeproc.mjs [--mark RE] [--out F] [--log F] -- CMD ...'); process.exit(2); }
const opts = {};
for (let i = 0; i < dd; i += 2) opts[argv[i].replace(/^--/, '')] = argv[i + 1];
let cmd = argv.slice(dd + 1);
const mark = opts.mark ? new RegExp(opts.mark) : null;
const tdir = mkdtempSync(join(tmpdir(), 'timeproc-'));
const tfile = join(tdir, 'time');
if (existsSync('/usr/bin/time')) cmd = ['/usr/bin/time', '-f', '%U %S', '-o', tfile, ...cmd];

const log = opts.log ? createWriteStream(opts.log) : null;
const t0 = performance.now();
let tMark = null, buf = '';
const child = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
child.stdout.on('data', (d) => log?.write(d));
child.stderr.on('data', (d) => {
  const now = performance.now();
  log?.write(d);
  if (mark && tMark === null) {
    buf += d.toString('utf8');
    for (const line of buf.split('\n')) if (mark.test(line)) { tMark = now; break; }
    buf = buf.slice(buf.lastIndexOf('\n') + 1);
  }
});
child.on('close', (code) => {
  const t1 = performance.now();
  let user = null, sys = null;
  try {
    const f = readFileSync(tfile, 'utf8').trim().split('\n').pop().split(/\s+/).map(Number);
    if (f.length === 2 && f.every(Number.isFinite)) [user, sys] = f;
  } catch { /* no /usr/bin/time */ }
  rmSync(tdir, { recursive: true, force: true });
  const r = {
    rc: code, total_seconds: (t1 - t0) / 1000,
    mark_seconds: tMark === null ? null : (tMark - t0) / 1000,
    after_mark_seconds: tMark === null ? null : (t1 - tMark) / 1000,
    user_seconds: user, sys_seconds: sys,
  };
  const s = JSON.stringify(r);
  if (opts.out) writeFileSync(opts.out, s + '\n');
  log?.end();
  console.log(s);
  process.exit(code ?? 1);
});
