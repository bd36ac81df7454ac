// A host application for qrupload in ~50 lines of Node (no dependencies): a login stub, a
// route that mints short-lived HS256 JWTs for the signed-in member (auth.jwt.* of qrupload),
// and a listing form that embeds <qrupload-panel>. Run: see README.md.
import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';

const QRUPLOAD = (process.env.QRUPLOAD_URL || 'http://localhost:8000').replace(/\/+$/, '');
const SECRET = process.env.JWT_SECRET || ''; // qrupload's auth.jwt.secret
const PORT = Number(process.env.PORT ?? 3000);
const TTL = Number(process.env.JWT_TTL || 300); // seconds a minted JWT lives
if (SECRET.length < 32) { console.error('set JWT_SECRET to qrupload\'s auth.jwt.secret (32+ characters)'); process.exit(1); }

const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
function mint(sub) { // short-lived; the widget asks for a fresh one whenever it needs one
  const now = Math.floor(Date.now() / 1000);
  const signed = b64({ alg: 'HS256', typ: 'JWT' }) + '.' + b64({ sub: String(sub), iat: now, exp: now + TTL });
  return signed + '.' + crypto.createHmac('sha256', SECRET).update(signed).digest('base64url');
}
const members = new Map(); // session cookie -> member id; a real host checks a password
const memberOf = (req) => members.get((/(?:^|;\s*)sid=([\w-]+)/.exec(req.headers.cookie || '') || [])[1]);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => '&#' + c.charCodeAt(0) + ';');
const CSP = `default-src 'none'; script-src 'self' ${QRUPLOAD}; connect-src 'self' ${QRUPLOAD}; img-src ${QRUPLOAD}; ` +
  "style-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
const TYPES = { '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

function send(res, status, type, body, headers = {}) {
  res.writeHead(status, { 'Content-Type': type, 'Content-Security-Policy': CSP, 'Referrer-Policy': 'no-referrer', 'Cache-Control': 'no-store', ...headers });
  res.end(body);
}
function page(name, vars) {
  const html = fs.readFileSync(new URL(name, import.meta.url), 'utf8');
  return html.replace(/\{\{(\w+)\}\}/g, (m, k) => esc(vars[k] ?? ''));
}
async function form(req) { let s = ''; for await (const c of req) { s += c; if (s.length > 65536) break; } return new URLSearchParams(s); }

http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://host');
  const lang = ['en', 'zh-Hant', 'zh-Hans'].includes(url.searchParams.get('lang')) ? url.searchParams.get('lang') : 'en';
  const member = memberOf(req);
  if (req.method === 'GET' && url.pathname === '/') {
    return send(res, 200, 'text/html; charset=utf-8', page(member ? 'index.html' : 'login.html', { QRUPLOAD, LANG: lang, MEMBER: member }));
  }
  if (req.method === 'GET' && (url.pathname === '/app.js' || url.pathname === '/style.css')) {
    return send(res, 200, TYPES[url.pathname.slice(url.pathname.lastIndexOf('.'))], fs.readFileSync(new URL('.' + url.pathname, import.meta.url)));
  }
  if (req.method === 'POST' && url.pathname === '/login') {
    const id = (await form(req)).get('member_id') || '';
    if (!/^\d{1,9}$/.test(id)) return send(res, 400, 'text/plain', 'member_id must be a number');
    const sid = crypto.randomUUID();
    members.set(sid, id);
    return send(res, 303, 'text/plain', '', { 'Set-Cookie': `sid=${sid}; HttpOnly; SameSite=Strict; Path=/`, Location: '/?lang=' + lang });
  }
  if (req.method === 'POST' && url.pathname === '/token') {
    if (!member) return send(res, 401, 'application/json', '{"error":"sign in first"}');
    return send(res, 200, 'application/json', JSON.stringify({ token: mint(member) }));
  }
  if (req.method === 'POST' && url.pathname === '/listings' && member) {
    const f = await form(req); // the photos' ids, cover first; read them over gRPC (GetImagesByIdentifier)
    return send(res, 200, 'text/html; charset=utf-8', page('saved.html', { LANG: lang, TITLE: f.get('title'), IDS: f.get('photo_ids') }));
  }
  send(res, 404, 'text/plain', 'not found');
}).listen(PORT, '127.0.0.1', function () { console.log(`listening on http://127.0.0.1:${this.address().port}`); });
