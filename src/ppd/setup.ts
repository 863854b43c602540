/**
 * What PPD decoding needs besides the model, loaded on Node from an adapter folder: the
 * prompt-token adapter (checked against the base model) and the dynamic tree set to decode with:
 * a file the caller names, else the hardware profile that `ppd calibrate` made for this machine
 * (hardware-profile.ts), else `trees.json` in the folder, the safe default. A folder without
 * trees (the PPD reference implementation's adapters come without) decodes with trees built for
 * DEFAULT_TREE_BUDGET rows from its accuracy.json, or from a prior guess where it has none, and
 * says so. The static n-gram table that drafts beside the trees (ngram-table.ts) is the file
 * the caller names, else the folder's ngram.bin when it has one and the profile did not measure
 * decoding faster without it, checked against the model's tokenizer and config. The setup
 * itself and reading it from any Folder (the browser's) are adapter-folder.ts's.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { LlamaConfig } from '../model/config.ts';
import type { QuantizeMode } from '../format/quantize.ts';
import { calibrationCommandLine, findProfile, machineSignature, PROFILES_DIR } from './hardware-profile.ts';
import { defaultThreads } from '../runtime/ort.ts';
import { configHashes, PromptAdapter } from './adapter.ts';
import { loadAdapter } from './adapter-files.ts';
import { loadTreeSet } from './tree-files.ts';
import { readAccuracyTable } from './accuracy-files.ts';
import { ACCURACY_FILE, DEFAULT_LOOKUP_TOKENS, DEFAULT_NGRAM_TOKENS, guessesNothing, missingTrees, TREES_FILE, type PpdSetup } from './adapter-folder.ts';
import { bindingOf } from './ngram-table.ts';
import { adapterNgramFile, loadNgramTable } from './ngram-files.ts';
import type { Tokenizer } from '../tokenizer/tokenizer.ts';
import type { PpdTreeSet } from './tree.ts';
import { buildTreeSet, priorAccuracyTable } from './tree-builder.ts';

export { DEFAULT_LOOKUP_TOKENS, DEFAULT_NGRAM_TOKENS, TREES_FILE, type PpdSetup } from './adapter-folder.ts';

/** Input rows per step of the trees built for an adapter folder that has none (train-prompts' default budget). */
export const DEFAULT_TREE_BUDGET = 16;

