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
import { buildTreeSet } from './tree-builder.ts';

/** The files of an adapter folder besides the adapter's own (adapter.ts): trees and the accuracy table. */
export const TREES_FILE = 'trees.json';
export const ACCURACY_FILE = 'accuracy.json';
/**
 * Context-lookup tokens per step unless `--lookup` or this machine's calibration says otherwise;
 * why 8: docs/ARCHITECTURE.md, "One PPD step".
 */
export const DEFAULT_LOOKUP_TOKENS = 8;

export interface PpdSetup {
  adapter: PromptAdapter;
  trees: PpdTreeSet;
  /** Where the trees came from (the --trees file, this machine's profile, or trees.json); absent when the caller built them. */
  treesFile?: string;
  /** Verification when sampling (greedy decoding always verifies greedily). */
  verification: Exclude<Verification, 'greedy'>;
  /** Most context-lookup tokens per step (PpdOptions.lookup); absent or 0: none. */
  lookup?: number;
}

/**
 * Whether a setup leaves PPD nothing to guess with: a tree set of budget 1 (no row beside the
 * root: how a calibration says plain decoding is fastest on this machine) and no context lookup.
 * A generation then decodes plainly (generate/request.ts), without PPD's bookkeeping.
 */
export function guessesNothing(setup: PpdSetup): boolean {
  return setup.trees.budget <= 1 && (setup.lookup ?? 0) === 0;
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
  const { promptTokens, virtualTokens, attention } = setup.adapter.config;
  // Budget 1 leaves no row for a guess or a prompt token, whatever the accuracy table says.
  const rootOnly = buildTreeSet(Array.from({ length: promptTokens }, () => [0]), { budget: 1, promptTokens, virtualTokens, attention });
  return { ...setup, trees: rootOnly, treesFile: undefined, lookup };
}

/** The error for a tree-set file that is not there, with the command that makes one. */
export function missingTrees(treesFile: string, accuracyFile: string): FormatError {
  return new FormatError(treesFile, `no tree set; build one with \`ppd tree build --accuracies ${accuracyFile} --budget N --out ${treesFile}\``);
}
