// MNIST-style preprocessing of a canvas, a line-by-line port of odenet/data/preprocess.py::prepare_canvas.
//
// grey = (0.299 R + 0.587 G + 0.114 B) * alpha; crop to the ink's bounding box; scale the longer side
// to 20 px keeping the aspect ratio with the antialiased bilinear (triangle) filter of
// torch.nn.functional.interpolate(mode="bilinear", antialias=True, align_corners=False); paste
// centred in 28x28; shift the centre of mass to (14, 14); quantise to uint8 with rint; normalise.
// Arithmetic that torch does in float32 is rounded to float32 here (Math.fround) so the two agree
// to the last grey level.

const f32 = Math.fround;

/** Python's round(): nearest integer, ties to even (Math.round sends ties up). */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

const identity = (x) => x;

/**
 * numpy's pairwise summation of a[start .. start + n) (what ndarray.sum() does for a contiguous
 * array): 8 running sums per block of at most 128, blocks halved recursively. ``round`` is Math.fround
 * for float32 arrays, the identity for float64.
 */
export function pairwiseSum(a, start, n, round) {
  if (n < 8) {
    let res = 0;
    for (let i = 0; i < n; i++) res = round(res + a[start + i]);
    return res;
  }
  if (n <= 128) {
    const r = [0, 1, 2, 3, 4, 5, 6, 7].map((j) => a[start + j]);
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] = round(r[j] + a[start + i + j]);
    let res = round(round(round(r[0] + r[1]) + round(r[2] + r[3])) + round(round(r[4] + r[5]) + round(r[6] + r[7])));
    for (; i < n; i++) res = round(res + a[start + i]);
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return round(pairwiseSum(a, start, n2, round) + pairwiseSum(a, start + n2, n - n2, round));
}

/**
 * Weights of torch's antialiased linear filter for one axis: in_size -> out_size samples.
 * Mirrors ATen's _compute_weights_aa (float32): support = scale when shrinking (1 when growing),
 * taps at (j + xmin - center + 0.5) / scale, normalised to sum 1.
 */
export function aaWeights(inSize, outSize) {
  const scale = f32(inSize / outSize);
  const support = scale >= 1 ? scale : 1;
  const invscale = scale >= 1 ? f32(1 / scale) : 1;
  const maxTaps = Math.ceil(support) * 2 + 1;
  const out = [];
  for (let i = 0; i < outSize; i++) {
    const center = f32(scale * (i + 0.5));
    const xmin = Math.max(Math.trunc(f32(f32(center - support) + 0.5)), 0);
    let xsize = Math.min(Math.trunc(f32(f32(center + support) + 0.5)), inSize) - xmin;
    xsize = Math.max(0, Math.min(xsize, maxTaps));
    const w = new Float32Array(xsize);
    let total = 0;
    for (let j = 0; j < xsize; j++) {
      const x = Math.abs(f32(f32(f32(j + xmin) - center + 0.5) * invscale));
      w[j] = x < 1 ? f32(1 - x) : 0;
      total = f32(total + w[j]);
    }
    if (total !== 0) for (let j = 0; j < xsize; j++) w[j] = f32(w[j] / total);
    out.push({ start: xmin, w });
  }
  return out;
}

/** (h, w) float32 image -> (nh, nw): width pass first, then height, as torch's separable kernel; clamped to 0..1. */
export function resizeAA(img, h, w, nh, nw) {
  let cur = img;
  if (nw !== w) {
    const ws = aaWeights(w, nw);
    const tmp = new Float32Array(h * nw);
    for (let y = 0; y < h; y++) {
      const row = y * w;
      for (let x = 0; x < nw; x++) {
        const { start, w: wt } = ws[x];
        let acc = 0;
        for (let k = 0; k < wt.length; k++) acc = f32(acc + f32(cur[row + start + k] * wt[k]));
        tmp[y * nw + x] = acc;
      }
    }
    cur = tmp;
  }
  if (nh !== h) {
    const ws = aaWeights(h, nh);
    const tmp = new Float32Array(nh * nw);
    for (let y = 0; y < nh; y++) {
      const { start, w: wt } = ws[y];
      for (let x = 0; x < nw; x++) {
        let acc = 0;
        for (let k = 0; k < wt.length; k++) acc = f32(acc + f32(cur[(start + k) * nw + x] * wt[k]));
        tmp[y * nw + x] = acc;
      }
    }
    cur = tmp;
  }
  const out = new Float32Array(nh * nw);
  for (let i = 0; i < out.length; i++) out[i] = Math.min(1, Math.max(0, cur[i]));
  return out;
}

