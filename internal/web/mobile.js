/*
 * qrupload — mobile page (served at "/m/{identifier}", opened from the QR code).
 *
 * Reads the upload token from the URL fragment (#t=TOKEN), keeps it in memory
 * and in sessionStorage (keyed by identifier, so a reload works), and removes
 * the fragment from the address bar. The token is sent only in the
 * "Authorization: Bearer" header, never in a URL. The page shows the remaining
 * quota, uploads each chosen file as its own request (at most 2 at a time,
 * with a progress bar, an Idempotency-Key reused on retry, and a clear error
 * message), and lists the uploaded photos with Delete, Move up and Move down
 * buttons each (the first photo is the cover).
 *
 * The list is live: the page holds the session's SSE stream while it is
 * visible, so a reorder, a delete or the completion on the computer shows here
 * without any action on the phone. EventSource sends no headers, so every
 * (re)connect first trades the token (in the Authorization header) for a
 * single-use stream ticket, and the stream's URL carries only that ticket.
 *
 * Strings come from the page's JSON data block (#i18n), in the language the
 * server chose from Accept-Language; sizes and percentages go through Intl.
 *
 * Rule: data from the server (and file names) goes into the page only through
 * textContent and attributes/properties of elements built with createElement.
 * Never parse any string as HTML (no HTML-string sinks, no writing into the document).
 */
'use strict';

