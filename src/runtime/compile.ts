/**
 * Compiled graphs on disk (Node): a GraphSpec built into an ONNX model file plus its external
 * weight data, reusing an earlier compilation of the same spec when one is cached.
 *
 * The cache key is a hash of the spec's identity (builder version, variant, config, the
 * checkpoint's files with their sizes and modification times), so an edited checkpoint is
 * recompiled. Compilation writes into a temporary folder and renames it into place, so a crash
 * never leaves a half written model that a later run would trust. Not cached (cacheDir false):
 * the files live in a temporary folder that `dispose` removes once ONNX Runtime has read them.
 * The browser keeps its compiled graphs in Cache Storage instead (ort-web.ts).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileSink } from '../graph/external-file.ts';
import type { GraphSpec } from './session.ts';

const MODEL_FILE = 'model.onnx';
const DATA_FILE = 'model.onnx.data';

export interface CompileOptions {
  /** Where compiled models are kept; false = compile into a temporary folder, removed after load. */
  cacheDir?: string | false;
}

export interface CompiledModel {
  path: string;
  /** Removes the files when they were not cached. */
  dispose(): void;
}

export function defaultCacheDir(): string {
  return process.env.PPD_CACHE_DIR ?? join(homedir(), '.cache', 'ppd', 'graphs');
}

/** The folder name a spec compiles into: a hash of its identity. */
export function graphKey(graph: GraphSpec): string {
  return createHash('sha256').update(graph.identity).digest('hex').slice(0, 32);
}

function compileInto(dir: string, graph: GraphSpec): void {
  writeFileSync(join(dir, MODEL_FILE), graph.build(fileSink(join(dir, DATA_FILE))));
}

/**
 * Renames a compiled `staging` folder to `finalDir`. Processes compiling the same graph at once
 * (a server and a CLI, a test's parallel commands) race here: the first rename wins and the
 * others keep its folder, which a rename publishes complete. Removing a `finalDir` that holds a
 * model would pull the files from under the process that just published them (and fail with
 * ENOTEMPTY when a third renames in meanwhile); only a leftover without its model is removed.
 */
function publish(staging: string, finalDir: string): void {
  if (existsSync(finalDir) && !existsSync(join(finalDir, MODEL_FILE))) rmSync(finalDir, { recursive: true, force: true });
  try {
    renameSync(staging, finalDir);
  } catch (error) {
    if (!existsSync(join(finalDir, MODEL_FILE))) throw error;
    rmSync(staging, { recursive: true, force: true });
  }
}

export function compileGraph(graph: GraphSpec, options: CompileOptions = {}): CompiledModel {
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  if (cacheDir === false) {
    const dir = mkdtempSync(join(tmpdir(), 'ppd-graph-'));
    compileInto(dir, graph);
    return { path: join(dir, MODEL_FILE), dispose: () => rmSync(dir, { recursive: true, force: true }) };
  }
  const finalDir = join(cacheDir, graphKey(graph));
  const path = join(finalDir, MODEL_FILE);
  if (!existsSync(path)) {
    mkdirSync(cacheDir, { recursive: true });
    const staging = mkdtempSync(join(cacheDir, '.staging-'));
    try {
      compileInto(staging, graph);
      publish(staging, finalDir);
    } catch (error) {
      rmSync(staging, { recursive: true, force: true });
      throw error;
    }
  }
  return { path, dispose: () => {} };
}
