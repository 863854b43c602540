/**
 * What PPD decoding needs besides the model, loaded on Node from an adapter folder: the
 * prompt-token adapter (checked against the base model) and the dynamic tree set to decode with:
 * a file the caller names, else the hardware profile that `ppd calibrate` made for this machine
 * (hardware-profile.ts), else `trees.json` in the folder, the safe default. The setup itself
 * and reading it from any Folder (the browser's) are adapter-folder.ts's.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { LlamaConfig } from '../model/config.ts';
import type { QuantizeMode } from '../format/quantize.ts';
import { calibrateCommand, findProfile, machineSignature } from './hardware-profile.ts';
import { defaultThreads } from '../runtime/ort.ts';
import { configHash, PromptAdapter } from './adapter.ts';
import { loadAdapter } from './adapter-files.ts';
import { loadTreeSet } from './tree-files.ts';
import { ACCURACY_FILE, DEFAULT_LOOKUP_TOKENS, missingTrees, TREES_FILE, type PpdSetup } from './adapter-folder.ts';

export { DEFAULT_LOOKUP_TOKENS, TREES_FILE, type PpdSetup } from './adapter-folder.ts';

export interface PpdSetupOptions {
  /** A tree-set file; wins over any hardware profile. */
  trees?: string;
  verification?: PpdSetup['verification'];
  /** Most context-lookup tokens per step (default: what this machine's profile measured best, else DEFAULT_LOOKUP_TOKENS; 0 = none). */
  lookup?: number;
  /** ONNX Runtime threads the model runs with (default: defaultThreads()): part of the machine signature. */
  threads?: number;
  /** The model's weight quantization (`--quantize`), absent for f32: part of the machine signature too. */
  quantize?: QuantizeMode;
  /** The base model folder, for the calibrate command in the notice. */
  modelDir?: string;
  /** Receives the one-line notice when no profile fits this machine (default: a line on stderr). */
  onNotice?: (line: string) => void;
}

/**
 * The tree-set file to decode with, the context-lookup length this machine's profile measured
 * best with it (when it did), and the notice to show when the trees are the default for want of
 * a profile.
 */
export function treesFileFor(base: LlamaConfig, adapter: PromptAdapter, adapterDir: string, options: PpdSetupOptions = {}): { path: string; lookup?: number; notice?: string } {
  if (options.trees !== undefined) return { path: options.trees };
  const threads = options.threads ?? defaultThreads();
  const found = findProfile(adapterDir, { signature: machineSignature(threads, options.quantize), baseConfigHash: configHash(base), accuracyFile: join(adapterDir, ACCURACY_FILE) });
  if (found.found) return { path: found.treesPath, lookup: found.profile.lookup };
  const fallback = join(adapterDir, TREES_FILE);
  const trainedOn = adapter.config.training?.base;
  const modelDir = options.modelDir ?? (typeof trainedOn === 'string' ? trainedOn : '<model dir>');
  return { path: fallback, notice: `${found.reason}; using ${fallback}. Make one with: ${calibrateCommand(modelDir, adapterDir, threads, options.quantize)}` };
}

export function loadPpdSetup(base: LlamaConfig, adapterDir: string, options: PpdSetupOptions = {}): PpdSetup {
  const adapter = loadAdapter(adapterDir, base);
  const { path: treesPath, lookup, notice } = treesFileFor(base, adapter, adapterDir, options);
  if (!existsSync(treesPath)) throw missingTrees(treesPath, join(adapterDir, ACCURACY_FILE));
  if (notice !== undefined) (options.onNotice ?? ((line) => process.stderr.write(`${line}\n`)))(notice);
  return {
    adapter,
    trees: loadTreeSet(treesPath),
    treesFile: treesPath,
    verification: options.verification ?? 'rejection',
    lookup: options.lookup ?? lookup ?? DEFAULT_LOOKUP_TOKENS,
  };
}

/**
 * The setup to show PPD at work with: the machine's own (as loadPpdSetup picks it), unless that
 * is a budget-1 tree set — a calibration that found plain decoding fastest here, with which
 * generation decodes plainly — then the adapter's trees.json. `plainChosen` says which happened,
 * for the caller to tell. For demos and benchmarks that compare PPD with plain decoding.
 */
export function loadGuessingPpdSetup(base: LlamaConfig, adapterDir: string, options: PpdSetupOptions = {}): { setup: PpdSetup; plainChosen: boolean } {
  const setup = loadPpdSetup(base, adapterDir, options);
  if (setup.trees.budget > 1) return { setup, plainChosen: false };
  return { setup: loadPpdSetup(base, adapterDir, { ...options, trees: join(adapterDir, TREES_FILE) }), plainChosen: true };
}
