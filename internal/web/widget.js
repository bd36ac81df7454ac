/*
 * qrupload — <qrupload-panel>, the panel a host page puts into its own form
 * (served at "/v1/widget.js" as an ES module; no build step).
 *
 *   <script type="module" src="https://photos.example.com/v1/widget.js"></script>
 *   <form>… <qrupload-panel api-base="https://photos.example.com" lang="zh-Hant"></qrupload-panel> …</form>
 *   panel.tokenProvider = async () => jwt;   // jwt mode; or member-id="7" in dev mode
 *
 * It creates a session (or shows the one named by `session-url`), shows its QR
 * code, "phone connected", the countdown and the photos live, with delete,
 * "move earlier", "move later", "make cover" and drag and drop. The ordered ids
 * go into a hidden <input name=…> in the element's light DOM, so a plain form
 * submit carries them, and into bubbling, composed events:
 * `qrupload:change` {image_ids, images} (also once on load), `qrupload:complete`
 * {identifier, image_ids} and `qrupload:expired` {identifier}.
 *
 * Rules: everything renders in a shadow root built with createElement and
 * textContent (no HTML strings; the tiles, the QR code and the styles are in
 * widget-view.js); styles are a constructed stylesheet, so the
 * host's CSP needs the service origin in script-src, connect-src and img-src
 * only. The JWT travels only in `Authorization`; the stream (EventSource sends
 * no headers) opens with a fresh single-use ticket at every (re)connect.
 */

import { dropIndex, el, isTerminal, labelTiles, langOfTag, placeTiles, styleSheet, svgFromText } from './widget-view.js';

const STRINGS = /*@strings*/{};
const SCRIPT_ORIGIN = new URL(import.meta.url).origin;
const DEFAULT_NAME = 'qrupload_image_ids';

class ApiFailure extends Error {
  constructor(status, reason, message) {
    super(message || reason || 'HTTP ' + status);
    this.status = status;
    this.reason = reason;
  }
}

export class QruploadPanel extends HTMLElement {
  static get observedAttributes() { return ['lang', 'name', 'session-url', 'api-base', 'member-id']; }

  constructor() {
    super();
    this._root = this.attachShadow({ mode: 'open' });
    this._root.adoptedStyleSheets = [styleSheet()];
    this._provider = null;
    this._providerWaiters = [];
    this._session = null;
    this._images = [];
    this._source = null;
    this._retryTimer = 0;
    this._retryDelay = 1000;
    this._tick = 0;
    this._generation = 0;
    this._started = false;
    this._announcedOnce = false;
    this._lastIds = null;
    this._version = -1;
    this._dragged = null;
    this._build();
  }

  // ---------- public API ----------

  /** jwt mode: a function returning (a promise of) a fresh JWT; may be set before or after connecting. */
  get tokenProvider() { return this._provider; }
  set tokenProvider(fn) {
    this._provider = typeof fn === 'function' ? fn : null;
    if (this._provider) {
      this._providerWaiters.splice(0).forEach((resolve) => resolve());
      if (this.isConnected && !this._started) this._start();
    }
  }

  /** The image ids in order (position 1, the cover, first). */
  get imageIds() { return this._images.map((im) => im.id); }
  get value() { return this.imageIds.join(','); }
  get identifier() { return this._session ? this._session.identifier : null; }

  /** Reorders from script: `ids` must be exactly the session's ids. Resolves to the images. */
  setOrder(ids) {
    if (!Array.isArray(ids)) return Promise.reject(new TypeError('setOrder takes an array of image ids'));
    return this._sendOrder(ids.map(String));
  }

  // ---------- lifecycle ----------

  connectedCallback() {
    // A tokenProvider set before this element was defined sits on the instance and would hide
    // the accessor: move it over.
    if (Object.prototype.hasOwnProperty.call(this, 'tokenProvider')) {
      const fn = this.tokenProvider;
      delete this.tokenProvider;
      this._provider = typeof fn === 'function' ? fn : null;
    }
    this._input();
    this._relabel();
    if (!this._started && this._session) this._resume();
    else if (!this._started && (this._devMode() || this._provider)) this._start();
    else if (!this._started) this._setStatus(null, this._t('signing_in'));
  }

