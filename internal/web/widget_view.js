/*
 * qrupload — the view half of <qrupload-panel> (served at "/v1/widget-view.js",
 * imported by widget.js): its styles, the photo tiles and the QR code.
 *
 * Rule: elements are built with createElement and textContent only; the QR
 * code's SVG is rebuilt from its rectangles and path with checked attributes,
 * so nothing the service sends is ever parsed into the page as markup.
 */

const SVG_NS = 'http://www.w3.org/2000/svg';

const CSS = `
:host { display: block; color: #1c2430; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
:host([hidden]) { display: none; }
[hidden] { display: none !important; }
* { box-sizing: border-box; }
.panel { display: grid; grid-template-columns: minmax(180px, 240px) 1fr; gap: 16px; padding: 16px;
  border: 1px solid #e1e5ea; border-radius: 12px; background: #fff; }
@media (max-width: 560px) { .panel { grid-template-columns: 1fr; } }
.title { margin: 0 0 8px; font-weight: 650; font-size: 1.0625rem; }
.qr { display: grid; place-items: center; aspect-ratio: 1; border: 1px solid #e1e5ea; border-radius: 10px; background: #fff; padding: 8px; }
.qr svg { width: 100%; height: auto; display: block; }
.muted { color: #5d6878; }
p { margin: 0; }
.side { display: flex; flex-direction: column; gap: 8px; }
.status { font-weight: 600; }
.status[data-status="scanned"], .status[data-status="completed"] { color: #17803d; }
.status[data-status="expired"] { color: #b42318; }
.error { color: #b42318; font-weight: 600; }
progress { width: 100%; height: 8px; accent-color: #2563c9; }
.grid { list-style: none; margin: 0; padding: 0; display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 12px; }
.tile { border: 1px solid #e1e5ea; border-radius: 10px; overflow: hidden; background: #fff; }
.tile.is-cover { border-color: #2563c9; }
.tile[draggable="true"] { cursor: grab; }
.tile.is-dragging, .tile.is-busy { opacity: .5; }
.thumb { display: block; width: 100%; aspect-ratio: 1; object-fit: cover; background: #eef1f4; }
.bar { display: flex; align-items: center; gap: 6px; padding: 6px 6px 0 8px; }
.label { font-size: .8125rem; color: #5d6878; }
.label, .badge, .delete { white-space: nowrap; }
.badge { display: none; padding: 0 8px; border-radius: 999px; background: #e8f0fc; color: #1d4f9f; font-size: .75rem; font-weight: 600; }
.is-cover .badge { display: inline-block; }
.tools { display: flex; gap: 4px; padding: 6px; }
button { font: inherit; min-height: 34px; padding: 0 8px; border-radius: 8px; border: 1px solid #cfd5dc; background: #fff; color: #1c2430; cursor: pointer; }
button:hover:not(:disabled) { background: #f4f6f8; }
button:disabled { opacity: .45; cursor: not-allowed; }
button:focus-visible { outline: 3px solid rgba(37, 99, 201, .5); outline-offset: 1px; }
.tools button { flex: 1; }
.delete { margin-left: auto; color: #b42318; font-size: .8125rem; }
.empty { padding: 24px 12px; text-align: center; color: #5d6878; border: 2px dashed #e1e5ea; border-radius: 10px; }
.hint { font-size: .8125rem; margin-bottom: 8px; }
.sr { position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
`;

let sharedSheet = null;
export function styleSheet() {
  if (!sharedSheet) {
    sharedSheet = new CSSStyleSheet();
    sharedSheet.replaceSync(CSS);
  }
  return sharedSheet;
}

// SPEC's negotiation, for one tag: zh-TW/HK/MO/Hant → zh-Hant; zh, zh-CN/SG/Hans → zh-Hans.
export function langOfTag(tag) {
  const parts = String(tag || '').toLowerCase().split(/[-_]/);
  if (parts[0] === 'en') return 'en';
  if (parts[0] !== 'zh') return null;
  const rest = parts.slice(1);
  if (rest.includes('hant')) return 'zh-Hant';
  if (rest.includes('hans')) return 'zh-Hans';
  if (['tw', 'hk', 'mo'].includes(rest[0])) return 'zh-Hant';
  if (rest.length === 0 || ['cn', 'sg'].includes(rest[0])) return 'zh-Hans';
  return null;
}

