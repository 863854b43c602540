/**
 * What PPD decoding needs besides the model, read from an adapter folder given as a Folder (the
 * browser's fetched or picked files; Node's directories): the prompt-token adapter, checked
 * against the base model, and a tree set in the folder. Choosing the tree set by this machine's
 * calibration profile is Node's part (setup.ts).
 */
import { FormatError } from '../errors.ts';
import type { Folder } from '../format/readable-file.ts';
import type { LlamaConfig } from '../model/config.ts';
import { PromptAdapter } from './adapter.ts';
import type { Verification } from './decode.ts';
import { readTreeSet, type PpdTreeSet } from './tree.ts';
import { rootOnlyTreeSet } from './tree-builder.ts';
import type { NgramTable } from './ngram-table.ts';

/** The files of an adapter folder besides the adapter's own (adapter.ts): trees and the accuracy table. */
export const TREES_FILE = 'trees.json';
export const ACCURACY_FILE = 'accuracy.json';
/**
 * Context-lookup tokens per step unless `--lookup` or this machine's calibration says otherwise;
 * why 8: docs/ARCHITECTURE.md, "One PPD step".
 */
export const DEFAULT_LOOKUP_TOKENS = 8;
/**
 * Most tokens per step the static n-gram table (ngram-table.ts) may draft where the context
 * lookup finds nothing, unless `--ngram-tokens` says otherwise (the chain adapts within it, DraftLength);
 * why 8: docs/NGRAM.md.
 */
export const DEFAULT_NGRAM_TOKENS = 8;

export interface PpdSetup {
  adapter: PromptAdapter;
  trees: PpdTreeSet;
  /** Where the trees came from (the --trees file, this machine's profile, or trees.json); absent when the caller built them. */
  treesFile?: string;
  /** Verification when sampling (greedy decoding always verifies greedily). */
  verification: Exclude<Verification, 'greedy'>;
  /** Most context-lookup tokens per step (PpdOptions.lookup); absent or 0: none. */
  lookup?: number;
  /** The static n-gram table drafting beside the tree (PpdOptions.ngram), and its file; absent: none. */
  ngram?: { table: NgramTable; tokens: number; file: string };
}

/**
 * Whether a setup leaves PPD nothing to guess with: a tree set of budget 1 (no row beside the
 * root: how a calibration says plain decoding is fastest on this machine), no context lookup and
 * no n-gram table. A generation then decodes plainly (generate/request.ts), without PPD's bookkeeping.
 */
export function guessesNothing(setup: PpdSetup): boolean {
  return setup.trees.budget <= 1 && (setup.lookup ?? 0) === 0 && (setup.ngram?.tokens ?? 0) === 0;
}

export interface FolderSetupOptions {
  /** The tree-set file in the folder (default trees.json). */
  trees?: string;
  verification?: PpdSetup['verification'];
  /** Most context-lookup tokens per step (default DEFAULT_LOOKUP_TOKENS; 0 = none). */
  lookup?: number;
}

export function readPpdSetup(base: LlamaConfig, folder: Folder, options: FolderSetupOptions = {}): PpdSetup {
  const adapter = PromptAdapter.read(folder, base);
  const trees = options.trees ?? TREES_FILE;
  if (!folder.has(trees)) throw missingTrees(folder.nameOf(trees), folder.nameOf(ACCURACY_FILE));
  return {
    adapter,
    trees: readTreeSet(folder, trees),
    treesFile: folder.nameOf(trees),
    verification: options.verification ?? 'coupled',
    lookup: options.lookup ?? DEFAULT_LOOKUP_TOKENS,
  };
}

/**
 * `setup` guessing with the context lookup alone (up to `lookup` tokens a step): a root-only tree
 * set, so no row goes to a prompt token or its guesses.
 */
export function lookupAlone(setup: PpdSetup, lookup: number): PpdSetup {
  return { ...setup, trees: rootOnlyTreeSet(setup.adapter), treesFile: undefined, lookup };
}

/** The error for a tree-set file that is not there, with the command that makes one. */
export function missingTrees(treesFile: string, accuracyFile: string): FormatError {
  return new FormatError(treesFile, `no tree set; build one with \`ppd tree build --accuracies ${accuracyFile} --budget N --out ${treesFile}\``);
}
