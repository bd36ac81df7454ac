/*
 * qrupload — desktop page (served at "/").
 *
 * Creates an upload session for a member, shows its QR code and upload link,
 * and follows the session live over Server-Sent Events: "phone connected",
 * the photo count, a countdown to expiry, and a grid of the uploaded photos
 * (reconciled from each complete snapshot, keyed by image id). The member can
 * delete a photo, complete the session with "Done", or start a new session.
 *
 * Rule: data from the server goes into the page only through textContent and
 * attributes/properties of elements built with createElement. Never parse
 * any string as HTML (no HTML-string sinks, no writing into the document).
 */
'use strict';

(function () {
  var STATUS_TEXT = {
    open: 'Waiting for phone…',
    scanned: 'Phone connected',
    completed: 'Done',
    expired: 'Expired'
  };
  var API = '/v1/api/upload-sessions';
  var MAX_MEMBER_ID = 4294967295;

  function $(id) { return document.getElementById(id); }
  var els = {
    form: $('session-form'), member: $('member-id'), newQr: $('new-qr'),
    qr: $('qr'), qrPlaceholder: $('qr-placeholder'),
    status: $('status'), conn: $('conn'), count: $('count'), countdown: $('countdown'),
    link: $('upload-url'), copy: $('copy'), error: $('error'), done: $('done'),
    empty: $('empty'), grid: $('grid')
  };

  var session = null;        // current session, see startSession()
  var source = null;         // current EventSource
  var generation = 0;        // guards against late answers for an old session
  var snapshotVersion = -1;  // version of the last snapshot applied
  var closeTimer = 0;
  var tiles = new Map();     // image id -> tile element
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
          var msg = data && typeof data.message === 'string' && data.message
            ? data.message : 'Request failed (HTTP ' + res.status + ').';
          var err = new Error(msg);
          err.status = res.status;
          err.reason = data && data.reason;
          throw err;
        }
        return data;
      });
    }, function () {
      throw new Error('Network error. Check the connection and try again.');
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
    els.status.textContent = STATUS_TEXT[status] || status;
    els.status.setAttribute('data-status', status);
    els.done.disabled = isTerminal(status);
    var locked = isTerminal(status);
    document.body.classList.toggle('is-closed', locked);
    els.copy.disabled = locked || !els.link.textContent;
    tiles.forEach(function (tile) {
      var btn = tile.querySelector('.delete');
      if (btn && !tile.classList.contains('is-deleting')) btn.disabled = locked;
    });
  }

  function renderCount() {
    if (!session) return;
    els.count.textContent = session.imageCount + ' / ' + session.maxImages + ' photos';
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
    els.countdown.textContent = pad(Math.floor(left / 60)) + ':' + pad(left % 60);
    els.countdown.classList.toggle('is-low', left < 60);
    if (left === 0) renderStatus();
  }

  function renderEmpty() {
    els.empty.hidden = tiles.size > 0 || inFlight.size > 0;
  }

  function buildTile(img) {
    var id = String(img.id);
    var n = Number(img.position) || (tiles.size + 1);
    var tile = document.createElement('figure');
    tile.className = 'tile';
    tile.setAttribute('data-image-id', id);

    var link = document.createElement('a');
    link.className = 'tile-link';
    var href = safeUrl(img.url);
    if (href) link.setAttribute('href', href);
    link.setAttribute('target', '_blank');
    link.setAttribute('rel', 'noopener noreferrer');

    var thumb = document.createElement('img');
    var src = safeUrl(img.thumbnail_url) || href;
    if (src) thumb.setAttribute('src', src);
    thumb.setAttribute('alt', 'Photo ' + n);
    thumb.setAttribute('decoding', 'async');
    link.appendChild(thumb);

    var caption = document.createElement('figcaption');
    var label = document.createElement('span');
    label.className = 'tile-label';
    label.textContent = 'Photo ' + n;
    var del = document.createElement('button');
    del.type = 'button';
    del.className = 'delete';
    del.textContent = 'Delete';
    del.setAttribute('title', 'Delete photo ' + n);
    del.disabled = !session || isTerminal(session.status);
    caption.appendChild(label);
    caption.appendChild(del);

    tile.appendChild(link);
    tile.appendChild(caption);
    return tile;
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
    reconcile(images);
    if (session) {
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
    if (!url) { showError('The server did not give an events URL.'); return; }
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
        els.conn.textContent = 'reconnecting…';
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
        els.conn.textContent = 'live updates stopped — reload the page';
        els.conn.hidden = false;
      }
    }, function (err) {
      if (gen !== generation) return;
      els.conn.textContent = 'live updates stopped';
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
    clearTiles();

    var qr = safeUrl(data.qr_svg_url);
    if (qr) {
      els.qr.setAttribute('src', qr);
      els.qr.hidden = false;
      els.qrPlaceholder.hidden = true;
    } else {
      els.qrPlaceholder.textContent = 'No QR code available.';
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
      showError('Member ID must be a whole number from 0 to ' + MAX_MEMBER_ID + '.');
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
    els.qrPlaceholder.textContent = 'Creating QR code…';
    els.qrPlaceholder.hidden = false;
    els.link.textContent = '';
    els.link.removeAttribute('href');
    els.status.textContent = 'Creating session…';
    els.status.removeAttribute('data-status');
    els.count.textContent = '0 / 0 photos';
    els.countdown.textContent = '--:--';

    api('POST', API, { member_id: memberId }).then(function (data) {
      if (gen !== generation) return;
      if (!data || !data.identifier) throw new Error('The server answered without a session.');
      startSession(data, memberId, Date.now());
    }).catch(function (err) {
      if (gen !== generation) return;
      els.status.textContent = 'No session';
      els.qrPlaceholder.textContent = 'No QR code';
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
    if (btn) btn.disabled = true;
    showError('');
    api('DELETE', sessionPath('/images/' + encodeURIComponent(id))).then(function () {
      remove();
    }, function (err) {
      if (gen !== generation) return;
      if (err.status === 404) { remove(); return; }
      tile.classList.remove('is-deleting');
      if (btn) btn.disabled = isTerminal(session.status);
      showError(err.message);
    });
    function remove() {
      if (gen !== generation || tiles.get(id) !== tile) return;
      tile.remove();
      tiles.delete(id);
      renderEmpty();
    }
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
      setTimeout(function () { els.copy.textContent = 'Copy link'; }, 1500);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { flash('Copied'); }, selectLink);
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
      flash(ok ? 'Copied' : 'Press Ctrl+C');
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
    var btn = ev.target.closest('.delete');
    if (!btn || btn.disabled) return;
    var tile = btn.closest('.tile');
    if (tile) deleteImage(tile);
  });
  window.addEventListener('pagehide', stopStream);
  window.addEventListener('pageshow', function (ev) {
    // Back/forward cache: the stream was closed on pagehide, open it again.
    if (ev.persisted && session && !source && !isTerminal(session.status)) connect();
  });

  setInterval(tick, 1000);
  renderEmpty();
  createSession();
})();