  disconnectedCallback() {
    this._stop();
    this._started = false;
  }

  attributeChangedCallback(name, before, after) {
    if (before === after) return;
    if (name === 'lang') { this._relabel(); this._renderTiles(); this._renderSession(); return; }
    if (name === 'name') { this._input(); return; }
    // The attributes the parser sets come before connectedCallback: nothing to restart yet.
    if (!this._started && !this._session) return;
    // Another service, member or session: start over with a new one.
    this._stop();
    this._started = false;
    this._session = null;
    this._images = [];
    this._renderTiles();
    if (this.isConnected) this.connectedCallback();
  }

  // ---------- strings ----------

  _lang() {
    const candidates = [this.getAttribute('lang')];
    const scoped = this.parentElement && this.parentElement.closest('[lang]');
    candidates.push(scoped ? scoped.getAttribute('lang') : null, document.documentElement.lang);
    // The first language given decides; one we do not speak means English.
    const given = candidates.find((tag) => tag);
    if (given) return langOfTag(given) || 'en';
    for (const tag of navigator.languages || [navigator.language]) { const l = langOfTag(tag); if (l) return l; }
    return 'en';
  }

  _t(key, vars) {
    const table = STRINGS[this._lang()] || STRINGS.en || {};
    const text = Object.prototype.hasOwnProperty.call(table, key) ? table[key] : ((STRINGS.en || {})[key] || key);
    return text.replace(/\{(\w+)\}/g, (m, name) => (vars && vars[name] !== undefined ? String(vars[name]) : m));
  }

  _errorText(err) {
    const reason = err && err.reason;
    const table = STRINGS[this._lang()] || {};
    if (reason && Object.prototype.hasOwnProperty.call(table, 'reason_' + reason)) return this._t('reason_' + reason);
    if (err && err.status === 0) return this._t('reason_NETWORK');
    return this._t('error_generic');
  }

  // ---------- DOM ----------

  _build() {
    const panel = el('div', 'panel');
    panel.setAttribute('part', 'panel');
    const side = el('div', 'side');
    this._els = {
      title: el('p', 'title'),
      qr: el('div', 'qr'),
      qrText: el('span', 'muted'),
      status: el('p', 'status'),
      conn: el('span', 'muted'),
      count: el('span'),
      countdown: el('span', 'muted'),
      error: el('p', 'error'),
      progress: el('div'),
      progressText: el('p', 'muted'),
      progressBar: el('progress'),
      hint: el('p', 'hint muted'),
      grid: el('ul', 'grid'),
      empty: el('p', 'empty'),
      live: el('p', 'sr'),
      scan: el('p', 'muted')
    };
    const e = this._els;
    e.qr.setAttribute('role', 'img');
    e.qr.appendChild(e.qrText);
    e.status.setAttribute('aria-live', 'polite');
    e.error.setAttribute('role', 'alert');
    e.error.hidden = true;
    e.progress.hidden = true;
    e.progressBar.max = 1;
    e.progress.append(e.progressText, e.progressBar);
    e.live.setAttribute('aria-live', 'polite');
    const facts = el('p');
    facts.append(e.count, document.createTextNode(' · '), e.countdown);
    side.append(e.qr, e.scan, e.status, facts, e.progress, e.error);
    const main = el('div', 'main');
    main.append(e.title, e.hint, e.empty, e.grid, e.live);
    panel.append(side, main);
    this._root.appendChild(panel);

    e.grid.addEventListener('click', (ev) => this._onClick(ev));
    e.grid.addEventListener('dragstart', (ev) => this._onDragStart(ev));
    e.grid.addEventListener('dragover', (ev) => { if (this._dragged) { ev.preventDefault(); ev.dataTransfer.dropEffect = 'move'; } });
    e.grid.addEventListener('drop', (ev) => this._onDrop(ev));
    e.grid.addEventListener('dragend', () => this._endDrag());
  }

