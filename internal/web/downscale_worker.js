/*
 * qrupload — downscales one photo off the main thread for upload_queue.js.
 * Gets { blob, maxEdge }; answers { blob } (a JPEG whose longest side is maxEdge, drawn
 * upright from the image's own orientation) or { blob: null } when the photo is already
 * small enough or the browser cannot decode it (HEIC in Chrome): it is then sent as it is.
 */
'use strict';

self.onmessage = function (ev) {
  var blob = ev.data && ev.data.blob;
  var maxEdge = Number(ev.data && ev.data.maxEdge) || 0;
  if (!blob || maxEdge <= 0) { self.postMessage({ blob: null }); return; }
  createImageBitmap(blob, { imageOrientation: 'from-image' }).then(function (bitmap) {
    var scale = Math.min(1, maxEdge / Math.max(bitmap.width, bitmap.height));
    if (scale >= 1) { bitmap.close(); self.postMessage({ blob: null }); return null; }
    var w = Math.max(1, Math.round(bitmap.width * scale));
    var h = Math.max(1, Math.round(bitmap.height * scale));
    var canvas = new OffscreenCanvas(w, h);
    var ctx = canvas.getContext('2d');
    ctx.imageSmoothingQuality = 'high';
    ctx.drawImage(bitmap, 0, 0, w, h);
    bitmap.close();
    return canvas.convertToBlob({ type: 'image/jpeg', quality: 0.9 }).then(function (out) {
      self.postMessage({ blob: out });
    });
  }).catch(function () { self.postMessage({ blob: null }); });
};
