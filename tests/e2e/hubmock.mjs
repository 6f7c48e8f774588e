// A mock of the Hugging Face Hub for the model store's tests (pull.test.mjs): the parts
// `nightshift pull` uses, on 127.0.0.1 with a free port; HF_ENDPOINT points nightshift at it.
//
//   GET /api/models/ORG/REPO/tree/main?recursive=true
//       the tree API: [{type, oid, size, path, lfs: {oid (SHA-256), size, pointerSize}}]
//       (.gguf files are LFS files; README.md is a plain one), two entries a page, each
//       page's Link header naming the next (&cursor=N) as the Hub does
//   GET /ORG/REPO/resolve/main/PATH   302 to /cdn/SHA256/NAME (as the Hub sends LFS files
//       to its CDN), which serves the bytes with Range support (206, Content-Range)
// A gated repository answers 401 to both without "Authorization: Bearer <its token>"; an
// unknown one 404 ({"error": "Repository not found"}).
// Faults, per file name (its last path part): cutAfter.set(path, n) sends n bytes of the next full-file request
// and then destroys the connection (once); stall.set(path, n) sends n bytes and then nothing
// while the connection stays open (once); noRange.add(path) answers a Range request with the
// whole file (200), as a server without ranges does; corrupt.add(path) flips a byte of what is sent
// (the listing keeps the true SHA-256). Every request is logged in `requests`
// ({method, url, range, auth}).
import crypto from 'node:crypto';
import http from 'node:http';

const PAGE = 2; /* listing entries a page: every listing of the tests spans pages */

export function sha256(buf) {
    return crypto.createHash('sha256').update(buf).digest('hex');
}

/* repos: { 'org/repo': { files: { 'path': Buffer }, token: 'hf_x' (gated) } } */
export async function startHub(repos) {
    const requests = [];
    let base = '';
    const cutAfter = new Map();
    const stall = new Map();
    const noRange = new Set();
    const corrupt = new Set();
    const byDigest = new Map(); /* sha256 -> {repo, path, data} */
    for (const [name, r] of Object.entries(repos))
        for (const [p, data] of Object.entries(r.files)) byDigest.set(sha256(data), { repo: name, path: p, data });

    const send = (res, code, obj) => {
        res.writeHead(code, { 'content-type': 'application/json' });
        res.end(JSON.stringify(obj));
    };
    const repoOf = (org, name, req, res) => {
        const r = repos[`${org}/${name}`];
        if (!r) {
            send(res, 404, { error: 'Repository not found' });
            return null;
        }
        if (r.token && req.headers.authorization !== `Bearer ${r.token}`) {
            send(res, 401, { error: `Access to model ${org}/${name} is restricted. You must have access to it and be authenticated to access it. Please log in.` });
            return null;
        }
        return r;
    };

    const server = http.createServer((req, res) => {
        const url = new URL(req.url, 'http://x');
        requests.push({ method: req.method, url: req.url, range: req.headers.range || null, auth: req.headers.authorization || null });
        let m = /^\/api\/models\/([^/]+)\/([^/]+)\/tree\/main$/.exec(url.pathname);
        if (m) {
            const r = repoOf(m[1], m[2], req, res);
            if (!r) return;
            const list = Object.entries(r.files).map(([p, data]) =>
                p.endsWith('.gguf')
                    ? { type: 'file', oid: sha256(Buffer.from(p)).slice(0, 40), size: data.length, path: p,
                        lfs: { oid: sha256(data), size: data.length, pointerSize: 134 } }
                    : { type: 'file', oid: sha256(data).slice(0, 40), size: data.length, path: p });
            /* in pages of PAGE entries, as the Hub pages long listings: Link: <next>; rel="next" */
            const all = [{ type: 'directory', oid: '0'.repeat(40), size: 0, path: 'sub' }, ...list];
            const from = Number(url.searchParams.get('cursor') || 0);
            const headers = { 'content-type': 'application/json' };
            if (from + PAGE < all.length)
                headers.link = `<${base}/api/models/${m[1]}/${m[2]}/tree/main?recursive=true&cursor=${from + PAGE}>; rel="next"`;
            res.writeHead(200, headers);
            res.end(JSON.stringify(all.slice(from, from + PAGE)));
            return;
        }
        m = /^\/([^/]+)\/([^/]+)\/resolve\/main\/(.+)$/.exec(url.pathname);
        if (m) {
            const r = repoOf(m[1], m[2], req, res);
            if (!r) return;
            const p = decodeURIComponent(m[3]);
            const data = r.files[p];
            if (!data) return send(res, 404, { error: 'Entry not found' });
            res.writeHead(302, { location: `/cdn/${sha256(data)}/${encodeURIComponent(p.split('/').pop())}?sig=x` });
            res.end();
            return;
        }
        m = /^\/cdn\/([0-9a-f]{64})\/([^/]+)$/.exec(url.pathname);
        if (m && byDigest.has(m[1])) {
            /* faults go by the file name the redirect carries (one payload may be many files) */
            const f = { data: byDigest.get(m[1]).data, path: decodeURIComponent(m[2]) };
            let data = f.data;
            if (corrupt.has(f.path)) {
                data = Buffer.from(data);
                data[data.length >> 1] ^= 0xff;
            }
            const rg = noRange.has(f.path) ? null : /^bytes=(\d+)-$/.exec(req.headers.range || '');
            if (rg) {
                const start = Number(rg[1]);
                if (start >= data.length) {
                    res.writeHead(416, { 'content-range': `bytes */${data.length}` });
                    return res.end();
                }
                res.writeHead(206, { 'content-length': data.length - start, 'content-range': `bytes ${start}-${data.length - 1}/${data.length}`,
                    'accept-ranges': 'bytes' });
                return res.end(data.subarray(start));
            }
            const st = stall.get(f.path);
            if (st !== undefined) {
                stall.delete(f.path);
                res.writeHead(200, { 'content-length': data.length });
                res.write(data.subarray(0, st)); /* and then nothing, until the client goes */
                return;
            }
            const cut = cutAfter.get(f.path);
            res.writeHead(200, { 'content-length': data.length, 'accept-ranges': 'bytes' });
            if (cut !== undefined) {
                cutAfter.delete(f.path);
                res.write(data.subarray(0, cut), () => setTimeout(() => req.socket.destroy(), 50));
                return;
            }
            return res.end(data);
        }
        send(res, 404, { error: 'not found' });
    });
    await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${server.address().port}`;
    base = url;
    return {
        url,
        requests,
        cutAfter,
        stall,
        noRange,
        corrupt,
        close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(resolve); }),
    };
}