  _relabel() {
    const e = this._els;
    e.title.textContent = this._t('title');
    e.scan.textContent = this._t('scan');
    e.hint.textContent = this._t('order_hint');
    e.empty.textContent = this._t('empty');
    e.grid.setAttribute('aria-label', this._t('photos_label'));
    e.qr.setAttribute('aria-label', this._t('qr_alt'));
    e.progressBar.setAttribute('aria-label', this._t('progress_label'));
    if (!this._session) e.qrText.textContent = this._t('loading');
  }

  // The hidden input in light DOM that carries the ids in a form submit.
  _input() {
    if (!this._hidden) {
      this._hidden = document.createElement('input');
      this._hidden.type = 'hidden';
    }
    this._hidden.name = this.getAttribute('name') || DEFAULT_NAME;
    this._hidden.value = this.value;
    if (this._hidden.parentNode !== this) this.appendChild(this._hidden);
  }

  _setStatus(status, text) {
    const s = this._els.status;
    s.textContent = text;
    if (status) s.setAttribute('data-status', status); else s.removeAttribute('data-status');
  }

  _showError(text) {
    this._els.error.textContent = text || '';
    this._els.error.hidden = !text;
  }

  // ---------- HTTP ----------

  _devMode() { return this.hasAttribute('member-id'); }

  _base() {
    try { return new URL(this.getAttribute('api-base') || SCRIPT_ORIGIN, document.baseURI).origin; }
    catch (e) { return SCRIPT_ORIGIN; }
  }

  async _jwt() {
    if (!this._provider) await new Promise((resolve) => this._providerWaiters.push(resolve));
    const jwt = await this._provider();
    if (typeof jwt !== 'string' || !jwt) throw new ApiFailure(401, 'UNAUTHENTICATED');
    return jwt;
  }

  // An API URL under the service origin; dev mode names the member in the query.
  _url(path) {
    const u = new URL(path, this._base() + '/');
    if (this._devMode()) u.searchParams.set('member_id', this.getAttribute('member-id'));
    return u.href;
  }