/**
 * Canvas RGBA bytes (width x height x 4) -> what the model sees.
 * opts: {inkThreshold, minInk, mean, std} (sent from Python so both sides share one definition).
 * Returns {blank, u8: Uint8Array(784), input: Float32Array(784) normalised, pixels: ink pixel count}.
 */
export function prepareCanvas(rgba, width, height, opts) {
  const { inkThreshold = 0.1, minInk = 12, mean = 0.1307, std = 0.3081 } = opts || {};
  const n = width * height;
  const grey = new Float32Array(n);
  let maxByte = 0;
  for (let i = 0; i < n * 4; i++) if (rgba[i] > maxByte) maxByte = rgba[i];
  const div = maxByte > 1 ? 255 : 1; // prepare_canvas divides by 255 only when some value exceeds 1
  const cR = f32(0.299), cG = f32(0.587), cB = f32(0.114);
  const thr = f32(inkThreshold); // numpy compares a float32 array with the threshold cast to float32
  let top = height, bottom = -1, left = width, right = -1, inkCount = 0;
  for (let p = 0; p < n; p++) {
    const r = f32(rgba[4 * p] / div), g = f32(rgba[4 * p + 1] / div), b = f32(rgba[4 * p + 2] / div);
    const a = f32(rgba[4 * p + 3] / div);
    const v = f32(f32(f32(f32(r * cR) + f32(g * cG)) + f32(b * cB)) * a);
    grey[p] = v;
    if (v > thr) {
      inkCount++;
      const y = (p / width) | 0, x = p - y * width;
      if (y < top) top = y;
      if (y > bottom) bottom = y;
      if (x < left) left = x;
      if (x > right) right = x;
    }
  }
  const u8 = new Uint8Array(784);
  const fMean = f32(mean), fStd = f32(std);
  const input = new Float32Array(784).fill(f32(f32(0 - fMean) / fStd));
  if (inkCount < minInk * Math.max(1, n / 78400)) return { blank: true, u8, input, pixels: inkCount };

  const h = bottom - top + 1, w = right - left + 1;
  const crop = new Float32Array(h * w);
  for (let y = 0; y < h; y++) crop.set(grey.subarray((top + y) * width + left, (top + y) * width + left + w), y * w);
  const scale = 20 / Math.max(h, w);
  const nh = Math.max(1, roundHalfEven(h * scale)), nw = Math.max(1, roundHalfEven(w * scale));
  const small = resizeAA(crop, h, w, nh, nw);

  const canvas = new Float32Array(784);
  const ptop = Math.floor((28 - nh) / 2), pleft = Math.floor((28 - nw) / 2);
  for (let y = 0; y < nh; y++) canvas.set(small.subarray(y * nw, (y + 1) * nw), (ptop + y) * 28 + pleft);
  // centre of mass -> (14, 14), never pushing the digit past the border (same clipping as Python).
  // Sums follow numpy's pairwise order (mass in float32, moments in float64): a symmetric stroke puts
  // the centre exactly half-way between pixels, where only the last bit decides the shift.
  const ym = new Float64Array(784), xm = new Float64Array(784);
  for (let i = 0; i < 784; i++) {
    ym[i] = ((i / 28) | 0) * canvas[i];
    xm[i] = (i % 28) * canvas[i];
  }
  const mass = pairwiseSum(canvas, 0, 784, f32);
  const my = pairwiseSum(ym, 0, 784, identity), mx = pairwiseSum(xm, 0, 784, identity);
  let dy = roundHalfEven(14 - my / mass), dx = roundHalfEven(14 - mx / mass);
  dy = Math.min(Math.max(dy, -ptop), 28 - (ptop + nh));
  dx = Math.min(Math.max(dx, -pleft), 28 - (pleft + nw));
  for (let y = 0; y < 28; y++) {
    for (let x = 0; x < 28; x++) {
      const sy = y - dy, sx = x - dx;
      const v = sy >= 0 && sy < 28 && sx >= 0 && sx < 28 ? canvas[sy * 28 + sx] : 0;
      const q = roundHalfEven(f32(v * 255));
      u8[y * 28 + x] = q;
      input[y * 28 + x] = f32(f32(f32(q / 255) - fMean) / fStd);
    }
  }
  return { blank: false, u8, input, pixels: inkCount };
}
