/**
 * ppd's browser page as static files, with a model: any static web server can host it, and the
 * page runs the model itself (nothing is sent to a server).
 *
 * Usage: npm run build:browser [-- --model models/ppd-base] [--ppd models/ppd-base/ppd]
 *                               [--trees FILE] [--lookup 8] [--out dist/browser]
 *
 * The adapter defaults to the model folder's ppd/ when it has one; the trees to the adapter's
 * trees.json (a calibration profile is for the machine it was measured on, not for whoever opens
 * the page). WebAssembly threads need the host to send COOP/COEP headers: `_headers` carries
 * them for hosts that read such a file (Netlify, Cloudflare Pages); elsewhere set
 * `Cross-Origin-Opener-Policy: same-origin` and `Cross-Origin-Embedder-Policy: require-corp`
 * yourself, or the page runs on one thread (and says so). The output folder is replaced whole.
 */
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { bundlePage, ORT_FILES, ortFilePath, pageModel } from '../src/browser/build.ts';
import { DEFAULT_MODEL } from '../src/cli/demo.ts';
import { exitOnPpdError, PpdError } from '../src/errors.ts';
import { DEFAULT_LOOKUP_TOKENS, TREES_FILE } from '../src/ppd/adapter-folder.ts';
import { ISOLATION_HEADERS } from '../src/server/browser.ts';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: DEFAULT_MODEL },
      ppd: { type: 'string' },
      trees: { type: 'string' },
      lookup: { type: 'string', default: String(DEFAULT_LOOKUP_TOKENS) },
      out: { type: 'string', default: 'dist/browser' },
    },
  });
  const modelDir = values.model!;
  if (!existsSync(modelDir)) throw new PpdError(`${modelDir}: no such model folder or .gguf file`);
  const adapterDir = values.ppd ?? (existsSync(join(modelDir, 'ppd', 'adapter_config.json')) ? join(modelDir, 'ppd') : undefined);
  const lookup = Number(values.lookup);
  if (!Number.isInteger(lookup) || lookup < 0) throw new PpdError(`--lookup must be an integer >= 0, got ${values.lookup}`);
  const treesFile = values.trees ?? (adapterDir && join(adapterDir, TREES_FILE));
  if (treesFile && !existsSync(treesFile)) throw new PpdError(`${treesFile}: no tree set`);
  const { manifest, files } = pageModel({ modelDir, adapter: adapterDir && treesFile ? { dir: adapterDir, treesFile, lookup } : undefined });

  const out = resolve(values.out!);
  const staging = `${out}.tmp-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  const write = (name: string, body: Uint8Array | string) => {
    mkdirSync(dirname(join(staging, name)), { recursive: true });
    writeFileSync(join(staging, name), body);
  };
  const copy = (name: string, from: string) => {
    mkdirSync(dirname(join(staging, name)), { recursive: true });
    copyFileSync(from, join(staging, name));
  };
  try {
    for (const [name, file] of await bundlePage()) write(name, file.body);
    for (const name of ORT_FILES) copy(`ort/${name}`, ortFilePath(name));
    for (const [name, path] of files.model) copy(`model/${name}`, path);
    for (const [name, path] of files.adapter) copy(`adapter/${name}`, path);
    write('manifest.json', `${JSON.stringify(manifest, null, 2)}\n`);
    write('_headers', `/*\n${Object.entries(ISOLATION_HEADERS).map(([k, v]) => `  ${k}: ${v}`).join('\n')}\n`);
    rmSync(out, { recursive: true, force: true });
    renameSync(staging, out);
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    throw error;
  }
  process.stdout.write(`wrote ${out}: the page (index.html), onnxruntime-web, ${manifest.model.name}${manifest.adapter ? ' and its PPD adapter' : ''}; serve it with COOP/COEP headers for WebAssembly threads\n`);
}

main().catch(exitOnPpdError);
