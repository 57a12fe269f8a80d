// odenet pen canvas: a Streamlit Components v2 module. Draw a digit; while the pen moves the
// exported RKNet (ONNX, unrolled fixed-step solve) runs in the browser with onnxruntime-web on
// wasm, and the class probabilities, the prediction and the per-step probabilities follow the pen.
// On pen-up, undo and clear the 28x28 the model saw, the strokes and the browser's probabilities
// go to Python as the state value "drawing". Everything (this file, the ort runtime, its wasm, the
// model) is fetched from the Streamlit server itself.

import * as ort from './vendor/ort.wasm.bundle.min.mjs';
import { prepareCanvas } from './preprocess.js';

const ASSET_BASE = new URL('./', import.meta.url);
// the app's base URL: the component is served from <base>/_stcore/bidi-components/<name>/...
const APP_BASE = ASSET_BASE.href.slice(0, ASSET_BASE.href.indexOf('/_stcore/') + 1) || '/';

ort.env.wasm.numThreads = 1; // threads need cross-origin isolation; one thread is fast enough here
ort.env.wasm.proxy = false;
ort.env.logLevel = 'error';
// The JS glue is inside the bundle. The wasm ships gzip-compressed (3.7 MB instead of 14.2 MB:
// Streamlit serves component assets as they are on disk), is inflated here once per page and
// handed to ort as wasmBinary, so ort fetches nothing itself.
const RUNTIME_URL = new URL('./vendor/ort-wasm-simd-threaded.wasm.gz', ASSET_BASE).href;
let runtime = null; // Promise<void>: ort.env.wasm.wasmBinary is set

