/*
 * qrupload — the phone's resumable upload queue (tus 1.0), used by mobile.js.
 *
 * Why: phones lose the network in lifts and trains, and their OS suspends or reloads tabs.
 * Each photo is kept in IndexedDB with its tus upload URL until the server has it, so that:
 *  - a dropped connection resumes from the server's offset (HEAD), not from zero, by itself:
 *    on the `online` event and with exponential backoff plus jitter;
 *  - a reload or a killed tab picks the queue up again when the same link is opened; a photo
 *    the server finished answers Offset = Length and is not sent again;
 *  - the screen stays awake (Screen Wake Lock) while photos upload.
 * Optional downscale (upload.client_max_edge, from upload-info) runs in a worker with
 * createImageBitmap + OffscreenCanvas; a file the browser cannot decode goes as it is.
 *
 * Rule: nothing here parses a string as HTML; it builds no markup at all.
 */
'use strict';

(function () {
  var DB_NAME = 'qrupload-queue';
  var STORE = 'files';
  var MAX_BACKOFF_MS = 30000;

  // Every user-visible string of the queue, by name, in the three page languages.
  var STRINGS = {
    en: {
      keepOpen: 'Keep this page open until your photos are uploaded.',
      waitingNetwork: 'Waiting for the network…',
      retryIn: 'Connection lost, retrying in {s} s…',
      resuming: 'Resuming…',
      uploading: 'Uploading… {p}%',
      processing: 'Processing…',
      preparing: 'Preparing…',
      restored: 'Continuing {n} photo(s) from before.',
      sizes: 'Original {a} · sent {b}'
    },
    'zh-Hant': {
      keepOpen: '請保持此頁面開啟，直到相片上傳完成。',
      waitingNetwork: '正在等待網路連線…',
      retryIn: '連線中斷，{s} 秒後重試…',
      resuming: '繼續上傳…',
      uploading: '上傳中… {p}%',
      processing: '處理中…',
      preparing: '準備中…',
      restored: '繼續上傳先前的 {n} 張相片。',
      sizes: '原始 {a} · 上傳 {b}'
    },
    'zh-Hans': {
      keepOpen: '请保持此页面打开，直到照片上传完成。',
      waitingNetwork: '正在等待网络连接…',
      retryIn: '连接中断，{s} 秒后重试…',
      resuming: '继续上传…',
      uploading: '上传中… {p}%',
      processing: '处理中…',
      preparing: '准备中…',
      restored: '继续上传之前的 {n} 张照片。',
      sizes: '原始 {a} · 上传 {b}'
    }
  };

  function language() {
    var lang = (document.documentElement.getAttribute('lang') || 'en').toLowerCase();
    if (lang.indexOf('zh-hant') === 0 || /^zh-(tw|hk|mo)/.test(lang)) return 'zh-Hant';
    if (lang.indexOf('zh') === 0) return 'zh-Hans';
    return 'en';
  }

  function t(name, values) {
    var text = (STRINGS[language()] || STRINGS.en)[name] || STRINGS.en[name] || name;
    Object.keys(values || {}).forEach(function (k) { text = text.split('{' + k + '}').join(String(values[k])); });
    return text;
  }

  // ---------- IndexedDB ----------

  var dbPromise = null;
  function db() {
    if (dbPromise) return dbPromise;
    dbPromise = new Promise(function (resolve) {
      if (!window.indexedDB) { resolve(null); return; }
      var req;
      try { req = indexedDB.open(DB_NAME, 1); } catch (e) { resolve(null); return; }
      req.onupgradeneeded = function () {
        req.result.createObjectStore(STORE, { keyPath: 'id' });
      };
      req.onsuccess = function () { resolve(req.result); };
      req.onerror = function () { resolve(null); };
      req.onblocked = function () { resolve(null); };
    });
    return dbPromise;
  }

  function tx(mode, work) {
    return db().then(function (d) {
      if (!d) return null;
      return new Promise(function (resolve) {
        var result = null;
        var transaction;
        try { transaction = d.transaction(STORE, mode); } catch (e) { resolve(null); return; }
        var store = transaction.objectStore(STORE);
        var req = work(store);
        if (req) req.onsuccess = function () { result = req.result; };
        transaction.oncomplete = function () { resolve(result); };
        transaction.onerror = function () { resolve(null); };
        transaction.onabort = function () { resolve(null); };
      });
    });
  }

  function save(entry) {
    return tx('readwrite', function (s) {
      return s.put({
        id: entry.id, identifier: entry.identifier, name: entry.name, blob: entry.blob,
        originalSize: entry.originalSize, prepared: entry.prepared, url: entry.url, created: entry.created
      });
    });
  }

  function forget(entry) { return tx('readwrite', function (s) { return s.delete(entry.id); }); }

  function loadAll(identifier) {
    return tx('readonly', function (s) { return s.getAll(); }).then(function (rows) {
      return (rows || []).filter(function (r) { return r && r.identifier === identifier && r.blob; })
        .sort(function (a, b) { return a.created - b.created; });
    });
  }

  // ---------- downscale (worker) ----------

  function downscale(blob, maxEdge) {
    if (!maxEdge || typeof Worker === 'undefined' || typeof OffscreenCanvas === 'undefined') {
      return Promise.resolve(blob);
    }
    return new Promise(function (resolve) {
      var worker;
      try { worker = new Worker('/assets/downscale_worker.js'); } catch (e) { resolve(blob); return; }
      var done = false;
      function finish(result) {
        if (done) return;
        done = true;
        worker.terminate();
        resolve(result && result.size ? result : blob);
      }
      worker.onmessage = function (ev) { finish(ev.data && ev.data.blob); };
      worker.onerror = function () { finish(null); };
      setTimeout(function () { finish(null); }, 60000);
      worker.postMessage({ blob: blob, maxEdge: maxEdge });
    });
  }

  // ---------- wake lock ----------

  var wakeLock = null;
  var wanted = false;
  function holdWake(on) {
    wanted = on;
    if (!on) {
      if (wakeLock) { wakeLock.release().catch(function () {}); wakeLock = null; }
      return;
    }
    if (wakeLock || !navigator.wakeLock || document.visibilityState !== 'visible') return;
    navigator.wakeLock.request('screen').then(function (lock) {
      wakeLock = lock;
      lock.addEventListener('release', function () { if (wakeLock === lock) wakeLock = null; });
      if (!wanted) holdWake(false);
    }).catch(function () { /* not allowed now; asked again when visible */ });
  }
  document.addEventListener('visibilitychange', function () {
    if (document.visibilityState === 'visible' && wanted) holdWake(true);
  });

  // ---------- tus over XHR ----------

  function request(method, url, headers, body, onProgress) {
    return new Promise(function (resolve) {
      var xhr = new XMLHttpRequest();
      xhr.open(method, url);
      Object.keys(headers).forEach(function (k) { xhr.setRequestHeader(k, headers[k]); });
      if (onProgress) {
        xhr.upload.addEventListener('progress', function (ev) { onProgress(ev.loaded); });
      }
      xhr.addEventListener('load', function () {
        var data = null;
        try { data = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch (e) { data = null; }
        resolve({ status: xhr.status, header: function (n) { return xhr.getResponseHeader(n); }, data: data });
      });
      function failed() { resolve({ status: 0, header: function () { return null; }, data: null }); }
      xhr.addEventListener('error', failed);
      xhr.addEventListener('timeout', failed);
      xhr.addEventListener('abort', failed);
      xhr.send(body === undefined ? null : body);
    });
  }

  function b64(text) {
    var bytes = new TextEncoder().encode(text);
    var bin = '';
    bytes.forEach(function (b) { bin += String.fromCharCode(b); });
    return btoa(bin);
  }

  /*
   * A queue for one session. options: { identifier, base, token, maxEdge }.
   * Each entry: { id, name, blob, originalSize, url, ... }. upload(entry, ui) sends it until it
   * is done or refused; ui: { progress(fraction, text), status(text), done(), failed(status, data) }.
   */
  function Queue(options) {
    this.identifier = options.identifier;
    this.base = options.base;
    this.token = options.token;
    this.maxEdge = options.maxEdge || null;
    this.running = 0;
    this.waiting = new Set();   // wake-up functions of entries backing off
    var self = this;
    window.addEventListener('online', function () { self.wakeAll(); });
  }

  Queue.prototype.t = t;

  Queue.prototype.add = function (file) {
    var entry = {
      id: (window.crypto && crypto.randomUUID) ? crypto.randomUUID() : String(Date.now()) + Math.random(),
      identifier: this.identifier, name: file.name || 'photo', blob: file, originalSize: file.size,
      prepared: false, url: null, created: Date.now()
    };
    save(entry);
    return entry;
  };

  /* Entries left by an earlier page of the same link, oldest first. */
  Queue.prototype.restore = function () {
    var self = this;
    return loadAll(this.identifier).then(function (rows) {
      return rows.map(function (r) { r.identifier = self.identifier; return r; });
    });
  };

  /* Drops an entry without sending it (the member gave up on it). */
  Queue.prototype.drop = function (entry) { return forget(entry); };

  Queue.prototype.wakeAll = function () {
    var wakers = Array.from(this.waiting);
    this.waiting.clear();
    wakers.forEach(function (wake) { wake(); });
  };

  Queue.prototype.headers = function (extra) {
    var h = { Authorization: 'Bearer ' + this.token, 'Tus-Resumable': '1.0.0' };
    Object.keys(extra || {}).forEach(function (k) { h[k] = extra[k]; });
    return h;
  };

  Queue.prototype.sleep = function (ms, ui) {
    var self = this;
    return new Promise(function (resolve) {
      var timer = null;
      function wake() { clearTimeout(timer); self.waiting.delete(wake); resolve(); }
      self.waiting.add(wake);
      if (navigator.onLine === false) { ui.status(t('waitingNetwork')); return; }
      ui.status(t('retryIn', { s: Math.max(1, Math.round(ms / 1000)) }));
      timer = setTimeout(wake, ms);
    });
  };

  Queue.prototype.upload = function (entry, ui) {
    var self = this;
    var attempt = 0;
    self.running++;
    holdWake(true);
    ui.status(t('keepOpen'));

    function backoff() {
      attempt++;
      var ms = Math.min(MAX_BACKOFF_MS, 500 * Math.pow(2, attempt - 1));
      ms = ms / 2 + Math.random() * ms / 2; // jitter: phones that lost one cell do not return in step
      return self.sleep(ms, ui).then(function () { ui.status(t('resuming')); return step(); });
    }

    function finish(ok, status, data) {
      self.running--;
      if (self.running === 0) holdWake(false);
      if (ok || status !== 0) forget(entry);
      if (ok) ui.done(); else ui.failed(status, data);
    }

    function prepare() {
      if (entry.prepared || !self.maxEdge) return Promise.resolve();
      ui.status(t('preparing'));
      return downscale(entry.blob, self.maxEdge).then(function (blob) {
        entry.blob = blob;
        entry.prepared = true;
        return save(entry);
      });
    }

    function refused(res) {
      // The file itself or the session says no: sending again cannot help.
      return res.status >= 400 && res.status < 500 && res.status !== 408 &&
        !(res.status === 429 && res.data && res.data.reason === 'RATE_LIMITED') &&
        !(res.status === 409 && res.data && res.data.reason === 'OFFSET_MISMATCH');
    }

    function create() {
      // client_id: a creation repeated after a lost answer gets the same upload back.
      var meta = 'filename ' + b64(entry.name) + ',filetype ' + b64(entry.blob.type || 'application/octet-stream') +
        ',client_id ' + b64(entry.id);
      return request('POST', self.base + '/tus/', self.headers({
        'Upload-Length': String(entry.blob.size), 'Upload-Metadata': meta
      })).then(function (res) {
        if (res.status === 201 && res.header('Location')) {
          entry.url = new URL(res.header('Location'), window.location.href).href;
          // The URL is stored before any byte is sent, so a reload resumes, never duplicates.
          var offset = Number(res.header('Upload-Offset')) || 0;
          return save(entry).then(function () { return send(offset); });
        }
        if (refused(res)) return finish(false, res.status, res.data);
        return backoff();
      });
    }

    function send(offset) {
      var size = entry.blob.size;
      ui.progress(size ? offset / size : 0, t('uploading', { p: Math.floor(size ? offset * 100 / size : 0) }));
      if (offset >= size) return finish(true);
      return request('PATCH', entry.url, self.headers({
        'Upload-Offset': String(offset), 'Content-Type': 'application/offset+octet-stream'
      }), entry.blob.slice(offset), function (loaded) {
        var f = (offset + loaded) / size;
        ui.progress(f, f >= 1 ? t('processing') : t('uploading', { p: Math.floor(f * 100) }));
      }).then(function (res) {
        if (res.status === 204) {
          attempt = 0;
          var now = Number(res.header('Upload-Offset'));
          if (now >= size) return finish(true);
          return step();
        }
        if (res.status === 404) { entry.url = null; return save(entry).then(step); }
        if (refused(res)) return finish(false, res.status, res.data);
        return res.status === 409 ? step() : backoff();
      });
    }

    function step() {
      if (!entry.url) return create();
      return request('HEAD', entry.url, self.headers()).then(function (res) {
        if (res.status === 200) {
          attempt = 0;
          var offset = Number(res.header('Upload-Offset'));
          if (!isFinite(offset)) return backoff();
          return send(offset);
        }
        // Gone (expired or terminated): start this photo over with a new upload.
        if (res.status === 404 || res.status === 410) { entry.url = null; return save(entry).then(create); }
        if (refused(res)) return finish(false, res.status, res.data);
        return backoff();
      });
    }

    return prepare().then(function () {
      if (entry.prepared && entry.blob.size !== entry.originalSize && ui.sizes) {
        ui.sizes(t('sizes', { a: sizeText(entry.originalSize), b: sizeText(entry.blob.size) }));
      }
      return step();
    });
  };

  function sizeText(bytes) {
    if (bytes < 1048576) return Math.max(1, Math.round(bytes / 1024)) + ' KB';
    return (Math.round(bytes / 104857.6) / 10) + ' MB';
  }

  window.QruploadQueue = {
    create: function (options) { return new Queue(options); },
    t: t
  };
})();