  async _api(method, url, body) {
    const headers = { Accept: 'application/json' };
    if (!this._devMode()) headers.Authorization = 'Bearer ' + await this._jwt();
    const init = { method, headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try { res = await fetch(url, init); } catch (e) { throw new ApiFailure(0, 'NETWORK'); }
    const text = await res.text();
    let data = null;
    if (text) { try { data = JSON.parse(text); } catch (e) { data = null; } }
    if (!res.ok) throw new ApiFailure(res.status, data && data.reason, data && data.message);
    return { data, text };
  }

  // ---------- session ----------

  async _start() {
    this._started = true;
    const gen = ++this._generation;
    this._showError('');
    this._setStatus(null, this._t('loading'));
    try {
      let data;
      const named = this.getAttribute('session-url');
      if (named) {
        data = (await this._api('GET', this._url(named))).data;
      } else {
        const body = this._devMode() ? { member_id: Number(this.getAttribute('member-id')) } : undefined;
        data = (await this._api('POST', this._url('/v1/api/upload-sessions'), body)).data;
      }
      if (gen !== this._generation) return;
      if (!data || typeof data.identifier !== 'string') throw new ApiFailure(500, 'INTERNAL');
      this._session = {
        identifier: data.identifier,
        status: String(data.status || 'open'),
        imageCount: Number(data.image_count) || 0,
        maxImages: Number(data.max_images) || 0,
        expiresAt: Date.parse(data.expires_at),
        event: this._eventName(data.events_url)
      };
      this._renderSession();
      this._loadQr(gen, data.qr_svg_url);
      this._tick = this._tick || setInterval(() => this._renderClock(), 1000);
      if (isTerminal(this._session.status)) this._finished();
      else this._connect(gen);
    } catch (err) {
      if (gen !== this._generation) return;
      this._setStatus(null, '');
      this._els.qrText.textContent = '';
      this._showError(this._errorText(err));
    }
  }

  // Back in the document (the host moved the element): the same session, a new stream.
  _resume() {
    this._started = true;
    const gen = ++this._generation;
    this._tick = this._tick || setInterval(() => this._renderClock(), 1000);
    this._renderSession();
    if (!isTerminal(this._session.status)) this._connect(gen);
  }

  _stop() {
    this._generation++;
    if (this._source) { this._source.close(); this._source = null; }
    clearTimeout(this._retryTimer);
    clearInterval(this._tick);
    this._tick = 0;
  }

  _eventName(eventsUrl) {
    try { return new URL(eventsUrl, this._base()).searchParams.get('event') || 'upload_by_qr'; } catch (e) { return 'upload_by_qr'; }
  }

  // The QR code as SVG, fetched with the member's credentials and rebuilt from its
  // rectangles and path only: nothing of the answer is parsed into this page as markup.
  async _loadQr(gen, path) {
    try {
      const { text } = await this._api('GET', this._url(path));
      if (gen !== this._generation) return;
      const svg = svgFromText(text);
      if (!svg) throw new ApiFailure(500, 'INTERNAL');
      this._els.qr.replaceChildren(svg);
    } catch (err) {
      if (gen === this._generation) this._els.qrText.textContent = this._errorText(err);
    }
  }

  // ---------- stream ----------

  async _connect(gen) {
    if (gen !== this._generation || !this._session || isTerminal(this._session.status)) return;
    let ticket;
    try {
      const path = '/v1/api/upload-sessions/' + encodeURIComponent(this._session.identifier) + '/stream-ticket';
      ticket = (await this._api('POST', this._url(path))).data.ticket;
    } catch (err) {
      if (gen !== this._generation) return;
      if (err.status === 404 || err.status === 401) { this._showError(this._errorText(err)); return; }
      this._reconnectLater(gen);
      return;
    }
    if (gen !== this._generation) return;
    const u = new URL('/v1/api/sse/events', this._base());
    u.searchParams.set('event', this._session.event);
    u.searchParams.set('identifier', this._session.identifier);
    u.searchParams.set('ticket', ticket);
    const es = new EventSource(u.href);
    this._source = es;
    es.addEventListener('open', () => {
      if (es !== this._source) return;
      this._retryDelay = 1000;
      this._els.conn.textContent = '';
      this._renderSession();
    });
    es.addEventListener('session', (ev) => {
      if (es !== this._source) return;
      try { this._applySession(JSON.parse(ev.data)); } catch (e) { /* ignore a malformed event */ }
    });
    es.addEventListener(this._session.event, (ev) => {
      if (es !== this._source) return;
      let images;
      try { images = JSON.parse(ev.data); } catch (e) { return; }
      const v = Number(ev.lastEventId);
      if (ev.lastEventId !== '' && isFinite(v)) { if (v < this._version) return; this._version = v; }
      this._applyImages(images);
      if (this._session && isTerminal(this._session.status)) this._finished();
    });
    es.addEventListener('progress', (ev) => {
      if (es !== this._source) return;
      try { this._applyProgress(JSON.parse(ev.data)); } catch (e) { /* ignore */ }
    });
    es.addEventListener('error', () => {
      if (es !== this._source) return;
      // A ticket is good for one connect: never let EventSource retry with it.
      es.close();
      this._source = null;
      if (this._session && isTerminal(this._session.status)) return;
      this._reconnectLater(gen);
    });
  }

  _reconnectLater(gen) {
    this._els.conn.textContent = ' ' + this._t('reconnecting');
    clearTimeout(this._retryTimer);
    // Half the delay is random, so that the widgets of a server that restarts do not all
    // come back in the same second.
    const wait = this._retryDelay / 2 + Math.random() * (this._retryDelay / 2);
    this._retryTimer = setTimeout(() => this._refreshThenConnect(gen), wait);
    this._retryDelay = Math.min(this._retryDelay * 2, 15000);
  }

  // Before reconnecting, read the session: a finished one has no stream to come back to.
  async _refreshThenConnect(gen) {
    if (gen !== this._generation || !this._session) return;
    try {
      const path = '/v1/api/upload-sessions/' + encodeURIComponent(this._session.identifier);
      const { data } = await this._api('GET', this._url(path));
      if (gen !== this._generation) return;
      this._applySession(data);
      if (isTerminal(this._session.status)) { this._finished(); return; }
    } catch (err) {
      if (gen !== this._generation) return;
      if (err.status !== 0 && err.status < 500) { this._showError(this._errorText(err)); return; }
    }
    this._connect(gen);
  }

  _applySession(data) {
    const s = this._session;
    if (!s || !data || data.identifier !== s.identifier) return;
    const before = s.status;
    if (typeof data.status === 'string') s.status = data.status;
    if (typeof data.image_count === 'number') s.imageCount = data.image_count;
    if (typeof data.max_images === 'number') s.maxImages = data.max_images;
    if (typeof data.expires_at === 'string') s.expiresAt = Date.parse(data.expires_at);
    this._renderSession();
    if (before !== s.status && isTerminal(s.status)) this._announceEnd();
  }

  _finished() {
    if (this._source) { this._source.close(); this._source = null; }
    this._els.conn.textContent = '';
    this._renderSession();
    this._announceEnd();
  }

  _announceEnd() {
    const s = this._session;
    if (!s || this._ended === s.identifier + s.status) return;
    this._ended = s.identifier + s.status;
    if (s.status === 'completed') this._emit('qrupload:complete', { identifier: s.identifier, image_ids: this.imageIds });
    if (s.status === 'expired') this._emit('qrupload:expired', { identifier: s.identifier });
  }

  _applyImages(list) {
    if (!Array.isArray(list)) return;
    this._images = list.filter((im) => im && typeof im.id === 'string')
      .sort((a, b) => (Number(a.position) || 0) - (Number(b.position) || 0));
    if (this._session) this._session.imageCount = this._images.length;
    this._renderTiles();
    this._renderSession();
    this._changed();
  }

  _applyProgress(data) {
    const files = data && Array.isArray(data.files) ? data.files : [];
    const p = this._els.progress;
    if (!files.length) { p.hidden = true; return; }
    let received = 0; let total = 0; let known = true;
    for (const f of files) {
      received += Number(f.received) || 0;
      if (typeof f.total === 'number') total += f.total; else known = false;
    }
    this._els.progressText.textContent = this._t('receiving', { count: files.length });
    if (known && total > 0) this._els.progressBar.value = Math.min(1, received / total);
    else this._els.progressBar.removeAttribute('value');
    p.hidden = false;
  }

  // The form value and `qrupload:change`, once on load and whenever the ids or their order change.
  _changed() {
    const ids = this.imageIds;
    this._input();
    const key = ids.join(',');
    if (this._announcedOnce && key === this._lastIds) return;
    this._announcedOnce = true;
    this._lastIds = key;
    this._emit('qrupload:change', { image_ids: ids, images: this._images.map((im) => Object.assign({}, im)) });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
  }

  // ---------- rendering ----------

  _renderSession() {
    const s = this._session;
    if (!s) return;
    let status = s.status;
    if (!isTerminal(status) && Date.now() >= s.expiresAt) status = 'expired';
    this._setStatus(status, this._t('status_' + status));
    this._els.count.textContent = this._t('count', { count: this._images.length, max: s.maxImages });
    this._els.scan.hidden = isTerminal(status);
    this._renderClock();
    this._labelTiles();
  }

  _renderClock() {
    const s = this._session;
    if (!s) return;
    if (s.status === 'completed' || !isFinite(s.expiresAt)) { this._els.countdown.textContent = ''; return; }
    const left = Math.max(0, Math.ceil((s.expiresAt - Date.now()) / 1000));
    const mm = String(Math.floor(left / 60)).padStart(2, '0');
    const ss = String(left % 60).padStart(2, '0');
    this._els.countdown.textContent = this._t('expires_in', { time: mm + ':' + ss });
    try {
      this._els.countdown.title = new Intl.DateTimeFormat(this._lang(), { hour: 'numeric', minute: '2-digit' }).format(new Date(s.expiresAt));
    } catch (e) { /* no Intl: no title */ }
    if (left === 0 && !isTerminal(s.status)) { s.status = 'expired'; this._finished(); }
  }

  _renderTiles() {
    const count = placeTiles(this._els.grid, this._images, this._base());
    this._els.empty.hidden = count > 0;
    this._els.hint.hidden = count < 2;
    this._labelTiles();
  }

  _labelTiles() {
    labelTiles(this._els.grid, (key, vars) => this._t(key, vars), !this._session || isTerminal(this._session.status));
  }

  // ---------- order and delete ----------

  _onClick(ev) {
    const btn = ev.target.closest('button');
    if (!btn || btn.disabled) return;
    const li = btn.closest('.tile');
    const at = Array.from(this._els.grid.children).indexOf(li);
    if (btn.classList.contains('delete')) this._delete(li);
    else if (btn.classList.contains('earlier')) this._move(at, at - 1, 'earlier');
    else if (btn.classList.contains('later')) this._move(at, at + 1, 'later');
    else if (btn.classList.contains('cover')) this._move(at, 0, 'later');
  }

  _move(from, to, focusClass) {
    const ids = this.imageIds;
    if (from < 0 || to < 0 || to >= ids.length || from === to) return;
    const [id] = ids.splice(from, 1);
    ids.splice(to, 0, id);
    this._sendOrder(ids).catch(() => { /* shown in the panel */ });
    const li = this._els.grid.children[to];
    let focus = li && li.querySelector('.' + focusClass);
    if (focus && focus.disabled) focus = li.querySelector('.tools button:not(:disabled)');
    if (focus) focus.focus();
    this._els.live.textContent = this._t('moved_to', { n: to + 1, count: ids.length });
  }

  // Shows the new order at once, then asks the service; the answer (and the snapshot
  // after it) is the truth, and a refusal puts the service's order back.
  async _sendOrder(ids) {
    if (!this._session) throw new ApiFailure(404, 'NOT_FOUND');
    const previous = this._images;
    const byId = new Map(previous.map((im) => [im.id, im]));
    if (ids.length === previous.length && ids.every((id) => byId.has(id))) {
      this._images = ids.map((id, i) => Object.assign({}, byId.get(id), { position: i + 1 }));
      this._renderTiles();
      this._changed();
    }
    this._showError('');
    const path = '/v1/api/upload-sessions/' + encodeURIComponent(this._session.identifier) + '/images/order';
    try {
      const { data } = await this._api('PUT', this._url(path), { image_ids: ids });
      if (data && Array.isArray(data.images)) this._applyImages(data.images);
      return this._images;
    } catch (err) {
      this._images = previous;
      this._renderTiles();
      this._changed();
      this._showError(this._errorText(err));
      throw err;
    }
  }

  async _delete(li) {
    const id = li.dataset.imageId;
    li.classList.add('is-busy');
    this._labelTiles();
    this._showError('');
    const path = '/v1/api/upload-sessions/' + encodeURIComponent(this._session.identifier) + '/images/' + encodeURIComponent(id);
    try {
      await this._api('DELETE', this._url(path));
    } catch (err) {
      if (err.status !== 404) {
        li.classList.remove('is-busy');
        this._labelTiles();
        this._showError(this._errorText(err));
        return;
      }
    }
    this._applyImages(this._images.filter((im) => im.id !== id));
  }

  _onDragStart(ev) {
    const li = ev.target.closest && ev.target.closest('.tile');
    if (!li || !li.draggable) return;
    this._dragged = li;
    li.classList.add('is-dragging');
    ev.dataTransfer.effectAllowed = 'move';
    try { ev.dataTransfer.setData('text/plain', li.dataset.imageId); } catch (e) { /* ignore */ }
  }

  _onDrop(ev) {
    const li = this._dragged;
    if (!li) return;
    ev.preventDefault();
    const tiles = Array.from(this._els.grid.children);
    const from = tiles.indexOf(li);
    const to = dropIndex(ev, tiles, from);
    this._endDrag();
    this._move(from, to, 'later');
  }

  _endDrag() {
    if (this._dragged) this._dragged.classList.remove('is-dragging');
    this._dragged = null;
  }
}

if (!customElements.get('qrupload-panel')) customElements.define('qrupload-panel', QruploadPanel);
