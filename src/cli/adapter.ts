/**
 * `ppd convert-adapter`: a prompt-token adapter between ppd's folder format and the PPD reference
 * implementation's (a PEFT prompt-tuning folder), both ways. The formats are ppd/adapter.ts's;
 * with --to peft, the adapter's trees also go out as the reference's Python dictionary when its
 * accuracy table is there to give their probabilities.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { InputError } from '../errors.ts';
import { openModelDir } from '../checkpoint/model-dir.ts';
import { readAccuracyTable } from '../ppd/accuracy-files.ts';
import { loadAdapter, saveAdapter, savePeftAdapter } from '../ppd/adapter-files.ts';
import { ACCURACY_FILE } from '../ppd/adapter-folder.ts';
import { referenceTreesSource } from '../ppd/reference-trees.ts';
import { TREES_FILE } from '../ppd/setup.ts';
import { loadTreeSet, saveTreeSet } from '../ppd/tree-files.ts';

/** Where the reference keeps its trees; its get_dynamic_sparse_tree would need to import it. */
export const REFERENCE_TREES_FILE = 'dynamic_sparse_trees.py';

export interface ConvertAdapterFlags {
  ppd: string;
  model: string;
  to: 'peft' | 'ppd';
  out: string;
  /** base_model_name_or_path written for --to peft (default: the model folder's name). */
  baseModelName?: string;
}

export function convertAdapterCommand(f: ConvertAdapterFlags): void {
  if (existsSync(join(f.out, 'adapter_config.json'))) throw new InputError(`--out "${f.out}" already holds an adapter; choose an empty folder`);
  const model = openModelDir(f.model);
  model.tensors.close();
  const adapter = loadAdapter(f.ppd, model.config);
  const trees = join(f.ppd, TREES_FILE);
  const notes: string[] = [];
  if (f.to === 'peft') {
    savePeftAdapter(adapter, f.out, model.config, f.baseModelName ?? basename(f.model));
    const accuracy = join(f.ppd, ACCURACY_FILE);
    if (existsSync(trees) && existsSync(accuracy)) {
      const set = loadTreeSet(trees);
      const name = `dynamic_sparse_trees_${set.budget}`;
      writeFileSync(join(f.out, REFERENCE_TREES_FILE), referenceTreesSource(set, readAccuracyTable(accuracy), name));
      notes.push(`trees as ${name} in ${REFERENCE_TREES_FILE}`);
    }
  } else {
    saveAdapter(adapter, f.out);
    if (existsSync(trees)) {
      saveTreeSet(join(f.out, TREES_FILE), loadTreeSet(trees));
      notes.push(TREES_FILE);
    }
  }
  const { promptTokens: N, virtualTokens: V } = adapter;
  process.stdout.write(`wrote ${f.out}: ${f.to === 'peft' ? 'PEFT prompt-tuning adapter (the PPD reference format)' : 'ppd adapter'}, ${N} prompt tokens × ${V} virtual${notes.length > 0 ? `, ${notes.join(', ')}` : ''}\n`);
}
