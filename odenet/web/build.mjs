// Copy the pinned onnxruntime-web runtime into assets/vendor, which the Streamlit server serves
// as the component's asset_dir (no CDN: the browser fetches nothing from outside the app).
//
//   cd odenet/web && npm ci && npm run build
//
// Copies, unmodified: the wasm-only ESM bundle (JS glue included) and its single-threaded-capable
// SIMD wasm; writes vendor/VERSION.json (version, licence, sha256 of each file). The npm package
// carries no LICENSE file; ONNX Runtime is MIT-licensed, Copyright (c) Microsoft Corporation.
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const pkgDir = join(here, 'node_modules', 'onnxruntime-web');
const out = join(here, 'assets', 'vendor');
const files = ['dist/ort.wasm.bundle.min.mjs', 'dist/ort-wasm-simd-threaded.wasm'];

const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
const wanted = JSON.parse(readFileSync(join(here, 'package.json'), 'utf8')).dependencies['onnxruntime-web'];
if (pkg.version !== wanted) {
  throw new Error(`node_modules has onnxruntime-web ${pkg.version}, package.json pins ${wanted}: run npm ci`);
}
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const manifest = {
  package: 'onnxruntime-web', version: pkg.version, license: pkg.license,
  copyright: 'Copyright (c) Microsoft Corporation', homepage: pkg.homepage, files: {},
};
for (const rel of files) {
  const name = rel.split('/').pop();
  copyFileSync(join(pkgDir, rel), join(out, name));
  manifest.files[name] = createHash('sha256').update(readFileSync(join(out, name))).digest('hex');
}
writeFileSync(join(out, 'VERSION.json'), JSON.stringify(manifest, null, 2) + '\n');
console.log(`copied onnxruntime-web ${pkg.version} into ${out}`);
