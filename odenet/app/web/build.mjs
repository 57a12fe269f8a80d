// Copy the pinned onnxruntime-web runtime into assets/vendor, which the Streamlit server serves
// as the component's asset_dir (no CDN: the browser fetches nothing from outside the app).
//
//   cd odenet/app/web && npm ci && npm run build
//
// Copies the wasm-only ESM bundle (JS glue included) unmodified and writes its single-threaded-capable
// SIMD wasm gzip-compressed (14.2 MB -> 3.7 MB: Streamlit serves component assets uncompressed, so a
// visitor on a demo's Wi-Fi downloads a quarter; pen_canvas.js inflates it with DecompressionStream).
// Writes vendor/VERSION.json (version, licence, sha256 of each file as shipped, and of the wasm
// before compression). The npm package carries no LICENSE file; ONNX Runtime is MIT-licensed,
// Copyright (c) Microsoft Corporation.
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { constants, gzipSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
const pkgDir = join(here, 'node_modules', 'onnxruntime-web');
const out = join(here, 'assets', 'vendor');
const bundle = 'dist/ort.wasm.bundle.min.mjs';
const wasm = 'dist/ort-wasm-simd-threaded.wasm';
const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
const wanted = JSON.parse(readFileSync(join(here, 'package.json'), 'utf8')).dependencies['onnxruntime-web'];
if (pkg.version !== wanted) {
  throw new Error(`node_modules has onnxruntime-web ${pkg.version}, package.json pins ${wanted}: run npm ci`);
}
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const manifest = {
  package: 'onnxruntime-web', version: pkg.version, license: pkg.license,
  copyright: 'Copyright (c) Microsoft Corporation', homepage: pkg.homepage, files: {}, uncompressed: {},
};
const bundleName = bundle.split('/').pop();
copyFileSync(join(pkgDir, bundle), join(out, bundleName));
manifest.files[bundleName] = sha256(readFileSync(join(out, bundleName)));
const wasmName = wasm.split('/').pop();
const raw = readFileSync(join(pkgDir, wasm));
// the same input gives the same bytes on every build and platform: zlib writes mtime 0, and the
// header's OS byte (9), which zlib sets per platform, is pinned to 255 ("unknown")
const packed = gzipSync(raw, { level: constants.Z_BEST_COMPRESSION });
packed[9] = 255;
writeFileSync(join(out, `${wasmName}.gz`), packed);
manifest.files[`${wasmName}.gz`] = sha256(packed);
manifest.uncompressed[wasmName] = sha256(raw);
writeFileSync(join(out, 'VERSION.json'), JSON.stringify(manifest, null, 2) + '\n');
console.log(`copied onnxruntime-web ${pkg.version} into ${out}`);
