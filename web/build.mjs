// web/build.mjs OUTDIR: bundles the dashboard with esbuild into OUTDIR/index.html and
// OUTDIR/assets/<name>-<hash>.{js,css}. Names carry a content hash, so paycore serves
// assets/ as immutable; index.html (no-cache) names the current ones. No inline script
// or style anywhere: the page runs under a strict Content-Security-Policy.
import { build } from 'esbuild';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const outdir = resolve(process.argv[2] || join(here, '../build/web'));

rmSync(join(outdir, 'assets'), { recursive: true, force: true });
mkdirSync(join(outdir, 'assets'), { recursive: true });

const result = await build({
  entryPoints: { app: join(here, 'src/main.js') },
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['chrome110', 'firefox110', 'safari16'],
  outdir: join(outdir, 'assets'),
  entryNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  metafile: true,
  legalComments: 'linked',
  logLevel: 'warning',
});

const outputs = Object.keys(result.metafile.outputs).map((path) => basename(path));
const script = outputs.find((name) => name.endsWith('.js'));
const style = outputs.find((name) => name.endsWith('.css'));
if (!script || !style) throw new Error(`esbuild produced no script or style: ${outputs}`);

const page = readFileSync(join(here, 'src/index.html'), 'utf8')
  .replace('%SCRIPT%', `assets/${script}`)
  .replace('%STYLE%', `assets/${style}`);
writeFileSync(join(outdir, 'index.html'), page);
console.log(`web: ${outdir}/index.html, assets/${script}, assets/${style}`);
