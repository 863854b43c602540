/**
 * What speculative decoding needs besides the target: the draft model, loaded from its folder
 * after checking that it speaks the target's vocabulary, optionally with its own PPD adapter,
 * and the most tokens it may draft per step.
 *
 * A draft must share the target's token ids: the target verifies the draft's ids and compares
 * the two models' distributions entry by entry. So the vocabulary sizes must be equal and,
 * where both folders have a tokenizer, every id must spell the same token. The check runs
 * before the draft's graph is compiled, so a wrong folder fails fast.
 */
import { loadModel, tokenizerOf, type LoadedModel, type LoadOptions } from '../checkpoint/load.ts';
import { ModelError } from '../errors.ts';
import { openModelDir } from '../checkpoint/model-dir.ts';
import type { LlamaModel } from '../model/llama-model.ts';
import { loadPpdSetup, type PpdSetup } from '../ppd/setup.ts';
import { promptHeadOf } from '../ppd/adapter-files.ts';
import type { Tokenizer } from '../tokenizer/tokenizer.ts';

/** Most tokens drafted per step unless told otherwise. */
export const DEFAULT_DRAFT_TOKENS = 6;

export interface DraftSetup {
  /** The draft model's folder (for messages and reports). */
  dir: string;
  model: LlamaModel;
  /** Draft with PPD: the draft's own adapter and trees (its verification is always rejection). */
  ppd?: PpdSetup;
  /** K: the draft length adapts within 1..K (decode/draft-length.ts). */
  draftTokens: number;
}

export interface DraftOptions extends LoadOptions {
  /** Adapter folder of the draft, to draft with PPD (its trees: this machine's profile, else trees.json). */
  ppd?: string;
  /** K, the most tokens drafted per step (default DEFAULT_DRAFT_TOKENS). */
  draftTokens?: number;
}

/**
 * Throws a ModelError unless `draft` uses `target`'s vocabulary: the same vocab_size and, when
 * both have a tokenizer, the same token string for every id.
 */
export function checkSameVocabulary(
  target: { dir: string; vocabSize: number; tokenizer?: Tokenizer },
  draft: { dir: string; vocabSize: number; tokenizer?: Tokenizer },
): void {
  const hint = 'a draft model must share the target\'s tokenizer and vocabulary';
  if (draft.vocabSize !== target.vocabSize) {
    throw new ModelError(`draft model ${draft.dir}: vocab_size ${draft.vocabSize} differs from the target's ${target.vocabSize} (${target.dir}); ${hint}`);
  }
  const [a, b] = [target.tokenizer, draft.tokenizer];
  if (!a || !b) return;
  if (a.vocabSize !== b.vocabSize) {
    throw new ModelError(`draft model ${draft.dir}: its tokenizer knows ${b.vocabSize} tokens, the target's (${target.dir}) ${a.vocabSize}; ${hint}`);
  }
  for (let id = 0; id < a.vocabSize; id++) {
    const [ta, tb] = [a.idToToken(id), b.idToToken(id)];
    if (ta !== tb) {
      throw new ModelError(
        `draft model ${draft.dir}: token id ${id} is ${JSON.stringify(tb ?? null)} there but ${JSON.stringify(ta ?? null)} in the target's tokenizer (${target.dir}); ${hint}`,
      );
    }
  }
}

/** Opens the draft folder, checks its vocabulary against `target`'s, then loads it (and its adapter). */
export async function loadDraft(target: LoadedModel, dir: string, options: DraftOptions = {}): Promise<DraftSetup> {
  const files = openModelDir(dir);
  files.tensors.close();
  const tokenizer = tokenizerOf(files);
  checkSameVocabulary({ dir: target.dir, vocabSize: target.config.vocabSize, tokenizer: target.tokenizer }, { dir, vocabSize: files.config.vocabSize, tokenizer });
  const { ppd, draftTokens, ...load } = options;
  // The adapter is checked against the draft's config before the (slow) compilation, too.
  const ppdSetup = ppd === undefined ? undefined : loadPpdSetup(files.config, ppd, { verification: 'rejection', threads: load.threads, quantize: load.quantize, modelDir: dir });
  const loaded = await loadModel(dir, { ...load, promptHead: ppd === undefined ? undefined : promptHeadOf(ppd) });
  return { dir, model: loaded.model, ppd: ppdSetup, draftTokens: draftTokens ?? DEFAULT_DRAFT_TOKENS };
}
