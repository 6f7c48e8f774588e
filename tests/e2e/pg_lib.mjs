// A real PostgreSQL server for the tests, from Debian's packages: initdb + pg_ctl in a
// temporary directory, listening on a Unix socket only (no TCP port to collide on), run as
// the unprivileged `postgres` user when the tests run as root (initdb refuses root).
// One cluster per test process, started on first use and stopped when the process exits.
//
//   const pg = await postgres();           // { uri(db), createDb(name) -> uri, psql(db, sql) }
//
// No npm imports: only node's own modules.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

function pgBin() {
    const base = '/usr/lib/postgresql';
    let versions = [];
    try {
        versions = fs.readdirSync(base).filter((v) => fs.existsSync(path.join(base, v, 'bin', 'initdb')));
    } catch {
        /* none */
    }
    versions.sort((a, b) => Number(b) - Number(a));
    if (!versions.length)
        throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql (Debian package postgresql; scripts/bootstrap.sh installs it)');
    return path.join(base, versions[0], 'bin');
}

let cluster = null;

function run(cmd, args, asUser) {
    const full = asUser ? ['runuser', ['-u', asUser, '--', cmd, ...args]] : [cmd, args];
    return execFileSync(full[0], full[1], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/* the cluster, started on first use (synchronous: pg_ctl -w waits for it) */
export function postgresSync() {
    if (cluster) return cluster;
    const bin = pgBin();
    const asUser = process.getuid && process.getuid() === 0 ? 'postgres' : null;
    /* a short path: the socket's path must fit in sun_path (107 bytes) */
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nspg-'));
    if (asUser) execFileSync('chown', [asUser, dir]);
    const data = path.join(dir, 'data');
    const port = 20000 + Math.floor(Math.random() * 20000);
    run(path.join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'nightshift', '--no-sync', '-E', 'UTF8'], asUser);
    run(path.join(bin, 'pg_ctl'), ['start', '-D', data, '-w', '-t', '60', '-l', path.join(dir, 'log'), '-o',
        `-k ${dir} -p ${port} -c listen_addresses= -c fsync=off -c max_connections=200`], asUser);
    const stop = () => {
        try {
            run(path.join(bin, 'pg_ctl'), ['stop', '-D', data, '-m', 'immediate', '-w'], asUser);
        } catch {
            /* already down */
        }
        if (!process.env.NIGHTSHIFT_E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
    };
    process.on('exit', stop);
    const uri = (db) => `postgres:///${db}?host=${dir}&port=${port}&user=nightshift`;
    const psql = (db, sql) =>
        execFileSync('psql', ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', dir, '-p', String(port), '-U', 'nightshift', '-d', db, '-c', sql], {
            encoding: 'utf8',
        }).trim();
    let n = 0;
    cluster = {
        dir,
        port,
        uri,
        psql,
        stop,
        log: () => fs.readFileSync(path.join(dir, 'log'), 'utf8'),
        /* a fresh, empty database; its URI */
        createDb(name = `ns_${process.pid}_${++n}`) {
            psql('postgres', `CREATE DATABASE ${name}`);
            return uri(name);
        },
    };
    return cluster;
}

export async function postgres() {
    return postgresSync();
}

/* NIGHTSHIFT_E2E_STORE=postgres: the --db of a server on data dir `dataDir`, one database
 * per data dir (a server restarted on its data dir finds its state again); null otherwise */
const dbs = new Map();
export function e2eStoreUri(dataDir) {
    if (process.env.NIGHTSHIFT_E2E_STORE !== 'postgres') return null;
    const key = path.resolve(dataDir || '.');
    if (!dbs.has(key)) dbs.set(key, postgresSync().createDb(`ns_e2e_${process.pid}_${dbs.size + 1}`));
    return dbs.get(key);
}