export interface PpdSetupOptions {
  /** A tree-set file; wins over any hardware profile. */
  trees?: string;
  verification?: PpdSetup['verification'];
  /** Most context-lookup tokens per step (default: what this machine's profile measured best, else DEFAULT_LOOKUP_TOKENS; 0 = none). */
  lookup?: number;
  /** A static n-gram table file, or 'off' (default: the adapter folder's ngram.bin when it has one). */
  ngram?: string;
  /** Most n-gram-table tokens per step (default DEFAULT_NGRAM_TOKENS; 0 = none). */
  ngramTokens?: number;
  /** The model's tokenizer: an n-gram table must have been built with the same one (checked when given). */
  tokenizer?: Tokenizer;
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
 * The tree-set file to decode with, the context-lookup length and n-gram-table choice this
 * machine's profile measured best with it (when it did), and the notice to show when the trees
 * are the default for want of a profile. With `lookup: 0` where the profile's choice verifies a
 * lookup chain, the prompt-token trees it measured fastest alone (`withoutLookup`, when it
 * measured any), with a notice where they measured slower than plain decoding.
 */
export function treesFileFor(base: LlamaConfig, adapter: PromptAdapter, adapterDir: string, options: PpdSetupOptions = {}): { path: string; lookup?: number; ngram?: boolean; notice?: string } {
  if (options.trees !== undefined) return { path: options.trees };
  const threads = options.threads ?? defaultThreads();
  const found = findProfile(adapterDir, { signature: machineSignature(threads, options.quantize), baseConfigHashes: configHashes(base), accuracyFile: join(adapterDir, ACCURACY_FILE) });
  if (found.found) {
    const { profile } = found;
    const alone = options.lookup === 0 && profile.lookup ? profile.withoutLookup : undefined;
    if (alone) {
      const path = join(adapterDir, PROFILES_DIR, alone.trees);
      const slower = `this machine's calibration measured the prompt tokens alone at ${alone.measuredSpeedup.toFixed(2)}× plain decoding at best (${path}, ${alone.budget} rows), slower than plain; its choice is the context lookup (its default)${profile.measuredSpeedup === null ? '' : `, measured ${profile.measuredSpeedup.toFixed(2)}×`}`;
      return { path, lookup: 0, ngram: false, ...(alone.measuredSpeedup < 1 ? { notice: slower } : {}) };
    }
    return { path: found.treesPath, lookup: profile.lookup, ngram: profile.ngram };
  }
  const fallback = join(adapterDir, TREES_FILE);
  const trainedOn = adapter.config.training?.base;
  const modelDir = options.modelDir ?? (typeof trainedOn === 'string' ? trainedOn : '<model dir>');
  return { path: fallback, notice: `${found.reason}; using ${fallback}. Make one with: ${calibrationCommandLine(modelDir, adapterDir, threads, options.quantize)}` };
}

export function loadPpdSetup(base: LlamaConfig, adapterDir: string, options: PpdSetupOptions = {}): PpdSetup {
  const adapter = loadAdapter(adapterDir, base);
  const { path: treesPath, lookup, ngram, notice } = treesFileFor(base, adapter, adapterDir, options);
  // Notices wait until every file has been read: a bad one is then the only line printed.
  const notices: string[] = [];
  let setup: PpdSetup;
  if (!existsSync(treesPath)) {
    if (options.trees !== undefined) throw missingTrees(treesPath, join(adapterDir, ACCURACY_FILE));
    setup = { adapter, trees: builtTrees(adapter, adapterDir, (line) => notices.push(line)), verification: options.verification ?? 'coupled', lookup: options.lookup ?? DEFAULT_LOOKUP_TOKENS };
  } else {
    if (notice !== undefined) notices.push(notice);
    setup = { adapter, trees: loadTreeSet(treesPath), treesFile: treesPath, verification: options.verification ?? 'coupled', lookup: options.lookup ?? lookup ?? DEFAULT_LOOKUP_TOKENS };
  }
  setup = { ...setup, ...ngramFor(base, adapterDir, options, setup, ngram) };
  const tell = options.onNotice ?? ((line) => process.stderr.write(`${line}\n`));
  notices.forEach(tell);
  return setup;
}

/**
 * The static n-gram table to decode with: `--ngram FILE` (or none with 'off'), else the adapter
 * folder's own when it has one and this machine's profile (`profileChoice`) did not measure
 * decoding faster without it, up to `--ngram-tokens` (else DEFAULT_NGRAM_TOKENS) per step. A
 * profile that did not measure the table (older, or calibrated before the folder had one) leaves
 * it in unless the profile chose plain decoding outright (a root-only tree set and no context
 * lookup: no guess paid on this machine). Only `--ngram FILE` overrides a profile that left it out.
 */
function ngramFor(base: LlamaConfig, adapterDir: string, options: PpdSetupOptions, setup: PpdSetup, profileChoice: boolean | undefined): Pick<PpdSetup, 'ngram'> {
  if (options.ngram === 'off') return {};
  const tokens = options.ngramTokens ?? DEFAULT_NGRAM_TOKENS;
  const folderTable = profileChoice ?? !guessesNothing(setup);
  const file = options.ngram ?? (folderTable ? adapterNgramFile(adapterDir) : undefined);
  if (file === undefined || tokens === 0) return {};
  const table = loadNgramTable(file, { binding: bindingOf(base, options.tokenizer), modelDir: options.modelDir ?? '<model dir>' });
  return { ngram: { table, tokens, file } };
}

/**
 * The one-line note for a setup that leaves PPD nothing to guess with (guessesNothing), with
 * which generation decodes plainly, naming why: this machine's calibration chose plain decoding,
 * or the named trees have budget 1 and the lookup is off. Undefined when PPD decodes.
 */
export function plainDecodingNote(setup: PpdSetup, adapterDir: string, options: Pick<PpdSetupOptions, 'trees'> = {}): string | undefined {
  if (!guessesNothing(setup)) return undefined;
  const trees = setup.treesFile ?? join(adapterDir, TREES_FILE);
  const fromProfile = options.trees === undefined && trees !== join(adapterDir, TREES_FILE);
  return fromProfile
    ? `note: this machine's calibration chose plain decoding for ${adapterDir} (${trees}: budget 1, no context lookup), so --ppd decodes one token per forward here; --lookup N or --trees ${join(adapterDir, TREES_FILE)} decode with PPD anyway`
    : `note: ${trees} has budget 1 and the context lookup is off: nothing to guess, so --ppd decodes one token per forward`;
}

/** Trees for a folder that has none: from its accuracy.json, else from the prior guess; the notice says which. */
function builtTrees(adapter: PromptAdapter, adapterDir: string, tell: (line: string) => void): PpdTreeSet {
  const accuracyFile = join(adapterDir, ACCURACY_FILE);
  const measured = existsSync(accuracyFile);
  const { promptTokens: N, virtualTokens: V } = adapter;
  const acc = measured ? readAccuracyTable(accuracyFile) : priorAccuracyTable(N);
  const trees = buildTreeSet(acc, { budget: DEFAULT_TREE_BUDGET, promptTokens: N, virtualTokens: V, attention: adapter.config.attention, accuracySource: measured ? accuracyFile : 'prior guess (no accuracy.json)' });
  const out = join(adapterDir, TREES_FILE);
  tell(
    measured
      ? `${adapterDir} has no ${TREES_FILE}: using trees of ${DEFAULT_TREE_BUDGET} rows built from ${accuracyFile} (save them with: ppd tree build --accuracies ${accuracyFile} --budget ${DEFAULT_TREE_BUDGET})`
      : `${adapterDir} has no ${TREES_FILE} or ${ACCURACY_FILE}: using trees of ${DEFAULT_TREE_BUDGET} rows from a prior guess of the prompt tokens' accuracy; measure it with \`ppd eval-prompts --model MODEL --ppd ${adapterDir} --data TEXT\`, or convert the reference code's trees with \`ppd tree convert --from FILE.py --adapter ${adapterDir}\` (writes ${out})`,
  );
  return trees;
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
