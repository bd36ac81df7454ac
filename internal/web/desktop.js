/*
 * qrupload — desktop page (served at "/").
 *
 * Creates an upload session for a member, shows its QR code and upload link,
 * and follows the session live over Server-Sent Events: "phone connected",
 * the photo count, a countdown to expiry, and a grid of the uploaded photos
 * (reconciled from each complete snapshot, keyed by image id). The member can
 * delete a photo, put the photos in order (drag and drop, or the "move
 * earlier", "move later" and "make cover" buttons of each tile; position 1 is
 * the cover), complete the session with "Done", or start a new session.
 *
 * Strings come from the page's JSON data block (#i18n), filled by the server
 * in the language Accept-Language asked for; error answers are shown by their
 * `reason` code, translated, and dates and numbers go through Intl.
 *
 * Rule: data from the server goes into the page only through textContent and
 * attributes/properties of elements built with createElement. Never parse
 * any string as HTML (no HTML-string sinks, no writing into the document).
 */
'use strict';

(function () {
  var STRINGS = readStrings();
  var LANG = document.documentElement.lang || 'en';
  var API = '/v1/api/upload-sessions';
  var MAX_MEMBER_ID = 4294967295;

  function $(id) { return document.getElementById(id); }
  var els = {
    form: $('session-form'), member: $('member-id'), newQr: $('new-qr'),
    qr: $('qr'), qrPlaceholder: $('qr-placeholder'),
    status: $('status'), conn: $('conn'), count: $('count'), countdown: $('countdown'),
    link: $('upload-url'), copy: $('copy'), error: $('error'), done: $('done'),
    empty: $('empty'), grid: $('grid'), orderHint: $('order-hint'), orderLive: $('order-live')
  };

  var session = null;        // current session, see startSession()
  var source = null;         // current EventSource
  var generation = 0;        // guards against late answers for an old session
  var snapshotVersion = -1;  // version of the last snapshot applied
  var closeTimer = 0;
  var tiles = new Map();     // image id -> tile element
  var lastImages = null;     // the last snapshot's list, to undo a refused move
  var dragged = null;        // tile being dragged

  // ---------- strings ----------

  function readStrings() {
    var el = document.getElementById('i18n');
    try { return JSON.parse(el ? el.textContent : '{}') || {}; } catch (e) { return {}; }
  }

  // The string for key, with {name} replaced from vars.
  function t(key, vars) {
    var text = Object.prototype.hasOwnProperty.call(STRINGS, key) ? STRINGS[key] : key;
    return text.replace(/\{(\w+)\}/g, function (m, name) {
      return vars && vars[name] !== undefined ? String(vars[name]) : m;
    });
  }

  // An error answer in the page's language: its reason code if we have words for
  // it, else the server's (English) message.
  function errorText(reason, message, status) {
    var key = 'reason_' + reason;
    if (reason && Object.prototype.hasOwnProperty.call(STRINGS, key)) return t(key);
    return message || t('request_failed', { status: status });
  }

  function statusText(status) {
    var key = 'status_' + status;
    return Object.prototype.hasOwnProperty.call(STRINGS, key) ? t(key) : status;
  }
  var inFlight = new Map();  // upload id -> placeholder tile, from `progress` events
  var batch = new Map();     // upload id -> { received, total, done } since uploads began
  var progressLine = null;

  // The `progress` strings, by name, in the page languages.
  var PROGRESS_TEXT = {
    en: { line: 'uploading {i} of {n} · {a} of {b} MB', tile: 'Uploading… {p}%' },
    'zh-Hant': { line: '正在上傳第 {i} 張，共 {n} 張 · {a} / {b} MB', tile: '上傳中… {p}%' },
    'zh-Hans': { line: '正在上传第 {i} 张，共 {n} 张 · {a} / {b} MB', tile: '上传中… {p}%' }
  };

  // ---------- helpers ----------

  function isTerminal(status) { return status === 'completed' || status === 'expired'; }

  // Only http(s) URLs are put into href/src; anything else is dropped.
  function safeUrl(value) {
    if (typeof value !== 'string' || value === '') return null;
    try {
      var u = new URL(value, window.location.origin);
      return (u.protocol === 'http:' || u.protocol === 'https:') ? u.href : null;
    } catch (e) { return null; }
  }

  function showError(message) {
    els.error.textContent = message || '';
    els.error.hidden = !message;
  }

  function api(method, url, body) {
    var init = { method: method, headers: { Accept: 'application/json' }, cache: 'no-store', credentials: 'same-origin' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (res) {
      return res.text().then(function (text) {
        var data = null;
        if (text) { try { data = JSON.parse(text); } catch (e) { data = null; } }
        if (!res.ok) {
          var reason = data && typeof data.reason === 'string' ? data.reason : '';
          var message = data && typeof data.message === 'string' ? data.message : '';
          var err = new Error(errorText(reason, message, res.status));
          err.status = res.status;
          err.reason = reason;
          throw err;
        }
        return data;
      });
    }, function () {
      throw new Error(t('network_error'));
    });
  }

  function sessionPath(suffix) {
    return API + '/' + encodeURIComponent(session.identifier) + (suffix || '') +
      '?member_id=' + encodeURIComponent(String(session.memberId));
  }

  // ---------- rendering ----------

  function renderStatus() {
    if (!session) return;
    var status = session.status;
    if (!isTerminal(status) && serverNow() >= session.expiresAt) status = 'expired';
    els.status.textContent = statusText(status);
    els.status.setAttribute('data-status', status);
    els.done.disabled = isTerminal(status);
    var locked = isTerminal(status);
    document.body.classList.toggle('is-closed', locked);
    els.copy.disabled = locked || !els.link.textContent;
    labelTiles();
  }

  function renderCount() {
    if (!session) return;
    els.count.textContent = t('count', { count: session.imageCount, max: session.maxImages });
  }

  function serverNow() { return Date.now() + (session ? session.clockOffset : 0); }

  function pad(n) { return n < 10 ? '0' + n : String(n); }

  function tick() {
    if (!session || !isFinite(session.expiresAt)) {
      els.countdown.textContent = '--:--';
      return;
    }
    if (session.status === 'completed') {
      els.countdown.textContent = '--:--';
      els.countdown.classList.remove('is-low');
      return;
    }
    var left = Math.max(0, Math.ceil((session.expiresAt - serverNow()) / 1000));
    els.countdown.title = t('expires_at', { time: clockTime(session.expiresAt - session.clockOffset) });
    els.countdown.textContent = pad(Math.floor(left / 60)) + ':' + pad(left % 60);
    els.countdown.classList.toggle('is-low', left < 60);
    if (left === 0) renderStatus();
  }

  var timeFormat = null;
  function clockTime(ms) {
    try {
      if (!timeFormat) timeFormat = new Intl.DateTimeFormat(LANG, { hour: 'numeric', minute: '2-digit' });
      return timeFormat.format(new Date(ms));
    } catch (e) { return new Date(ms).toLocaleTimeString(); }
  }

  function renderEmpty() {
    els.empty.hidden = tiles.size > 0 || inFlight.size > 0;
    els.orderHint.hidden = tiles.size < 2;
  }

  function button(cls, glyph) {
    var b = document.createElement('button');
    b.type = 'button';
    b.className = 'tile-btn ' + cls;
    b.textContent = glyph;
    return b;
  }

  function buildTile(img) {
    var id = String(img.id);
    var tile = document.createElement('figure');
    tile.className = 'tile';
    tile.setAttribute('data-image-id', id);
    tile.draggable = true;

    var link = document.createElement('a');
    link.className = 'tile-link';
    var href = safeUrl(img.url);
    if (href) link.setAttribute('href', href);
    link.setAttribute('target', '_blank');
    link.setAttribute('rel', 'noopener noreferrer');
    link.draggable = false;

    var thumb = document.createElement('img');
    var src = safeUrl(img.thumbnail_url) || href;
    if (src) thumb.setAttribute('src', src);
    thumb.setAttribute('decoding', 'async');
    thumb.draggable = false;
    link.appendChild(thumb);

    var caption = document.createElement('figcaption');
    var label = document.createElement('span');
    label.className = 'tile-label';
    var badge = document.createElement('span');
    badge.className = 'cover-badge';
    badge.textContent = t('cover');
    var del = document.createElement('button');
    del.type = 'button';
    del.className = 'delete';
    del.textContent = t('delete');
    var head = document.createElement('div');
    head.className = 'tile-head';
    head.appendChild(label);
    head.appendChild(badge);

    var tools = document.createElement('div');
    tools.className = 'tile-tools';
    tools.appendChild(button('move-earlier', '\u2190'));
    tools.appendChild(button('move-later', '\u2192'));
    tools.appendChild(button('make-cover', '\u2605'));
    tools.appendChild(del);

    caption.appendChild(head);
    caption.appendChild(tools);
    tile.appendChild(link);
    tile.appendChild(caption);
    return tile;
  }

  // Numbers, names and enabled buttons follow the tiles' order in the grid.
  // The photos' tiles in display order; placeholders of uploads in flight share the grid
  // but are not photos.
  function photoTiles() {
    return Array.prototype.filter.call(els.grid.children, function (el) {
      return !el.classList.contains('tile-pending');
    });
  }

  function labelTiles() {
    var list = photoTiles();
    var locked = !session || isTerminal(session.status);
    list.forEach(function (tile, i) {
      var n = i + 1;
      var last = i === list.length - 1;
      var deleting = tile.classList.contains('is-deleting');
      tile.classList.toggle('is-cover', i === 0);
      tile.draggable = !locked;
      tile.querySelector('.tile-label').textContent = t('photo_n', { n: n });
      tile.querySelector('img').setAttribute('alt', t('photo_n', { n: n }));
      var del = tile.querySelector('.delete');
      del.setAttribute('aria-label', t('delete_photo_n', { n: n }));
      del.disabled = locked || deleting;
      [['.move-earlier', 'move_earlier_n', i === 0],
       ['.move-later', 'move_later_n', last],
       ['.make-cover', 'make_cover_n', i === 0]].forEach(function (b) {
        var btn = tile.querySelector(b[0]);
        var name = t(b[1], { n: n });
        btn.setAttribute('aria-label', name);
        btn.title = name;
        btn.disabled = locked || deleting || b[2];
      });
    });
  }

  // The snapshot is the complete list: add missing tiles, drop the others,
  // and order them by position. Tiles are keyed by image id, never duplicated.
  function reconcile(images) {
    var list = images.filter(function (im) {
      return im && (typeof im.id === 'string' || typeof im.id === 'number');
    }).sort(function (a, b) { return (Number(a.position) || 0) - (Number(b.position) || 0); });

    var keep = new Set(list.map(function (im) { return String(im.id); }));
    tiles.forEach(function (tile, id) {
      if (!keep.has(id)) { tile.remove(); tiles.delete(id); }
    });

    var prev = null;
    list.forEach(function (im) {
      var id = String(im.id);
      var tile = tiles.get(id);
      if (!tile) { tile = buildTile(im); tiles.set(id, tile); }
      var expected = prev ? prev.nextSibling : els.grid.firstChild;
      if (tile !== expected) els.grid.insertBefore(tile, expected);
      prev = tile;
    });
    renderEmpty();
    labelTiles();
  }

  function clearTiles() {
    tiles.forEach(function (tile) { tile.remove(); });
    tiles.clear();
    clearProgress();
    renderEmpty();
  }

  // ---------- session lifecycle ----------

  function applySession(data) {
    if (!session || !data || data.identifier !== session.identifier) return;
    if (typeof data.version === 'number' && data.version < session.version) return;
    if (typeof data.version === 'number') session.version = data.version;
    if (typeof data.status === 'string') session.status = data.status;
    if (typeof data.image_count === 'number') session.imageCount = data.image_count;
    if (typeof data.max_images === 'number') session.maxImages = data.max_images;
    if (typeof data.expires_at === 'string') session.expiresAt = Date.parse(data.expires_at);
    renderStatus();
    renderCount();
    tick();
    if (isTerminal(session.status)) finishStream();
  }

  // ---------- uploads in flight (`progress` events) ----------

  function progressText(name, values) {
    var lang = (document.documentElement.getAttribute('lang') || 'en').toLowerCase();
    var key = /^zh-(hant|tw|hk|mo)/.test(lang) ? 'zh-Hant' : (lang.indexOf('zh') === 0 ? 'zh-Hans' : 'en');
    var text = PROGRESS_TEXT[key][name];
    Object.keys(values).forEach(function (k) { text = text.split('{' + k + '}').join(String(values[k])); });
    return text;
  }

  function megabytes(bytes) { return (Math.round(bytes / 104857.6) / 10).toFixed(1); }

  function applyProgress(data) {
    if (!session || !data || data.identifier !== session.identifier || !Array.isArray(data.files)) return;
    var live = new Map();
    data.files.forEach(function (f) {
      if (!f || typeof f.upload_id !== 'string') return;
      var item = { received: Number(f.received) || 0, total: typeof f.total === 'number' ? f.total : null, done: false };
      live.set(f.upload_id, item);
      batch.set(f.upload_id, item);
    });
    batch.forEach(function (item, id) {
      if (!live.has(id) && !item.done) { item.done = true; if (item.total !== null) item.received = item.total; }
    });
    if (live.size === 0) batch.clear();
    renderPlaceholders(live);
    renderProgress();
  }

  function renderProgress() {
    if (!progressLine) {
      progressLine = document.createElement('p');
      progressLine.className = 'progress-line muted';
      progressLine.setAttribute('aria-live', 'polite');
      var line = els.status.parentNode;
      line.parentNode.insertBefore(progressLine, line.nextSibling);
    }
    var n = batch.size, done = 0, received = 0, total = 0;
    batch.forEach(function (item) {
      if (item.done) done++;
      received += item.received;
      total += item.total !== null ? item.total : item.received;
    });
    progressLine.hidden = n === 0;
    progressLine.textContent = n === 0 ? '' : progressText('line', {
      i: Math.min(done + 1, n), n: n, a: megabytes(received), b: megabytes(total)
    });
  }

  function renderPlaceholders(live) {
    inFlight.forEach(function (tile, id) {
      if (!live.has(id)) { tile.remove(); inFlight.delete(id); }
    });
    live.forEach(function (item, id) {
      var tile = inFlight.get(id);
      if (!tile) {
        tile = document.createElement('figure');
        tile.className = 'tile tile-pending';
        tile.setAttribute('data-upload-id', id);
        var bar = document.createElement('progress');
        bar.max = 1;
        var caption = document.createElement('figcaption');
        caption.className = 'tile-label';
        tile.appendChild(bar);
        tile.appendChild(caption);
        inFlight.set(id, tile);
        els.grid.appendChild(tile);
      }
      var f = item.total ? Math.min(1, item.received / item.total) : 0;
      tile.querySelector('progress').value = f;
      tile.querySelector('figcaption').textContent = progressText('tile', { p: Math.floor(f * 100) });
    });
    renderEmpty();
  }

  function clearProgress() {
    batch.clear();
    renderPlaceholders(new Map());
    if (progressLine) renderProgress();
  }

  function applySnapshot(images, lastEventId) {
    if (!Array.isArray(images)) return;
    var v = Number(lastEventId);
    if (lastEventId !== '' && isFinite(v)) {
      if (v < snapshotVersion) return;
      snapshotVersion = v;
    }
    lastImages = images;
    reconcile(images);
    if (session) {
      // The snapshot is as new as its version: an older session answer (a late GET, say)
      // must not bring back an older count.
      if (lastEventId !== '' && isFinite(v)) session.version = Math.max(session.version, v);
      session.imageCount = tiles.size;
      renderCount();
    }
  }

  function stopStream() {
    if (closeTimer) { clearTimeout(closeTimer); closeTimer = 0; }
    if (source) { source.close(); source = null; }
    els.conn.hidden = true;
  }

  // The final session event is followed by its snapshot; close after that
  // snapshot, or shortly after, so the browser does not try to reconnect.
  function finishStream() {
    if (!source || closeTimer) return;
    closeTimer = setTimeout(stopStream, 1500);
  }

  function eventNameOf(eventsUrl) {
    try {
      return new URL(eventsUrl, window.location.origin).searchParams.get('event') || 'upload_by_qr';
    } catch (e) { return 'upload_by_qr'; }
  }

  function connect() {
    var url = safeUrl(session.eventsUrl);
    if (!url) { showError(t('no_events_url')); return; }
    var es = new EventSource(url);
    source = es;

    es.addEventListener('open', function () {
      if (es !== source) return;
      els.conn.hidden = true;
    });
    es.addEventListener('session', function (ev) {
      if (es !== source) return;
      var data;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      applySession(data);
    });
    es.addEventListener(eventNameOf(url), function (ev) {
      if (es !== source) return;
      var data;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      applySnapshot(data, ev.lastEventId);
      if (closeTimer) stopStream();
    });
    es.addEventListener('progress', function (ev) {
      if (es !== source) return;
      var data;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      applyProgress(data);
    });
    es.addEventListener('error', function () {
      if (es !== source) return;
      if (session && isTerminal(session.status)) { stopStream(); return; }
      if (es.readyState === EventSource.CONNECTING) {
        els.conn.textContent = t('reconnecting');
        els.conn.hidden = false;
      } else if (es.readyState === EventSource.CLOSED) {
        // The server ended the stream for good (204 for a finished session,
        // or an error answer). Ask for the session once to show its status.
        source = null;
        refreshSession();
      }
    });
  }

  function refreshSession() {
    if (!session) return;
    var gen = generation;
    api('GET', sessionPath('')).then(function (data) {
      if (gen !== generation) return;
      applySession(data);
      if (!isTerminal(session.status)) {
        els.conn.textContent = t('live_stopped_reload');
        els.conn.hidden = false;
      }
    }, function (err) {
      if (gen !== generation) return;
      els.conn.textContent = t('live_stopped');
      els.conn.hidden = false;
      showError(err.message);
    });
  }

  function startSession(data, memberId, receivedAt) {
    var created = Date.parse(data.created_at);
    session = {
      identifier: String(data.identifier),
      memberId: typeof data.member_id === 'number' ? data.member_id : memberId,
      status: String(data.status || 'open'),
      imageCount: Number(data.image_count) || 0,
      maxImages: Number(data.max_images) || 0,
      expiresAt: Date.parse(data.expires_at),
      version: typeof data.version === 'number' ? data.version : -1,
      eventsUrl: data.events_url,
      // Server time minus client time, so the countdown follows the server.
      clockOffset: isFinite(created) ? Math.max(-86400000, Math.min(86400000, created - receivedAt)) : 0
    };
    if (Math.abs(session.clockOffset) < 2000) session.clockOffset = 0;
    snapshotVersion = -1;
    lastImages = null;
    clearTiles();

    var qr = safeUrl(data.qr_svg_url);
    if (qr) {
      els.qr.setAttribute('src', qr);
      els.qr.hidden = false;
      els.qrPlaceholder.hidden = true;
    } else {
      els.qrPlaceholder.textContent = t('no_qr');
    }

    var upload = safeUrl(data.upload_url);
    els.link.textContent = upload || '';
    if (upload) els.link.setAttribute('href', upload); else els.link.removeAttribute('href');
    els.copy.disabled = !upload;

    renderStatus();
    renderCount();
    tick();
    if (!isTerminal(session.status)) connect();
  }

  function createSession() {
    var raw = els.member.value.trim();
    var memberId = Number(raw);
    if (raw === '' || !Number.isInteger(memberId) || memberId < 0 || memberId > MAX_MEMBER_ID) {
      showError(t('member_id_invalid', { max: MAX_MEMBER_ID }));
      els.member.focus();
      return;
    }
    var gen = ++generation;
    stopStream();
    session = null;
    document.body.classList.remove('is-closed');
    clearTiles();
    showError('');
    els.newQr.disabled = true;
    els.done.disabled = true;
    els.copy.disabled = true;
    els.qr.hidden = true;
    els.qr.removeAttribute('src');
    els.qrPlaceholder.textContent = t('creating_qr');
    els.qrPlaceholder.hidden = false;
    els.link.textContent = '';
    els.link.removeAttribute('href');
    els.status.textContent = t('creating_session');
    els.status.removeAttribute('data-status');
    els.count.textContent = t('count', { count: 0, max: 0 });
    els.countdown.textContent = '--:--';

    api('POST', API, { member_id: memberId }).then(function (data) {
      if (gen !== generation) return;
      if (!data || !data.identifier) throw new Error(t('server_no_session'));
      startSession(data, memberId, Date.now());
    }).catch(function (err) {
      if (gen !== generation) return;
      els.status.textContent = t('no_session');
      els.qrPlaceholder.textContent = t('no_qr_short');
      showError(err.message);
    }).then(function () {
      if (gen === generation) els.newQr.disabled = false;
    });
  }

  function deleteImage(tile) {
    if (!session) return;
    var id = tile.getAttribute('data-image-id');
    var btn = tile.querySelector('.delete');
    var gen = generation;
    tile.classList.add('is-deleting');
    labelTiles();
    showError('');
    api('DELETE', sessionPath('/images/' + encodeURIComponent(id))).then(function () {
      remove();
    }, function (err) {
      if (gen !== generation) return;
      if (err.status === 404) { remove(); return; }
      tile.classList.remove('is-deleting');
      labelTiles();
      showError(err.message);
    });
    function remove() {
      if (gen !== generation || tiles.get(id) !== tile) return;
      tile.remove();
      tiles.delete(id);
      renderEmpty();
      labelTiles();
    }
  }

  // ---------- order ----------

  function order() {
    return photoTiles().map(function (tile) {
      return tile.getAttribute('data-image-id');
    });
  }

  // Moves a tile to index `to` at once, then asks the server; the snapshot that
  // follows (or the answer) is the truth, and a refusal puts the server's order back.
  function moveTile(tile, to, focusClass) {
    if (!session || isTerminal(session.status)) return;
    var list = photoTiles();
    var from = list.indexOf(tile);
    to = Math.max(0, Math.min(list.length - 1, to));
    if (from < 0 || from === to) return;
    list.splice(from, 1);
    list.splice(to, 0, tile);
    list.forEach(function (el) { els.grid.appendChild(el); });
    labelTiles();
    var focus = focusClass && tile.querySelector('.' + focusClass);
    if (focus && focus.disabled) focus = tile.querySelector('.tile-btn:not(:disabled)');
    if (focus) focus.focus();
    els.orderLive.textContent = t('moved_to', { n: to + 1, count: list.length });
    sendOrder();
  }

  function sendOrder() {
    var gen = generation;
    showError('');
    api('PUT', sessionPath('/images/order'), { image_ids: order() }).then(function (data) {
      if (gen !== generation) return;
      if (data && Array.isArray(data.images)) reconcile(data.images);
    }, function (err) {
      if (gen !== generation) return;
      showError(err.message);
      if (lastImages) reconcile(lastImages);
    });
  }

  function onTileButton(btn) {
    var tile = btn.closest('.tile');
    if (!tile || btn.disabled) return;
    var at = photoTiles().indexOf(tile);
    if (btn.classList.contains('move-earlier')) moveTile(tile, at - 1, 'move-earlier');
    else if (btn.classList.contains('move-later')) moveTile(tile, at + 1, 'move-later');
    else if (btn.classList.contains('make-cover')) moveTile(tile, 0, 'move-later');
  }

  function onDragStart(ev) {
    var tile = ev.target.closest && ev.target.closest('.tile');
    if (!tile || !tile.draggable) return;
    dragged = tile;
    tile.classList.add('is-dragging');
    ev.dataTransfer.effectAllowed = 'move';
    try { ev.dataTransfer.setData('text/plain', tile.getAttribute('data-image-id')); } catch (e) { /* ignore */ }
  }

  function onDragOver(ev) {
    if (!dragged) return;
    ev.preventDefault();
    ev.dataTransfer.dropEffect = 'move';
  }

  function onDrop(ev) {
    if (!dragged) return;
    ev.preventDefault();
    var tile = dragged;
    var target = ev.target.closest && ev.target.closest('.tile');
    var list = photoTiles();
    var to = list.length - 1;
    if (target && target !== tile) {
      var rect = target.getBoundingClientRect();
      var after = ev.clientX > rect.left + rect.width / 2;
      var at = list.indexOf(target);
      var from = list.indexOf(tile);
      to = at + (after ? 1 : 0) - (from < at ? 1 : 0);
    } else if (target === tile) {
      to = list.indexOf(tile);
    }
    endDrag();
    moveTile(tile, to, null);
  }

  function endDrag() {
    if (dragged) dragged.classList.remove('is-dragging');
    dragged = null;
  }

  function complete() {
    if (!session) return;
    var gen = generation;
    els.done.disabled = true;
    showError('');
    api('POST', sessionPath('/complete')).then(function (data) {
      if (gen !== generation) return;
      if (data && data.identifier === session.identifier) applySession(data);
      session.status = 'completed';
      renderStatus();
      tick();
      finishStream();
    }, function (err) {
      if (gen !== generation) return;
      els.done.disabled = isTerminal(session.status);
      showError(err.message);
    });
  }

  function copyLink() {
    var text = els.link.textContent;
    if (!text) return;
    function flash(label) {
      els.copy.textContent = label;
      setTimeout(function () { els.copy.textContent = t('copy_link'); }, 1500);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { flash(t('copied')); }, selectLink);
    } else {
      selectLink();
    }
    function selectLink() {
      var range = document.createRange();
      range.selectNodeContents(els.link);
      var sel = window.getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      var ok = false;
      try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
      flash(ok ? t('copied') : t('press_ctrl_c'));
    }
  }

  // ---------- wiring ----------

  els.form.addEventListener('submit', function (ev) {
    ev.preventDefault();
    createSession();
  });
  els.done.addEventListener('click', complete);
  els.copy.addEventListener('click', copyLink);
  els.grid.addEventListener('click', function (ev) {
    var tool = ev.target.closest('.tile-btn');
    if (tool) { onTileButton(tool); return; }
    var btn = ev.target.closest('.delete');
    if (!btn || btn.disabled) return;
    var tile = btn.closest('.tile');
    if (tile) deleteImage(tile);
  });
  els.grid.addEventListener('dragstart', onDragStart);
  els.grid.addEventListener('dragover', onDragOver);
  els.grid.addEventListener('drop', onDrop);
  els.grid.addEventListener('dragend', endDrag);
  window.addEventListener('pagehide', stopStream);
  window.addEventListener('pageshow', function (ev) {
    // Back/forward cache: the stream was closed on pagehide, open it again.
    if (ev.persisted && session && !source && !isTerminal(session.status)) connect();
  });

  setInterval(tick, 1000);
  renderEmpty();
  createSession();
})();
