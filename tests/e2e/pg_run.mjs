// node tests/e2e/pg_run.mjs PROGRAM [ARGS...]: run PROGRAM with NIGHTSHIFT_TEST_PG_URI naming
// a fresh database on a real PostgreSQL server started for it (pg_lib.mjs), and exit with
// its status. For C tests that need a server (unit_store_pg).
import { spawnSync } from 'node:child_process';

import { postgresSync } from './pg_lib.mjs';

const pg = postgresSync();
const uri = pg.createDb('ns_unit');
const r = spawnSync(process.argv[2], process.argv.slice(3), { stdio: 'inherit', env: { ...process.env, NIGHTSHIFT_TEST_PG_URI: uri } });
process.exitCode = r.status === null ? 1 : r.status;
