// Uploads one file with the real tus-js-client, as a browser or app would, and prints one
// JSON line with the outcome. Driven by tests/api/tus_js.rs.
//
// Usage: node tus_upload.mjs '{"endpoint": "...", "token": "...", "file": "/path", ...}'
import { readFileSync } from 'node:fs';
import { Upload } from 'tus-js-client';

const opts = JSON.parse(process.argv[2]);
const file = readFileSync(opts.file);
let retries = 0;
let progressCalls = 0;
let lastProgress = 0;

const upload = new Upload(file, {
  endpoint: opts.endpoint,
  headers: { Authorization: `Bearer ${opts.token}` },
  metadata: { filename: 'photo.jpg', filetype: 'image/jpeg' },
  chunkSize: opts.chunkSize ?? Infinity,
  retryDelays: opts.retryDelays ?? [0, 300, 600, 1000, 1500, 2000, 3000, 3000, 3000],
  storeFingerprintForResuming: false,
  onShouldRetry() {
    retries += 1;
    return true;
  },
  onProgress(sent) {
    progressCalls += 1;
    lastProgress = sent;
  },
  onError(error) {
    console.log(JSON.stringify({ ok: false, error: String(error), retries }));
    process.exit(1);
  },
  onSuccess() {
    console.log(JSON.stringify({ ok: true, url: upload.url, retries, progressCalls, lastProgress }));
  },
});
upload.start();