(function () {
  var STRINGS = readStrings();
  var LANG = document.documentElement.lang || 'en';
  var MAX_PARALLEL = 2;
  var MIB = 1048576;
  var STORAGE_PREFIX = 'qrupload.token.';

  function $(id) { return document.getElementById(id); }
  var els = {
    notice: $('notice'), noticeText: $('notice-text'), noticeRetry: $('notice-retry'),
    uploader: $('uploader'), picker: $('picker'), file: $('file'),
    quota: $('quota'), expires: $('expires'), uploads: $('uploads'),
    photosSection: $('photos-section'), photos: $('photos'), photosEmpty: $('photos-empty'),
    photoCount: $('photo-count'), live: $('live')
  };

  var identifier = readIdentifier();
  var token = identifier ? readToken(identifier) : null;
  var base = identifier ? '/v1/api/upload-sessions/' + encodeURIComponent(identifier) : '';

  var info = null;          // limits from upload-info
  var clockOffset = 0;      // server time minus client time
  var ready = false;        // upload-info loaded and the session is open
  var closed = false;       // the link is invalid or the session finished
  var photos = new Map();   // image id -> { el, image, seq }
  var photoSeq = 0;         // bumped for each photo added here
  var deleted = new Set();  // ids deleted from this page, never shown again
  var jobs = [];            // uploads, in the order chosen
  var active = 0;
  // Resumable uploads (upload_queue.js); without it, one multipart request per photo.
  var queue = null;
  var keepOpen = null;      // "keep this page open" while the queue sends
  // The server's lists of photos carry the session's version: the newest one
  // applied here, and the photo count when it was, so an older list is skipped
  // and a photo uploaded from here since is not dropped by a list that predates it.
  var applied = -1;
  var listSeq = 0;
  var moving = 0;           // reorders sent from here and not answered yet
  var held = null;          // the newest list that came while they were on their way
  // The live stream (see "live stream" below).
  var live = { url: null, source: null, gen: 0, asking: false, timer: 0, delay: 1000 };
  var RETRY_MIN = 1000;
  var RETRY_MAX = 30000;

  // ---------- strings ----------

  function readStrings() {
    var el = document.getElementById('i18n');
    try { return JSON.parse(el ? el.textContent : '{}') || {}; } catch (e) { return {}; }
  }

  function has(key) { return Object.prototype.hasOwnProperty.call(STRINGS, key); }

  // The string for key, with {name} replaced from vars.
  function t(key, vars) {
    var text = has(key) ? STRINGS[key] : key;
    return text.replace(/\{(\w+)\}/g, function (m, name) {
      return vars && vars[name] !== undefined ? String(vars[name]) : m;
    });
  }

  function number(value, options) {
    try { return new Intl.NumberFormat(LANG, options).format(value); } catch (e) { return String(value); }
  }

  // ---------- token and identifier ----------

  function readIdentifier() {
    var m = /^\/m\/([^/]+)\/?$/.exec(window.location.pathname);
    if (!m) return null;
    try { return decodeURIComponent(m[1]); } catch (e) { return null; }
  }

  function readToken(id) {
    var key = STORAGE_PREFIX + id;
    var fromHash = null;
    var hash = window.location.hash;
    if (hash && hash.length > 1) {
      fromHash = new URLSearchParams(hash.slice(1)).get('t');
      // Drop the fragment so the token is not shared along with the address.
      try {
        history.replaceState(history.state, '', window.location.pathname + window.location.search);
      } catch (e) { /* ignore */ }
    }
    if (fromHash) {
      try { sessionStorage.setItem(key, fromHash); } catch (e) { /* storage may be off */ }
      return fromHash;
    }
    try { return sessionStorage.getItem(key); } catch (e) { return null; }
  }

  // ---------- helpers ----------

  function unit(value, name, digits) {
    return number(value, { style: 'unit', unit: name, unitDisplay: 'short', maximumFractionDigits: digits });
  }

  // Megabytes, e.g. "15 MB" (one decimal below 10).
  function mb(bytes) {
    var v = bytes / MIB;
    return unit(v, 'megabyte', v >= 10 ? 0 : 1);
  }

  function fileSize(bytes) {
    if (bytes < 1024) return unit(bytes, 'byte', 0);
    if (bytes < MIB) return unit(Math.max(1, Math.round(bytes / 1024)), 'kilobyte', 0);
    return mb(bytes);
  }

  function uuid() {
    if (window.crypto && typeof window.crypto.randomUUID === 'function') return window.crypto.randomUUID();
    var b = window.crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x < 16 ? '0' : '') + x.toString(16); }).join('');
    return h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) + '-' + h.slice(20);
  }

  function safeUrl(value) {
    if (typeof value !== 'string' || value === '') return null;
    try {
      var u = new URL(value, window.location.origin);
      return (u.protocol === 'http:' || u.protocol === 'https:') ? u.href : null;
    } catch (e) { return null; }
  }

  function parseJson(text) {
    if (!text) return null;
    try { return JSON.parse(text); } catch (e) { return null; }
  }

  function reasonOf(status, data) {
    if (data && typeof data.reason === 'string' && data.reason) return data.reason;
    switch (status) {
      case 401: return 'UNAUTHENTICATED';
      case 404: return 'NOT_FOUND';
      case 409: return 'SESSION_CLOSED';
      case 413: return 'PAYLOAD_TOO_LARGE';
      case 415: return 'UNSUPPORTED_MEDIA_TYPE';
      case 422: return 'UNPROCESSABLE_IMAGE';
      case 429: return 'RATE_LIMITED';
      default: return status >= 500 ? 'INTERNAL' : 'UNKNOWN';
    }
  }

  function showNotice(text, canRetry) {
    els.noticeText.textContent = text;
    els.noticeRetry.hidden = !canRetry;
    els.notice.hidden = false;
  }

  function hideNotice() { els.notice.hidden = true; }

  // ---------- page states ----------

  function lockPicker() {
    els.file.disabled = true;
    els.picker.classList.add('is-disabled');
  }

  function failQueued(message) {
    jobs.forEach(function (job) {
      if (job.state === 'queued') setJob(job, 'error', message, false);
    });
  }

  function setInvalid() {
    closed = true;
    ready = false;
    stopStream();
    lockPicker();
    showNotice(t('link_invalid'), false);
    failQueued(t('reason_NOT_FOUND'));
    els.uploader.hidden = true;
    els.photosSection.hidden = true;
  }

  // The session no longer takes photos: `message` says why when it is known
  // (completed on the computer, or expired), else a general one.
  function setFinished(hideEverything, message) {
    closed = true;
    ready = false;
    stopStream();
    lockPicker();
    showNotice(message || t('session_finished'), false);
    failQueued(t('reason_SESSION_CLOSED'));
    els.quota.textContent = t('uploads_closed');
    els.expires.textContent = '';
    photos.forEach(function (p) {
      p.el.querySelectorAll('button').forEach(function (btn) { btn.hidden = true; });
    });
    if (hideEverything) {
      els.uploader.hidden = true;
      els.photosSection.hidden = true;
    }
  }

  // ---------- quota and expiry ----------

  // Session bytes left, from the session limit and the photos known here.
  function bytesRemaining() {
    if (!info || !isFinite(info.max_session_bytes)) return Infinity;
    var used = 0;
    photos.forEach(function (p) { if (typeof p.image.size === 'number') used += p.image.size; });
    return info.max_session_bytes - used;
  }

  function renderQuota() {
    if (!info || closed) return;
    var left = Math.max(0, info.max_images - photos.size);
    var text;
    if (left === 0) {
      text = t('limit_reached_n', { max: info.max_images });
    } else {
      text = t('photos_left', { left: left, max: info.max_images, size: mb(info.max_image_bytes) });
      var bytesLeft = bytesRemaining();
      if (bytesLeft < info.max_image_bytes) text += ' · ' + t('total_left', { size: mb(Math.max(0, bytesLeft)) });
    }
    els.quota.textContent = text;
  }

  function pad(n) { return n < 10 ? '0' + n : String(n); }

  function tick() {
    if (!info || closed) return;
    var expiresAt = Date.parse(info.expires_at);
    if (!isFinite(expiresAt)) { els.expires.textContent = ''; return; }
    var left = Math.max(0, Math.ceil((expiresAt - (Date.now() + clockOffset)) / 1000));
    if (left === 0) { setFinished(false, t('session_expired')); return; }
    els.expires.textContent = t('link_expires', { time: pad(Math.floor(left / 60)) + ':' + pad(left % 60) });
  }

  // ---------- photos ----------

  function photoButton(cls, text) {
    var b = document.createElement('button');
    b.type = 'button';
    b.className = cls;
    b.textContent = text;
    b.hidden = closed;
    return b;
  }

  function buildPhoto(img) {
    var id = String(img.id);
    var li = document.createElement('li');
    li.className = 'photo';
    li.setAttribute('data-image-id', id);

    var thumb = document.createElement('img');
    var src = safeUrl(img.thumbnail_url) || safeUrl(img.url);
    if (src) thumb.setAttribute('src', src);
    thumb.setAttribute('decoding', 'async');

    var badge = document.createElement('span');
    badge.className = 'cover-badge';
    badge.textContent = t('cover');

    var moves = document.createElement('div');
    moves.className = 'photo-moves';
    moves.appendChild(photoButton('move-up', '\u2191'));
    moves.appendChild(photoButton('move-down', '\u2193'));

    li.appendChild(thumb);
    li.appendChild(badge);
    li.appendChild(moves);
    li.appendChild(photoButton('delete', t('delete')));
    return li;
  }

  // Names and enabled buttons follow the photos' order.
  function labelPhotos() {
    var list = Array.prototype.slice.call(els.photos.children);
    list.forEach(function (li, i) {
      var n = i + 1;
      li.classList.toggle('is-cover', i === 0);
      li.querySelector('img').setAttribute('alt', t('photo_n', { n: n }));
      li.querySelector('.delete').setAttribute('aria-label', t('delete_photo_n', { n: n }));
      var up = li.querySelector('.move-up');
      var down = li.querySelector('.move-down');
      up.setAttribute('aria-label', t('move_up_n', { n: n }));
      up.title = t('move_up_n', { n: n });
      down.setAttribute('aria-label', t('move_down_n', { n: n }));
      down.title = t('move_down_n', { n: n });
      var busy = li.classList.contains('is-deleting');
      up.disabled = closed || busy || i === 0;
      down.disabled = closed || busy || i === list.length - 1;
    });
  }

  function renderPhotos() {
    var list = Array.from(photos.values()).sort(function (a, b) {
      return (Number(a.image.position) || 0) - (Number(b.image.position) || 0);
    });
    // Moving a photo's element takes the focus from its button: give it back, so
    // an order changed on the computer does not lose a keyboard user's place.
    var focused = document.activeElement;
    var prev = null;
    list.forEach(function (p) {
      var expected = prev ? prev.nextSibling : els.photos.firstChild;
      if (p.el !== expected) els.photos.insertBefore(p.el, expected);
      prev = p.el;
    });
    if (focused && focused !== document.activeElement && els.photos.contains(focused)) focused.focus();
    els.photosEmpty.hidden = photos.size > 0;
    els.photoCount.textContent = photos.size ? t('photo_count', { count: number(photos.size) }) : '';
    labelPhotos();
    renderQuota();
  }

  function addPhotos(images) {
    if (!Array.isArray(images)) return;
    images.forEach(function (img) {
      if (!img || (typeof img.id !== 'string' && typeof img.id !== 'number')) return;
      var id = String(img.id);
      if (photos.has(id)) { photos.get(id).image.position = img.position; return; }
      if (deleted.has(id)) return;
      photos.set(id, { el: buildPhoto(img), image: img, seq: ++photoSeq });
    });
    renderPhotos();
  }

  // upload-info lists every photo of the session: drop the ones deleted
  // elsewhere (e.g. on the desktop page) and add the missing ones.
  // Photos added after the request started (seq > sinceSeq) are kept.
  function syncPhotos(images, sinceSeq) {
    if (!Array.isArray(images)) return;
    var keep = new Set(images.filter(Boolean).map(function (img) { return String(img.id); }));
    Array.from(photos.keys()).forEach(function (id) {
      var p = photos.get(id);
      if (!keep.has(id) && p.seq <= sinceSeq) { p.el.remove(); photos.delete(id); }
    });
    addPhotos(images);
  }

  // A complete list of the session's photos at `version` (a stream snapshot,
  // upload-info or a reorder's answer): the server's order and deletions win,
  // unless this page already shows a newer version. While moves sent from here
  // are on their way, a list waits (the newest one is kept), so it cannot put
  // back the order the phone has just left; it is applied once they are answered.
  function applyList(images, version, sinceSeq) {
    if (!Array.isArray(images)) return;
    var known = typeof version === 'number' && isFinite(version);
    if (known && version < applied) return;
    if (moving > 0) {
      if (!held || !(known && held.known && version < held.version)) {
        held = { images: images, version: version, known: known, sinceSeq: sinceSeq };
      }
      return;
    }
    if (known) applied = version;
    syncPhotos(images, sinceSeq);
    listSeq = photoSeq;
  }

  // A reorder sent from here is answered (`images` null when it failed).
  function moveAnswered(images, version) {
    moving--;
    if (images) applyList(images, version, listSeq);
    if (moving > 0) return;
    var waiting = held;
    held = null;
    if (waiting) applyList(waiting.images, waiting.version, waiting.sinceSeq);
    else if (!images) loadInfo(true);
  }

  function removePhoto(id) {
    var p = photos.get(id);
    if (!p) return;
    p.el.remove();
    photos.delete(id);
    renderPhotos();
  }

  function deletePhoto(li) {
    var id = li.getAttribute('data-image-id');
    var btn = li.querySelector('.delete');
    btn.disabled = true;
    btn.textContent = t('deleting');
    li.classList.add('is-deleting');
    labelPhotos();
    fetch(base + '/images/' + encodeURIComponent(id), {
      method: 'DELETE',
      headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' },
      cache: 'no-store'
    }).then(function (res) {
      if (res.status === 204 || res.ok || res.status === 404) { deleted.add(id); removePhoto(id); return; }
      return res.text().then(function (text) {
        var data = parseJson(text);
        if (reasonOf(res.status, data) === 'SESSION_CLOSED') { restore(); setFinished(false); return; }
        restore(t('could_not_delete', { message: messageFor(res.status, data) }));
      });
    }, function () {
      restore(t('network_error'));
    });
    function restore(message) {
      li.classList.remove('is-deleting');
      btn.textContent = t('delete');
      btn.disabled = closed;
      labelPhotos();
      if (message) showNotice(message, false);
    }
  }

  // Moves a photo one place up or down, then sends the whole order; the answer
  // is the truth (a refusal puts the server's order back: the newest list the
  // stream sent meanwhile, else upload-info's).
  function movePhoto(li, delta) {
    var list = Array.prototype.slice.call(els.photos.children);
    var from = list.indexOf(li);
    var to = from + delta;
    if (from < 0 || to < 0 || to >= list.length || closed) return;
    list.splice(from, 1);
    list.splice(to, 0, li);
    var ids = list.map(function (el) { return el.getAttribute('data-image-id'); });
    ids.forEach(function (id, i) { var p = photos.get(id); if (p) p.image.position = i + 1; });
    renderPhotos();
    var again = li.querySelector(delta < 0 ? '.move-up' : '.move-down');
    if (again && again.disabled) again = li.querySelector('.move-up:not(:disabled), .move-down:not(:disabled)');
    if (again) again.focus();
    moving++;
    fetch(base + '/images/order', {
      method: 'PUT',
      headers: { Authorization: 'Bearer ' + token, Accept: 'application/json', 'Content-Type': 'application/json' },
      cache: 'no-store',
      body: JSON.stringify({ image_ids: ids })
    }).then(function (res) {
      return res.text().then(function (text) {
        var data = parseJson(text);
        if (res.ok && data && Array.isArray(data.images)) { moveAnswered(data.images, data.version); return; }
        moveAnswered(null);
        if (res.ok) return;
        if (reasonOf(res.status, data) === 'SESSION_CLOSED') { setFinished(false); return; }
        showNotice(t('could_not_reorder', { message: messageFor(res.status, data) }), false);
      });
    }, function () {
      moveAnswered(null);
      showNotice(t('could_not_reorder', { message: t('network_error') }), false);
    });
  }

  // ---------- uploads ----------

  function buildJobRow(file) {
    var li = document.createElement('li');
    li.className = 'upload';
    var head = document.createElement('div');
    head.className = 'upload-head';
    var name = document.createElement('span');
    name.className = 'upload-name';
    name.textContent = file.name || t('default_name');
    var size = document.createElement('span');
    size.className = 'upload-size muted';
    size.textContent = fileSize(file.size);
    head.appendChild(name);
    head.appendChild(size);

    var bar = document.createElement('progress');
    bar.className = 'upload-bar';
    bar.max = 1;
    bar.value = 0;
    bar.setAttribute('aria-label', t('upload_progress'));

    var foot = document.createElement('div');
    foot.className = 'upload-foot';
    var state = document.createElement('span');
    state.className = 'upload-state';
    var retry = document.createElement('button');
    retry.type = 'button';
    retry.className = 'retry btn btn-small';
    retry.textContent = t('retry');
    retry.hidden = true;
    foot.appendChild(state);
    foot.appendChild(retry);

    li.appendChild(head);
    li.appendChild(bar);
    li.appendChild(foot);
    return { li: li, bar: bar, state: state, retry: retry, size: size };
  }

  function setJob(job, state, text, retryable) {
    job.state = state;
    job.row.li.setAttribute('data-state', state);
    job.row.state.textContent = text;
    job.row.retry.hidden = !(state === 'error' && retryable);
    if (state === 'done') job.row.bar.value = 1;
  }

  function addFiles(fileList) {
    // Into the queue's store at once, so a reload keeps photos that were still waiting.
    Array.prototype.forEach.call(fileList, function (file) { addJob(file, queue ? queue.add(file) : null); });
    pump();
  }

  function addJob(file, entry) {
    var job = { file: file, key: uuid(), state: 'queued', row: buildJobRow(file), entry: entry };
    if (entry) job.row.li.querySelector('.upload-name').textContent = entry.name;
    job.row.retry.addEventListener('click', function () {
      if (closed || job.state !== 'error') return;
      job.row.bar.value = 0;
      setJob(job, 'queued', t('waiting'), false);
      pump();
    });
    setJob(job, 'queued', t('waiting'), false);
    jobs.push(job);
    els.uploads.appendChild(job.row.li);
  }

  function pump() {
    if (!ready) return;
    for (var i = 0; i < jobs.length && active < MAX_PARALLEL; i++) {
      if (jobs[i].state === 'queued') start(jobs[i]);
    }
  }

  function messageFor(status, data) {
    var reason = reasonOf(status, data);
    if (reason === 'PAYLOAD_TOO_LARGE') {
      return info && isFinite(info.max_image_bytes) ? t('too_big_max', { size: mb(info.max_image_bytes) }) : t('too_big');
    }
    if (has('reason_' + reason)) return t('reason_' + reason);
    if (status >= 500) return t('reason_INTERNAL');
    return (data && typeof data.message === 'string' && data.message) || t('upload_failed', { status: status });
  }

  function start(job) {
    // Courtesy check only: the server decides.
    if (info && job.file.size > info.max_image_bytes) {
      setJob(job, 'error', t('too_big_max', { size: mb(info.max_image_bytes) }), false);
      return;
    }
    if (queue) { startQueued(job); return; }
    active++;
    setJob(job, 'uploading', t('uploading', { percent: number(0, { style: 'percent' }) }), false);
    var bar = job.row.bar;
    bar.value = 0;

    var xhr = new XMLHttpRequest();
    xhr.open('POST', base + '/images');
    xhr.setRequestHeader('Authorization', 'Bearer ' + token);
    xhr.setRequestHeader('Idempotency-Key', job.key);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.addEventListener('progress', function (ev) {
      if (!ev.lengthComputable || !ev.total) return;
      var f = ev.loaded / ev.total;
      bar.value = f;
      job.row.state.textContent = f >= 1 ? t('processing')
        : t('uploading', { percent: number(Math.floor(f * 100) / 100, { style: 'percent' }) });
    });
    xhr.upload.addEventListener('load', function () {
      bar.value = 1;
      job.row.state.textContent = t('processing');
    });
    xhr.addEventListener('load', function () {
      var data = parseJson(xhr.responseText);
      if (xhr.status >= 200 && xhr.status < 300) {
        setJob(job, 'done', t('uploaded'), false);
        addPhotos(data && data.images);
        return;
      }
      var reason = reasonOf(xhr.status, data);
      var retryable = xhr.status >= 500 || xhr.status === 429;
      bar.value = 0;
      setJob(job, 'error', messageFor(xhr.status, data), retryable);
      if (reason === 'SESSION_CLOSED') setFinished(false);
      else if (reason === 'NOT_FOUND' || reason === 'UNAUTHENTICATED') setInvalid();
    });
    function networkError() {
      bar.value = 0;
      setJob(job, 'error', t('network_error'), true);
    }
    xhr.addEventListener('error', networkError);
    xhr.addEventListener('timeout', networkError);
    xhr.addEventListener('abort', networkError);
    xhr.addEventListener('loadend', function () {
      active--;
      pump();
      if (active === 0 && !closed) loadInfo(true);
    });

    var form = new FormData();
    form.append('file', job.file, job.file.name || 'photo');
    xhr.send(form);
  }

  // Through the resumable queue: it resumes by itself after a cut, and after a reload.
  function startQueued(job) {
    active++;
    if (!job.entry) job.entry = queue.add(job.file);
    setJob(job, 'uploading', '', false);
    showKeepOpen();
    queue.upload(job.entry, {
      progress: function (f, text) { job.row.bar.value = f; job.row.state.textContent = text; },
      status: function (text) { job.row.state.textContent = text; },
      sizes: function (text) { job.row.size.textContent = text; },
      done: function () { setJob(job, 'done', t('uploaded'), false); },
      failed: function (status, data) {
        job.entry = null;
        job.row.bar.value = 0;
        var reason = reasonOf(status, data);
        setJob(job, 'error', messageFor(status, data), status >= 500 || status === 429);
        if (reason === 'SESSION_CLOSED') setFinished(false);
        else if (reason === 'UNAUTHENTICATED') setInvalid();
      }
    }).then(function () {
      active--;
      showKeepOpen();
      pump();
      if (active === 0 && !closed) loadInfo(true);
    });
  }

  function showKeepOpen() {
    if (!keepOpen) {
      keepOpen = document.createElement('p');
      keepOpen.className = 'keep-open muted';
      keepOpen.setAttribute('role', 'status');
      keepOpen.textContent = window.QruploadQueue.t('keepOpen');
      els.uploads.parentNode.insertBefore(keepOpen, els.uploads);
    }
    keepOpen.hidden = active === 0;
  }

  function openQueue(maxEdge) {
    if (queue || !window.QruploadQueue) return;
    queue = window.QruploadQueue.create({ identifier: identifier, base: base, token: token, maxEdge: maxEdge });
    // Photos an earlier page of this link did not finish: picked up without a click.
    queue.restore().then(function (entries) {
      entries.forEach(function (entry) { addJob(entry.blob, entry); });
      if (entries.length) showNotice(window.QruploadQueue.t('restored', { n: entries.length }), false);
      pump();
    });
  }

  // ---------- upload-info ----------

  // First call (refresh false): shows the page. Later calls (refresh true, after
  // uploads or when the page becomes visible again) only re-sync photos and
  // quota, and stay quiet on network errors.
  var infoInFlight = false;
  function loadInfo(refresh) {
    refresh = refresh === true;
    if (closed || (refresh && (!ready || infoInFlight))) return;
    infoInFlight = true;
    var sinceSeq = photoSeq;
    if (!refresh) {
      hideNotice();
      els.quota.textContent = t('checking');
    }
    fetch(base + '/upload-info', {
      headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' },
      cache: 'no-store'
    }).then(function (res) {
      var serverDate = Date.parse(res.headers.get('Date') || '');
      return res.text().then(function (text) {
        infoInFlight = false;
        var data = parseJson(text);
        if (!res.ok) {
          var reason = reasonOf(res.status, data);
          if (reason === 'SESSION_CLOSED') { setFinished(!refresh); return; }
          if (reason === 'NOT_FOUND' || reason === 'UNAUTHENTICATED' || res.status === 400) { setInvalid(); return; }
          if (refresh) return;
          els.quota.textContent = '';
          showNotice(messageFor(res.status, data), true);
          return;
        }
        if (!data || typeof data !== 'object') {
          if (!refresh) showNotice(t('unexpected'), true);
          return;
        }
        if (isFinite(serverDate)) {
          var off = serverDate - Date.now();
          clockOffset = Math.abs(off) > 5000 ? off : 0;
        }
        info = {
          max_images: Number(data.max_images) || 0,
          max_image_bytes: Number(data.max_image_bytes) || Infinity,
          max_session_bytes: typeof data.max_session_bytes === 'number' ? data.max_session_bytes : Infinity,
          expires_at: data.expires_at
        };
        if (data.status === 'completed' || data.status === 'expired') { setFinished(!refresh); return; }
        ready = true;
        openQueue(Number(data.client_max_edge) || null);
        applyList(data.images, data.version, sinceSeq);
        renderQuota();
        tick();
        pump();
        if (typeof data.events_url === 'string' && !live.url) { live.url = data.events_url; startStream(); }
      });
    }, function () {
      infoInFlight = false;
      if (refresh) return;
      els.quota.textContent = '';
      showNotice(t('network_check'), true);
    });
  }

  // ---------- live stream ----------

  // Opens the session's stream with a fresh ticket, unless one is open or on its
  // way, the page is hidden (a hidden page holds no stream: the phone's battery
  // and the server's watchers are spared) or the session is over.
  function startStream() {
    if (!live.url || closed || live.source || live.asking || document.visibilityState === 'hidden') return;
    clearTimeout(live.timer);
    live.timer = 0;
    live.asking = true;
    var gen = live.gen;
    fetch(base + '/stream-ticket', {
      method: 'POST',
      headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' },
      cache: 'no-store'
    }).then(function (res) {
      return res.text().then(function (text) {
        if (gen !== live.gen) return;
        live.asking = false;
        var data = parseJson(text);
        if (res.status === 201 && data && typeof data.ticket === 'string') { openStream(data.ticket); return; }
        var reason = reasonOf(res.status, data);
        if (reason === 'SESSION_CLOSED') { setFinished(false); return; }
        if (reason === 'NOT_FOUND' || reason === 'UNAUTHENTICATED') { setInvalid(); return; }
        streamLater();
      });
    }).catch(function () {
      if (gen !== live.gen) return;
      live.asking = false;
      streamLater();
    });
  }

  function openStream(ticket) {
    var url;
    try {
      url = new URL(live.url, window.location.origin);
    } catch (e) { return; }
    url.searchParams.set('ticket', ticket);
    var eventName = url.searchParams.get('event') || 'upload_by_qr';
    var es = new EventSource(url.href);
    live.source = es;
    es.addEventListener('open', function () {
      if (es !== live.source) return;
      live.delay = RETRY_MIN;
      setLive('');
    });
    es.addEventListener('session', function (ev) {
      if (es !== live.source) return;
      applySession(parseJson(ev.data));
    });
    es.addEventListener(eventName, function (ev) {
      if (es !== live.source) return;
      var version = ev.lastEventId === '' ? NaN : Number(ev.lastEventId);
      applyList(parseJson(ev.data), version, listSeq);
    });
    es.addEventListener('error', function () {
      if (es !== live.source) return;
      // A ticket is good for one connect: EventSource's own retry would be refused.
      es.close();
      live.source = null;
      streamLater();
    });
  }

  // Connects again after a pause that doubles each time (up to 30 s) with
  // jitter, so phones that lost the server together do not come back together.
  function streamLater() {
    if (closed || live.timer) return;
    setLive(t('live_reconnecting'));
    var wait = live.delay / 2 + Math.random() * live.delay / 2;
    live.delay = Math.min(live.delay * 2, RETRY_MAX);
    live.timer = setTimeout(function () { live.timer = 0; startStream(); }, wait);
  }

  function stopStream() {
    live.gen++;
    live.asking = false;
    clearTimeout(live.timer);
    live.timer = 0;
    if (live.source) { live.source.close(); live.source = null; }
    setLive('');
  }

  function setLive(text) {
    if (!els.live) return;
    els.live.textContent = text;
    els.live.hidden = !text;
  }

  // The `session` event: the status (completed or expired on the server ends
  // uploads here), the expiry and the photo limit.
  function applySession(data) {
    if (!data || typeof data !== 'object' || closed) return;
    if (info) {
      if (typeof data.expires_at === 'string') info.expires_at = data.expires_at;
      if (typeof data.max_images === 'number') info.max_images = data.max_images;
    }
    if (data.status === 'completed') { setFinished(false, t('session_completed')); return; }
    if (data.status === 'expired') { setFinished(false, t('session_expired')); return; }
    renderQuota();
    tick();
  }

  // ---------- wiring ----------

  els.file.addEventListener('change', function () {
    var files = els.file.files;
    if (!files || !files.length) return;
    if (closed) { els.file.value = ''; return; }
    addFiles(Array.prototype.slice.call(files));
    els.file.value = ''; // so the same file can be chosen again
  });

  els.photos.addEventListener('click', function (ev) {
    var move = ev.target.closest('.move-up, .move-down');
    if (move) {
      if (!move.disabled) movePhoto(move.closest('.photo'), move.classList.contains('move-up') ? -1 : 1);
      return;
    }
    var btn = ev.target.closest('.delete');
    if (!btn || btn.disabled) return;
    var li = btn.closest('.photo');
    if (li) deletePhoto(li);
  });

  els.noticeRetry.addEventListener('click', function () { loadInfo(false); });
  document.addEventListener('visibilitychange', function () {
    if (document.visibilityState === 'visible') {
      live.delay = RETRY_MIN;
      loadInfo(true);
      startStream();
    } else {
      stopStream();
    }
  });

  if (!identifier || !token) {
    setInvalid();
  } else {
    setInterval(tick, 1000);
    loadInfo(false);
  }
})();
