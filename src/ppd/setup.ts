/**
 * What PPD decoding needs besides the model, loaded from an adapter folder: the prompt-token
 * adapter (checked against the base model) and the dynamic tree set to decode with
 * (`trees.json` in the folder unless another file is named).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError } from '../errors.ts';
import type { LlamaConfig } from '../model/config.ts';
import { PromptAdapter } from './adapter.ts';
import { loadTreeSet, type PpdTreeSet } from './tree.ts';
import type { Verification } from './decode.ts';

export const TREES_FILE = 'trees.json';
export const ACCURACY_FILE = 'accuracy.json';

export interface PpdSetup {
  adapter: PromptAdapter;
  trees: PpdTreeSet;
  /** Verification when sampling (greedy decoding always verifies greedily). */
  verification: Exclude<Verification, 'greedy'>;
}

export function loadPpdSetup(base: LlamaConfig, adapterDir: string, options: { trees?: string; verification?: PpdSetup['verification'] } = {}): PpdSetup {
  const adapter = PromptAdapter.load(adapterDir, base);
  const treesPath = options.trees ?? join(adapterDir, TREES_FILE);
  if (!existsSync(treesPath)) {
    throw new FormatError(treesPath, `no tree set; build one with \`ppd tree build --accuracies ${join(adapterDir, ACCURACY_FILE)} --budget N --out ${treesPath}\``);
  }
  return { adapter, trees: loadTreeSet(treesPath), verification: options.verification ?? 'rejection' };
}