async function inflate(bytes) {
  // "\0asm" starts a wasm module; 1f 8b a gzip stream (a proxy may already have inflated it)
  if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function loadRuntime() {
  if (runtime === null) {
    if (typeof DecompressionStream !== 'function') {
      // checked before downloading 3.7 MB; lasting, so never retried (the page predicts on the server)
      runtime = Promise.reject(new Error('this browser cannot inflate the runtime (no DecompressionStream)'));
      return runtime;
    }
    runtime = (async () => {
      const resp = await fetch(RUNTIME_URL);
      if (!resp.ok) throw new Error(`runtime download failed: HTTP ${resp.status}`);
      ort.env.wasm.wasmBinary = await inflate(new Uint8Array(await resp.arrayBuffer()));
    })();
    // a failed download is forgotten, so the next model load on this page (another model, or a
    // remounted canvas) tries again
    runtime.catch(() => { runtime = null; });
  }
  return runtime;
}

const instances = new WeakMap(); // parentElement -> PenCanvas
// for tests and benchmarks: the live instances by key, the inference sessions created and released on
// this page, and how many of the latest values each stats array keeps
const registry = (globalThis.odenetPenCanvas ??= { instances: new Map() });
registry.sessions ??= { created: 0, released: 0, live: 0 };
registry.statsWindow ??= 2048; // > the 1,755 updates of the draw-latency benchmark's 30 drawings

/** Append ``value`` to a stats array, keeping only the latest ``registry.statsWindow`` values: a page
 * left open on a projector for a whole lesson must not grow without bound. */
function record(values, value) {
  values.push(value);
  const extra = values.length - Math.max(1, registry.statsWindow);
  if (extra > 0) values.splice(0, extra);
}

function modelUrl(url) {
  return /^[a-z]+:/i.test(url) ? url : new URL(url.replace(/^\//, ''), APP_BASE).href;
}

// -- inference sessions: one per model URL that an instance uses or is loading, shared by every
// instance on the page. A session holds the model's weights and wasm memory, so it is released as
// soon as no instance needs it: an instance that switches model releases the previous one when the
// new one is ready (it predicts with the old one meanwhile), and a load it no longer waits for is
// released as it completes. A canvas that unmounts parks its session briefly, since Streamlit often
// mounts it again at once; a parked session is released when any other model is asked for, or after
// PARK_MS. So one canvas holds at most its current session plus one loading.
const PARK_MS = 30_000;
const sessions = new Map(); // model URL -> {promise, users: Set<PenCanvas>, parked: timer id or null}

function dispose(url, entry) {
  if (sessions.get(url) === entry) sessions.delete(url);
  clearTimeout(entry.parked);
  entry.dropped = true;
  // a load still running releases its session as it completes (see acquireSession)
  entry.promise.then((session) => releaseNow(session), () => {});
}

function releaseNow(session) {
  if (session.odenetReleased) return;
  session.odenetReleased = true;
  registry.sessions.released++;
  registry.sessions.live--;
  session.release().catch(() => {});
}

function acquireSession(url, user) {
  for (const [other, entry] of sessions) if (other !== url && entry.parked !== null) dispose(other, entry);
  let entry = sessions.get(url);
  if (!entry) {
    entry = { users: new Set(), parked: null, dropped: false };
    const e = entry;
    entry.promise = (async () => {
      const [resp] = await Promise.all([fetch(url), loadRuntime()]);
      if (!resp.ok) throw new Error(`model download failed: HTTP ${resp.status}`);
      const bytes = new Uint8Array(await resp.arrayBuffer());
      const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
      registry.sessions.created++;
      registry.sessions.live++;
      if (e.dropped) releaseNow(session); // nobody waits for it any more
      return session;
    })();
    // a failed load is forgotten, so a later render may retry it
    entry.promise.catch(() => { if (sessions.get(url) === e) sessions.delete(url); });
    sessions.set(url, entry);
  }
  clearTimeout(entry.parked);
  entry.parked = null;
  entry.users.add(user);
  return entry.promise;
}

/** ``user`` no longer needs the session of ``url``; the last user releases it (or parks it, on unmount). */
function releaseSession(url, user, park = false) {
  const entry = url === null ? undefined : sessions.get(url);
  if (!entry || !entry.users.delete(user) || entry.users.size) return;
  if (park) entry.parked = setTimeout(() => dispose(url, entry), PARK_MS);
  else dispose(url, entry);
}

/** Confidence as text; never "100.0%" (a float32 softmax saturates, the model is not certain). */
export function formatConfidence(p) {
  const pct = p * 100;
  return pct >= 99.95 ? '> 99.9%' : `${pct.toFixed(1)}%`;
}

function el(tag, cls, parent, attrs = {}) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function svg(tag, parent, attrs = {}) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (parent) parent.appendChild(e);
  return e;
}

class PenCanvas {
  constructor(parent) {
    this.parent = parent;
    this.strokes = []; // [[[x, y], ...], ...] in canvas pixels
    this.current = null;
    this.version = 0; // bumps on every change of the canvas pixels
    this.doneVersion = -1; // version of the last finished inference
    this.busy = false;
    this.rafPending = false;
    this.sendPending = false;
    this.forceNext = false;
    this.session = null; // the InferenceSession predictions run on, loaded from heldUrl
    this.heldUrl = null;
    this.sessionUrl = null; // the model URL asked for last (loading while it differs from heldUrl)
    this.retired = []; // model URLs to let go of once the inference in flight is over
    this.wasm = null; // null: loading, true: ready, false: failed
    this.error = null;
    this.seq = 0;
    this.mount = Math.random().toString(36).slice(2, 10); // tells this instance's seq apart from an earlier one's
    this.clearToken = null; // the page's clear_token: a new value wipes the canvas without remounting it
    this.last = null; // {u8, probs, blank, version}
    this.external = null; // a result the server computed (an upload, or a drawing when wasm is unavailable)
    this.externalId = null;
    this.dirtySince = null; // time of the oldest canvas change not yet on screen
    // for tests and benchmarks: inference times, pen-up -> final prediction shown, change -> shown, rates;
    // each array keeps the latest registry.statsWindow values (see record)
    this.stats = { updates: 0, inferMs: [], latencies: [], editLatencies: [], changeToShownMs: [], strokeUpdates: [], upTime: null,
      strokeStart: 0, strokeCount: 0, loadMs: null, upKind: null };
    this.build();
  }

  build() {
    const root = el('div', 'pc-root', this.parent, { 'data-testid': 'odenet-pen-canvas' });
    this.root = root;
    const left = el('div', 'pc-left', root);
    const bar = el('div', 'pc-toolbar', left);
    this.undoBtn = el('button', 'pc-btn', bar, { type: 'button', 'data-testid': 'pen-undo' });
    this.undoBtn.textContent = 'Undo';
    this.clearBtn = el('button', 'pc-btn', bar, { type: 'button', 'data-testid': 'pen-clear' });
    this.clearBtn.textContent = 'Clear';
    this.status = el('span', 'pc-status', bar, { 'data-testid': 'pen-status' });
    this.canvas = el('canvas', 'pc-canvas', left, { 'data-testid': 'pen-canvas', 'aria-label': 'Drawing canvas' });
    this.ctx = this.canvas.getContext('2d', { willReadFrequently: true });

    const right = el('div', 'pc-right', root);
    const head = el('div', 'pc-head', right);
    this.pred = el('div', 'pc-pred', head, { 'aria-live': 'polite', role: 'status', 'data-testid': 'pen-prediction' });
    this.conf = el('div', 'pc-conf', head, { 'data-testid': 'pen-confidence' });
    const seenBox = el('figure', 'pc-seen', head);
    this.seen = el('canvas', 'pc-seen-canvas', seenBox, { width: 28, height: 28, 'data-testid': 'pen-seen' });
    el('figcaption', null, seenBox).textContent = 'model input (28x28)';
    this.seenCtx = this.seen.getContext('2d');
    this.source = el('div', 'pc-source', right, { 'data-testid': 'pen-source' });
    this.notice = el('div', 'pc-notice', right, { role: 'alert', 'data-testid': 'pen-notice' });

    this.bars = el('div', 'pc-bars', right, { 'data-testid': 'pen-bars' });
    this.barRows = [];
    for (let k = 0; k < 10; k++) {
      const row = el('div', 'pc-bar-row', this.bars);
      const lab = el('span', 'pc-bar-label', row);
      const track = el('span', 'pc-bar-track', row);
      const fill = el('span', 'pc-bar-fill', track);
      const val = el('span', 'pc-bar-value', row);
      this.barRows.push({ row, lab, fill, val });
    }
    const stepsBox = el('div', 'pc-steps', right);
    this.stepsTitle = el('div', 'pc-steps-title', stepsBox);
    this.chart = svg('svg', stepsBox, { class: 'pc-chart', viewBox: '0 0 320 120', 'data-testid': 'pen-steps',
      role: 'img' });

    const c = this.canvas;
    c.addEventListener('pointerdown', (e) => this.down(e));
    c.addEventListener('pointermove', (e) => this.move(e));
    c.addEventListener('pointerup', (e) => this.up(e));
    c.addEventListener('pointercancel', (e) => this.up(e));
    c.addEventListener('lostpointercapture', (e) => this.up(e));
    this.undoBtn.addEventListener('click', () => this.undo());
    this.clearBtn.addEventListener('click', () => this.clear());
  }

  update(data, setStateValue) {
    this.setStateValue = setStateValue;
    const first = this.data === undefined;
    this.data = data || {};
    const d = this.data;
    if (d.instance) registry.instances.set(d.instance, this);
    const token = d.clear_token ?? null;
    if (!first && token !== this.clearToken) this.wipe(); // the page cleared the drawing (e.g. its Clear button)
    this.clearToken = token;
    const size = d.size || 280;
    if (first || this.canvas.width !== size) {
      this.canvas.width = size;
      this.canvas.height = size;
      this.canvas.style.width = `${size}px`;
      this.canvas.style.height = `${size}px`;
      if (first && Array.isArray(d.strokes) && d.strokes.length) this.strokes = d.strokes.map((s) => s.slice());
      this.redraw();
    }
    const labels = d.labels || [...Array(10).keys()].map(String);
    this.barRows.forEach((r, k) => { r.lab.textContent = labels[k] ?? String(k); });
    this.labels = labels;
    if (d.model_url && modelUrl(d.model_url) !== this.sessionUrl) this.useModel(modelUrl(d.model_url));
    if (!d.model_url && first) {
      this.wasm = false;
      this.error = 'no model given';
    }
    const ext = d.external || null;
    const extId = ext ? ext.id : null;
    if (extId !== this.externalId) {
      this.externalId = extId;
      this.external = ext;
      if (ext && ext.kind === 'upload') this.showPicture(ext.image28); // the upload replaces the drawing
      this.schedule(true);
    }
    this.renderNotice();
    this.renderStatus();
    if (first) this.schedule(true);
  }

  /** The server's words about the current input (e.g. "does not look like a digit"), shown only while
   * that input is still on the canvas: a new stroke hides a notice meant for the previous drawing. */
  renderNotice() {
    const n = this.data.notice;
    const text = n && n.text && (n.for === 'upload' ? this.uploadShown() : (n.seq === this.seq && this.version === this.sentVersion))
      ? n.text : '';
    if (this.notice.textContent !== text) this.notice.textContent = text;
    this.notice.hidden = !text;
  }

  uploadShown() {
    return !!(this.external && this.external.kind === 'upload' && !this.strokes.length);
  }

  /** Draw a 28x28 picture (an upload, as the model sees it) over the whole canvas. */
  showPicture(u8) {
    this.strokes = [];
    this.current = null;
    const ctx = this.ctx;
    const img = new ImageData(28, 28);
    for (let i = 0; i < 784; i++) img.data.set([u8[i], u8[i], u8[i], 255], 4 * i);
    const tmp = document.createElement('canvas');
    tmp.width = 28;
    tmp.height = 28;
    tmp.getContext('2d').putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.fillStyle = '#000000';
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.drawImage(tmp, 0, 0, this.canvas.width, this.canvas.height);
    this.pictureShown = true;
    this.touch();
  }

  async useModel(url) {
    const asked = this.sessionUrl;
    if (asked !== null && asked !== this.heldUrl) this.letGo(asked); // a load nobody waits for any more
    this.sessionUrl = url;
    this.wasm = null;
    this.renderStatus();
    const t0 = performance.now();
    try {
      const session = await acquireSession(url, this);
      if (this.sessionUrl !== url || this.destroyed) return; // a newer model was asked for meanwhile
      if (this.heldUrl !== url) this.letGo(this.heldUrl); // the previous model, now replaced
      this.session = session;
      this.heldUrl = url;
      this.wasm = true;
      this.error = null;
      this.stats.loadMs = performance.now() - t0;
      this.schedule(true);
    } catch (err) {
      if (this.sessionUrl !== url || this.destroyed) return;
      this.letGo(this.heldUrl);
      this.session = null;
      this.heldUrl = null;
      this.wasm = false;
      this.error = String(err && err.message ? err.message : err);
      // tell the server at once so the page can switch to server-side inference
      this.setStateValue?.('runtime', { wasm: false, error: this.error });
    }
    this.renderStatus();
  }

  /** Stop using the session of ``url``: at once, or after the inference in flight (it may run on it). */
  letGo(url, park = false) {
    if (url === null) return;
    if (this.busy) this.retired.push([url, park]);
    else releaseSession(url, this, park);
  }

  renderStatus() {
    const s = this.wasm === null ? 'loading model...' : this.wasm ? 'in-browser (wasm)' : 'browser inference unavailable';
    this.status.textContent = s;
    this.status.title = this.error || '';
    this.root.dataset.wasm = this.wasm === null ? 'loading' : String(this.wasm);
  }

  // -- drawing ---------------------------------------------------------------------------------
  point(e) {
    const r = this.canvas.getBoundingClientRect();
    const sx = this.canvas.width / r.width, sy = this.canvas.height / r.height;
    return [Math.round((e.clientX - r.left) * sx * 10) / 10, Math.round((e.clientY - r.top) * sy * 10) / 10];
  }

  penWidth() {
    return this.data.pen_width || 20;
  }

  segment(a, b) {
    const ctx = this.ctx;
    ctx.strokeStyle = '#ffffff';
    ctx.fillStyle = '#ffffff';
    ctx.lineWidth = this.penWidth();
    ctx.lineCap = 'round';
    ctx.lineJoin = 'round';
    if (a[0] === b[0] && a[1] === b[1]) {
      ctx.beginPath();
      ctx.arc(a[0], a[1], this.penWidth() / 2, 0, 2 * Math.PI);
      ctx.fill();
    } else {
      ctx.beginPath();
      ctx.moveTo(a[0], a[1]);
      ctx.lineTo(b[0], b[1]);
      ctx.stroke();
    }
  }

  redraw() {
    const ctx = this.ctx;
    ctx.fillStyle = '#000000';
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    for (const s of this.strokes) {
      for (let i = 0; i < s.length; i++) this.segment(s[Math.max(0, i - 1)], s[i]);
    }
    this.touch();
  }

  touch() {
    this.version++;
    if (this.dirtySince === null) this.dirtySince = performance.now();
  }

  down(e) {
    if (e.button !== undefined && e.button !== 0) return;
    e.preventDefault();
    this.canvas.setPointerCapture?.(e.pointerId);
    if (this.uploadShown() || this.pictureShown) {
      this.external = null; // the latest input wins: a stroke replaces the upload
      this.pictureShown = false;
      this.redraw();
    }
    const p = this.point(e);
    this.current = [p];
    this.strokes.push(this.current);
    this.segment(p, p);
    this.touch();
    this.stats.strokeStart = performance.now();
    this.stats.strokeCount = 0;
    this.schedule();
  }

  move(e) {
    if (!this.current) return;
    e.preventDefault();
    const pts = e.getCoalescedEvents ? e.getCoalescedEvents() : [];
    for (const ev of pts.length ? pts : [e]) {
      const p = this.point(ev);
      const last = this.current[this.current.length - 1];
      if (p[0] === last[0] && p[1] === last[1]) continue;
      this.current.push(p);
      this.segment(last, p);
      this.touch();
    }
    this.schedule();
  }

  up() {
    if (!this.current) return;
    this.current = null;
    const st = this.stats;
    st.upTime = performance.now();
    const secs = (st.upTime - st.strokeStart) / 1000;
    if (secs > 0.2) record(st.strokeUpdates, st.strokeCount / secs);
    st.upKind = 'pen';
    this.finish();
  }

  undo() {
    if (!this.strokes.length) return;
    this.strokes.pop();
    this.redraw();
    this.stats.upTime = performance.now();
    this.stats.upKind = 'edit';
    this.finish();
  }

  clear() {
    this.strokes = [];
    this.external = null;
    this.pictureShown = false;
    this.redraw();
    this.stats.upTime = performance.now();
    this.stats.upKind = 'edit';
    this.finish();
  }

  /** The page asked for a clean canvas: drop every stroke (and one in progress) without telling Python,
   * which already forgot the drawing; the prediction goes back to "Draw a digit". */
  wipe() {
    this.current = null;
    this.sendPending = false;
    this.strokes = [];
    this.pictureShown = false;
    this.redraw();
    this.schedule();
  }

  /** Pen-up, undo or clear: send the final canvas's prediction to Python (predicting it first if needed). */
  finish() {
    if (!this.busy && this.doneVersion === this.version && this.last && !this.forceNext) {
      this.recordLatency(); // the final drawing's prediction was already on screen while the pen moved
      this.send();
      return;
    }
    this.sendPending = true;
    this.schedule();
  }

  recordLatency() {
    const st = this.stats;
    if (st.upTime !== null) record(st.upKind === 'pen' ? st.latencies : st.editLatencies, performance.now() - st.upTime);
    st.upTime = null;
  }

  // -- inference loop: at most one run in flight; frames coalesce while it runs ------------------
  schedule(force = false) {
    if (force) this.forceNext = true; // run even if the pixels did not change (new model, first render)
    if (this.rafPending) return;
    this.rafPending = true;
    requestAnimationFrame(() => {
      this.rafPending = false;
      this.tick();
    });
  }

  async tick() {
    if (this.destroyed || this.busy || (this.doneVersion === this.version && !this.forceNext)) return; // a run in flight re-schedules
    this.busy = true;
    this.forceNext = false;
    const version = this.version;
    const since = this.dirtySince;
    this.dirtySince = null;
    try {
      const { width, height } = this.canvas;
      const rgba = this.ctx.getImageData(0, 0, width, height).data;
      const d = this.data;
      const prep = prepareCanvas(rgba, width, height, d.preprocess || {});
      let probs = null;
      const ext = this.external;
      if (this.uploadShown()) {
        this.last = { u8: Uint8Array.from(ext.image28), probs: ext.probs, blank: false, version };
        this.render({ u8: this.last.u8, blank: false }, ext.probs);
        this.doneVersion = version;
        return;
      }
      if (!prep.blank && !this.session && ext && ext.kind === 'server' && ext.seq === this.seq
          && version === this.sentVersion) {
        probs = ext.probs; // no wasm here: the server's answer for the drawing it was sent
      } else if (!prep.blank && this.session) {
        const session = this.session; // kept until this run is over (see letGo)
        const t0 = performance.now();
        const input = new ort.Tensor('float32', prep.input, [1, 1, 28, 28]);
        const out = await session.run({ [session.inputNames[0]]: input });
        const flat = out[session.outputNames[0]].data; // (steps + 1) x 1 x classes
        const classes = this.labels.length;
        probs = [];
        for (let i = 0; i < flat.length / classes; i++) probs.push(Array.from(flat.subarray(i * classes, (i + 1) * classes)));
        record(this.stats.inferMs, performance.now() - t0);
      }
      this.last = { u8: prep.u8, probs, blank: prep.blank, version };
      this.render(prep, probs);
      this.doneVersion = version;
      if (since !== null) record(this.stats.changeToShownMs, performance.now() - since);
      this.stats.updates++;
      if (this.current) this.stats.strokeCount++;
      if (this.sendPending && version === this.version && !this.current) {
        this.sendPending = false;
        this.recordLatency();
        this.send();
      }
    } catch (err) {
      this.error = String(err && err.message ? err.message : err);
      this.doneVersion = version;
      this.renderStatus();
    } finally {
      this.busy = false;
      for (const [url, park] of this.retired.splice(0)) {
        // unless asked for again meanwhile (a quick switch back to the same model)
        if (this.destroyed || (url !== this.heldUrl && url !== this.sessionUrl)) releaseSession(url, this, park);
      }
    }
    if (this.doneVersion !== this.version || this.forceNext) this.schedule();
  }

  send() {
    if (this.destroyed) return; // an inference that finished after the cleanup: a newer instance owns the value
    const last = this.last;
    const probs = last.probs;
    const final = probs ? probs[probs.length - 1] : null;
    this.seq++;
    this.sentVersion = last.version;
    this.setStateValue?.('drawing', {
      seq: this.seq,
      blank: last.blank,
      image28: Array.from(last.u8),
      strokes: this.strokes,
      size: this.canvas.width,
      probs,
      prediction: final ? final.indexOf(Math.max(...final)) : null,
      wasm: this.wasm === true,
      error: this.error,
      mount: this.mount,
      clear_token: this.clearToken,
    });
  }

  // -- display -----------------------------------------------------------------------------------
  render(prep, probs) {
    const img = this.seenCtx.createImageData(28, 28);
    for (let i = 0; i < 784; i++) {
      const v = prep.u8[i];
      img.data.set([v, v, v, 255], 4 * i);
    }
    this.seenCtx.putImageData(img, 0, 0);
    const final = probs ? probs[probs.length - 1] : null;
    const labels = this.labels;
    let best = -1;
    if (final) best = final.indexOf(Math.max(...final));
    const text = prep.blank ? 'Draw a digit' : best >= 0 ? `Prediction: ${labels[best]}` : 'Prediction: -';
    if (this.pred.textContent !== text) this.pred.textContent = text; // the live region speaks only on change
    // non-breaking spaces: a narrow panel wraps the whole phrase, never inside "> 99.9%"
    this.conf.textContent = best >= 0 && !prep.blank ? `confidence\u00a0${formatConfidence(final[best]).replace(' ', '\u00a0')}` : '';
    this.barRows.forEach((r, k) => {
      const p = final && !prep.blank ? final[k] : 0;
      r.fill.style.width = `${(p * 100).toFixed(2)}%`;
      r.val.textContent = final && !prep.blank ? formatConfidence(p) : '';
      r.row.classList.toggle('pc-best', k === best && !prep.blank);
    });
    this.renderSteps(prep.blank ? null : probs, best);
    const src = this.uploadShown() ? this.external.title || 'upload' : '';
    if (this.source.textContent !== src) this.source.textContent = src;
    this.source.hidden = !src;
    this.renderNotice();
  }

  renderSteps(probs, best) {
    const chart = this.chart;
    while (chart.firstChild) chart.removeChild(chart.firstChild);
    const ts = this.data.ts || [];
    const W = 320, H = 120, L = 28, R = 8, T = 8, B = 22;
    const t0 = ts.length ? ts[0] : 0, t1 = ts.length ? ts[ts.length - 1] : 1;
    const x = (t) => L + ((t - t0) / (t1 - t0 || 1)) * (W - L - R);
    const y = (p) => T + (1 - p) * (H - T - B);
    svg('line', chart, { x1: L, y1: y(0), x2: W - R, y2: y(0), class: 'pc-axis' });
    svg('line', chart, { x1: L, y1: y(1), x2: L, y2: y(0), class: 'pc-axis' });
    for (const [p, lab] of [[0, '0'], [1, '1']]) {
      svg('text', chart, { x: L - 4, y: y(p) + 4, 'text-anchor': 'end', class: 'pc-tick' }).textContent = lab;
    }
    for (const t of [t0, t1]) {
      svg('text', chart, { x: x(t), y: H - 6, 'text-anchor': 'middle', class: 'pc-tick' }).textContent = `t=${+t.toFixed(3)}`;
    }
    const n = probs ? probs.length : 0;
    this.stepsTitle.textContent = n ? `class probabilities at t0 and after each of ${n - 1} solver step${n === 2 ? '' : 's'}` :
      'class probabilities along the solve';
    chart.setAttribute('aria-label', this.stepsTitle.textContent);
    if (!n || ts.length !== n) return;
    const order = [...Array(probs[0].length).keys()].sort((a, b) => (a === best) - (b === best)); // best drawn last
    for (const k of order) {
      const pts = probs.map((row, i) => `${x(ts[i]).toFixed(1)},${y(row[k]).toFixed(1)}`).join(' ');
      svg('polyline', chart, { points: pts, class: k === best ? 'pc-line pc-line-best' : 'pc-line' });
      if (k === best) {
        for (let i = 0; i < n; i++) svg('circle', chart, { cx: x(ts[i]), cy: y(probs[i][k]), r: 2.5, class: 'pc-dot' });
        const ly = y(probs[n - 1][k]);
        svg('text', chart, { x: x(ts[n - 1]) - 6, y: ly < T + 12 ? ly + 14 : ly - 6, 'text-anchor': 'end',
          class: 'pc-line-label' }).textContent = this.labels[k];
      }
    }
  }

  destroy() {
    // undo what build() added: Streamlit can run the cleanup and then mount the component again into
    // the same element, and a root left behind there was a second, dead canvas above the live one
    this.destroyed = true;
    this.root.remove();
    if (this.sessionUrl !== this.heldUrl) this.letGo(this.sessionUrl); // a load in progress
    this.letGo(this.heldUrl, true); // parked: Streamlit may mount the canvas again at once
    if (this.data?.instance && registry.instances.get(this.data.instance) === this) registry.instances.delete(this.data.instance);
  }
}

export default function penCanvas(component) {
  const { parentElement, data, setStateValue } = component;
  let inst = instances.get(parentElement);
  if (!inst) {
    parentElement.querySelectorAll(':scope > .pc-root').forEach((e) => e.remove()); // belt and braces: one canvas
    inst = new PenCanvas(parentElement);
    instances.set(parentElement, inst);
  }
  inst.update(data, setStateValue);
  return () => {
    inst.destroy();
    instances.delete(parentElement);
  };
}