export function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function isTerminal(status) { return status === 'completed' || status === 'expired'; }

// The QR code from the service's SVG text: a new <svg> holding copies of its <rect> and
// <path> elements with their geometry and colour only; null if it is not an SVG.
export function svgFromText(text) {
  const src = new DOMParser().parseFromString(text, 'image/svg+xml').documentElement;
  if (!src || src.localName !== 'svg') return null;
  const svg = document.createElementNS(SVG_NS, 'svg');
  for (const name of ['viewBox', 'width', 'height', 'shape-rendering']) {
    const v = src.getAttribute(name);
    if (v && /^[\w .-]+$/.test(v)) svg.setAttribute(name, v);
  }
  svg.setAttribute('aria-hidden', 'true');
  for (const node of src.children) {
    if (node.localName !== 'rect' && node.localName !== 'path') continue;
    const copy = document.createElementNS(SVG_NS, node.localName);
    for (const name of ['x', 'y', 'width', 'height', 'fill', 'd']) {
      const v = node.getAttribute(name);
      if (v && /^[#\w .,-]+$/.test(v)) copy.setAttribute(name, v);
    }
    svg.appendChild(copy);
  }
  return svg;
}

function buildTile(im, base) {
  const li = el('li', 'tile');
  li.dataset.imageId = im.id;
  const img = el('img', 'thumb');
  img.draggable = false;
  img.decoding = 'async';
  try { img.src = new URL(im.thumbnail_url || im.url, base).href; } catch (e) { /* no picture */ }
  const bar = el('div', 'bar');
  bar.append(el('span', 'label'), el('span', 'badge'), el('button', 'delete'));
  const tools = el('div', 'tools');
  tools.append(el('button', 'earlier', '\u2190'), el('button', 'later', '\u2192'), el('button', 'cover', '\u2605'));
  li.append(img, bar, tools);
  li.querySelectorAll('button').forEach((b) => { b.type = 'button'; });
  return li;
}

// Puts one tile per image into `grid`, in the images' order, reusing the tiles it has
// (so focus and loaded pictures survive a reorder); returns how many there are.
export function placeTiles(grid, images, base) {
  const keep = new Map();
  for (const tile of Array.from(grid.children)) keep.set(tile.dataset.imageId, tile);
  const ordered = images.map((im) => keep.get(im.id) || buildTile(im, base));
  for (const [id, tile] of keep) { if (!images.some((im) => im.id === id)) tile.remove(); }
  ordered.forEach((tile, i) => { if (grid.children[i] !== tile) grid.insertBefore(tile, grid.children[i] || null); });
  return ordered.length;
}

// Numbers, names (translated by `t`) and enabled buttons follow the tiles' order.
export function labelTiles(grid, t, locked) {
  const tiles = Array.from(grid.children);
  tiles.forEach((li, i) => {
    const n = i + 1;
    const busy = li.classList.contains('is-busy');
    li.classList.toggle('is-cover', i === 0);
    li.draggable = !locked;
    li.querySelector('img').alt = t('photo_n', { n });
    li.querySelector('.label').textContent = t('photo_n', { n });
    li.querySelector('.badge').textContent = t('cover');
    const del = li.querySelector('.delete');
    del.textContent = t('delete');
    del.setAttribute('aria-label', t('delete_photo_n', { n }));
    del.disabled = locked || busy;
    for (const [cls, key, off] of [['earlier', 'move_earlier_n', i === 0], ['later', 'move_later_n', i === tiles.length - 1], ['cover', 'make_cover_n', i === 0]]) {
      const b = li.querySelector('.' + cls);
      b.setAttribute('aria-label', t(key, { n }));
      b.title = t(key, { n });
      b.disabled = locked || busy || off;
    }
  });
}

// Where a tile dragged from index `from` lands: before or after the tile under the
// pointer, by which half of it the pointer is over; the end when over no tile.
export function dropIndex(ev, tiles, from) {
  const target = ev.target.closest && ev.target.closest('.tile');
  let to = tiles.length - 1;
  if (target) {
    const rect = target.getBoundingClientRect();
    const at = tiles.indexOf(target);
    to = at + (ev.clientX > rect.left + rect.width / 2 ? 1 : 0) - (from < at ? 1 : 0);
  }
  return Math.max(0, Math.min(tiles.length - 1, to));
}
