/**
 * The corpora this repository carries (data/<corpus>/, held-out splits committed) and the
 * tokenizer each was made for (models/tokenizer-*). Their held-out text is a sensible default
 * for commands that need some (`ppd calibrate`'s end-to-end check, bench:ppd's prompts) only
 * for a model that reads it with that same tokenizer: the bundled models, or one trained here on
 * that corpus. Any other model gets no default, and the command asks for its own text, rather
 * than measuring a code model on Bible chapters without a word.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InputError } from '../errors.ts';
import { openForReading } from '../format/file-io.ts';
import { readJsonObject } from '../format/text-file.ts';
import { Tokenizer } from '../tokenizer/tokenizer.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface BundledCorpus {
  /** The corpus folder (split files train/valid/test.txt; train.txt is built, not committed). */
  dir: string;
  /** The tokenizer folder it was made for (tokenizer.json + tokenizer_config.json). */
  tokenizer: string;
}

/**
 * Which one a model gets is decided by what its tokenizer does (readsLike), never by name, so a
 * retrained bundled model (data/code-corpus's tokenizer since issue 18) finds its corpus too.
 */
export const BUNDLED_CORPORA: readonly BundledCorpus[] = [
  { dir: join(ROOT, 'data', 'corpus'), tokenizer: join(ROOT, 'models', 'tokenizer-8k') },
  { dir: join(ROOT, 'data', 'prose-corpus'), tokenizer: join(ROOT, 'models', 'tokenizer-prose-8k') },
  { dir: join(ROOT, 'data', 'code-corpus'), tokenizer: join(ROOT, 'models', 'tokenizer-code-8k') },
];

/** The held-out split every corpus commits: the default text for checks and benchmarks. */
export const heldOutFile = (corpus: BundledCorpus) => join(corpus.dir, 'test.txt');

/** Characters of the held-out text both tokenizers encode, beside comparing vocabularies. */
const PROBE_CHARS = 2_000;

const corpusTokenizers = new Map<string, Tokenizer | null>();

/** The tokenizer `corpus` was made for; null when its files are not here. Loaded once. */
function corpusTokenizer(corpus: BundledCorpus): Tokenizer | null {
  if (!corpusTokenizers.has(corpus.tokenizer)) {
    const tokenizerFile = join(corpus.tokenizer, 'tokenizer.json');
    const configFile = join(corpus.tokenizer, 'tokenizer_config.json');
    const present = existsSync(tokenizerFile) && existsSync(configFile) && existsSync(heldOutFile(corpus));
    corpusTokenizers.set(corpus.tokenizer, present ? Tokenizer.fromFile(openForReading(tokenizerFile), readJsonObject(configFile)) : null);
  }
  return corpusTokenizers.get(corpus.tokenizer)!;
}

/**
 * Whether `tokenizer` reads `corpus`'s text as the tokenizer it was made for does: the same
 * vocabulary (every id's string), BOS and EOS, and the same ids for the opening of its held-out
 * text. (Tokenizer files differ in bytes when a GGUF file rebuilds one, so what they do is
 * compared, not their bytes.)
 */
export function readsLike(tokenizer: Tokenizer, corpus: BundledCorpus): boolean {
  const own = corpusTokenizer(corpus);
  if (own === null || own.vocabSize !== tokenizer.vocabSize || own.bosId !== tokenizer.bosId || own.eosId !== tokenizer.eosId) return false;
  for (let id = 0; id < own.vocabSize; id++) if (own.idToToken(id) !== tokenizer.idToToken(id)) return false;
  const probe = readFileSync(heldOutFile(corpus), 'utf8').slice(0, PROBE_CHARS);
  const [a, b] = [own.encode(probe, { addBos: false }), tokenizer.encode(probe, { addBos: false })];
  return a.length === b.length && a.every((id, i) => id === b[i]);
}

/** The held-out text of the bundled corpus made for `tokenizer`'s tokenizer, or undefined when none was. */
export function bundledHeldOutFor(tokenizer: Tokenizer): string | undefined {
  const corpus = BUNDLED_CORPORA.find((c) => readsLike(tokenizer, c));
  return corpus === undefined ? undefined : heldOutFile(corpus);
}

/**
 * The held-out text a command defaults to for a model read by `tokenizer` (bundledHeldOutFor), or
 * one InputError saying that `flag` must name the model's own text: `model` reads none of this
 * repository's corpora as their tokenizers do. `alternative` adds a way out (e.g. skipping a check).
 */
export function defaultHeldOutFile(tokenizer: Tokenizer | undefined, model: string, flag: string, alternative = ''): string {
  const file = tokenizer === undefined ? undefined : bundledHeldOutFor(tokenizer);
  if (file !== undefined) return file;
  const corpora = BUNDLED_CORPORA.map((c) => relative(ROOT, c.dir)).join(', ');
  throw new InputError(
    `${flag} is needed: ${model} does not use the tokenizer of a corpus in this repository (${corpora}), whose held-out text is the default only for models that do; name text the model knows${alternative}`,
  );
}
