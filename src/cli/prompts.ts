/**
 * `ppd train-prompts`, `ppd eval-prompts`, `ppd tree build` and `ppd tree convert`: the PPD
 * training pipeline from a base model and text to an adapter folder holding the prompt tokens,
 * their accuracy table and a dynamic tree set (or one converted from the reference's trees).
 */
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { cachedTokenStream, noteTextFile } from '../data/tokenize.ts';
import { FormatError, InputError } from '../errors.ts';
import { readTextFile } from '../format/text-file.ts';
import { pickReferenceTrees, readReferenceTreeFile, treeSetFromReference } from '../ppd/reference-trees.ts';
import { openModelDir } from '../checkpoint/model-dir.ts';
import { loadModel, requireTokenizer, type LoadedModel } from '../checkpoint/load.ts';
import { ADAPTER_CONFIG, PromptAdapter } from '../ppd/adapter.ts';
import { loadAdapter, loadAdapterShape, saveAdapter } from '../ppd/adapter-files.ts';
import type { AttentionVariant } from '../ppd/prompt-mask.ts';
import type { PromptHeadKind } from '../model/prompt-head.ts';
import { buildTeacherSequences, loadTeacherSequences, saveTeacherSequences, type TeacherSequences } from '../train/distill.ts';
import { readAccuracyTable, writeAccuracyFile } from '../ppd/accuracy-files.ts';
import { ACCURACY_FILE } from '../ppd/adapter-folder.ts';
import { TREES_FILE } from '../ppd/setup.ts';
import { accuracyTable, heldOutKl, promptGraphShape, PromptSession, trainPrompts, type AccuracyResult } from '../train/train-prompts.ts';
import { saveTreeSet } from '../ppd/tree-files.ts';
import { buildTreeSet } from '../ppd/tree-builder.ts';
import { Progress } from '../report/progress.ts';
import { configHash } from '../ppd/adapter.ts';

export interface TrainPromptsFlags {
  model: string;
  train: string;
  valid: string;
  out: string;
  promptTokens: number;
  virtualTokens: number;
  attention: AttentionVariant;
  initText: string;
  head?: PromptHeadKind;
  sequences: number;
  validSequences: number;
  prefixLength: number;
  generated: number;
  topK: number;
  steps: number;
  batch: number;
  lr: number;
  seed: number;
  budget: number;
  threads?: number;
}

interface TeacherSettings {
  count: number;
  prefixLength: number;
  generated: number;
  topK: number;
  seed: number;
}

/**
 * The teacher sequences of `file` (train/distill.ts), from the cache folder when the same set
 * was built before: the key covers the model (its config, weights and tokenizer files), the
 * text's content and every setting, so another file or model never reuses a set.
 */
async function teacherSequences(loaded: LoadedModel, file: string, cacheDir: string, name: string, o: TeacherSettings): Promise<TeacherSequences> {
  const tokenizer = requireTokenizer(loaded);
  const text = readTextFile(file);
  noteTextFile(file, text);
  const files = openModelDir(loaded.dir);
  const modelStamp = files.tensors.stamp ?? files.tensors.origin;
  files.tensors.close();
  const tokenizerKey = statSync(loaded.dir).isFile() ? modelStamp : readTextFile(join(loaded.dir, 'tokenizer.json'));
  const digest = createHash('sha256')
    .update([configHash(loaded.config), modelStamp, createHash('sha256').update(tokenizerKey).digest('hex'), createHash('sha256').update(text).digest('hex'), JSON.stringify(o)].join('\n'))
    .digest('hex')
    .slice(0, 24);
  const path = join(cacheDir, `teachers-${name}-${digest}.safetensors`);
  const cached = loadTeacherSequences(path);
  if (cached) return cached;
  const stream = cachedTokenStream(tokenizer, tokenizerKey, text, cacheDir);
  const started = performance.now();
  const bar = new Progress(`teacher sequences (${name})`, o.count, 'sequences');
  const set = await buildTeacherSequences(loaded.model, stream, { ...o, eosIds: loaded.eosIds, onProgress: (done) => bar.update(done) });
  bar.stop();
  saveTeacherSequences(path, set);
  process.stderr.write(`${name} teacher set: ${o.count} sequences of ${o.prefixLength} + ${o.generated} tokens in ${((performance.now() - started) / 1000).toFixed(1)} s, ${(statSync(path).size / 1e6).toFixed(2)} MB\n`);
  return set;
}

function printTable(acc: AccuracyResult): void {
  const ranks = acc.table[0]?.length ?? 0;
  process.stdout.write(`prompt token | ${Array.from({ length: ranks }, (_, k) => `top-${k + 1}`.padStart(6)).join(' ')} | top-1 s.e. (${acc.cuts} cut points)\n`);
  acc.table.forEach((row, i) => {
    let cumulative = 0;
    const cells = row.map((a) => (cumulative += a).toFixed(3).padStart(6));
    process.stdout.write(`${String(i).padStart(12)} | ${cells.join(' ')} | ${acc.top1StandardError[i]!.toFixed(4)}\n`);
  });
}

/** Writes accuracy.json into the adapter folder, saying on stderr what it replaces. */
function writeAccuracy(dir: string, acc: AccuracyResult, source: string): void {
  const path = join(dir, ACCURACY_FILE);
  if (existsSync(path)) process.stderr.write(`replacing ${path} with the table measured on ${source}\n`);
  writeAccuracyFile(path, acc.table, acc.cuts, source, acc.top1StandardError);
}

export async function trainPromptsCommand(f: TrainPromptsFlags): Promise<void> {
  const started = performance.now();
  const loaded = await loadModel(f.model, { threads: f.threads, needsTokenizer: true });
  const tokenizer = requireTokenizer(loaded);
  const cacheDir = join(f.out, 'cache');
  const teacher = { prefixLength: f.prefixLength, generated: f.generated, topK: f.topK };
  const train = await teacherSequences(loaded, f.train, cacheDir, 'train', { count: f.sequences, ...teacher, seed: f.seed });
  const valid = await teacherSequences(loaded, f.valid, cacheDir, 'valid', { count: f.validSequences, ...teacher, seed: f.seed + 1 });

  const adapter = PromptAdapter.initialise(loaded.config, (ids) => loaded.model.embed(ids), tokenizer.encode(f.initText, { addBos: false }), {
    promptTokens: f.promptTokens,
    virtualTokens: f.virtualTokens,
    attention: f.attention,
    initText: f.initText,
    head: f.head,
  });
  const shape = promptGraphShape(train, { promptTokens: f.promptTokens, virtualTokens: f.virtualTokens, head: f.head });
  const files = openModelDir(f.model);
  const session = await PromptSession.create(loaded.model, files.tensors, train, shape, f.attention, { threads: f.threads });
  files.tensors.close();
  const params = adapter.parameters();
  const initialKl = await heldOutKl(session, params, valid);
  const bar = new Progress('train-prompts', f.steps, 'steps', ['kl', 'valid kl', 'lr']);
  let lastValid = initialKl.toFixed(4);
  const trainStart = performance.now();
  const history = await trainPrompts(
    session,
    params,
    train,
    { set: valid, limit: valid.count },
    { steps: f.steps, batch: f.batch, schedule: { peakLr: f.lr, warmupSteps: Math.ceil(f.steps / 20), minLrRatio: 0 }, seed: f.seed, evalEvery: Math.max(1, Math.floor(f.steps / 10)) },
    (p) => {
      if (p.validKl !== undefined) lastValid = p.validKl.toFixed(4);
      bar.update(p.step, { kl: p.kl.toFixed(4), 'valid kl': lastValid, lr: p.lr.toExponential(2) });
    },
  );
  bar.stop();
  const trainSeconds = (performance.now() - trainStart) / 1000;
  const acc = await accuracyTable(session, params, valid);
  await session.release();

  const { parameters, share } = adapter.parameterShare(loaded.config);
  adapter.config.training = {
    base: f.model,
    trainText: f.train,
    sequences: f.sequences,
    validSequences: f.validSequences,
    prefixLength: f.prefixLength,
    generated: f.generated,
    cutsPerSequence: shape.cuts,
    teacherTopK: f.topK,
    steps: f.steps,
    batch: f.batch,
    lr: f.lr,
    seed: f.seed,
    heldOutKlBefore: initialKl,
    heldOutKlAfter: history.at(-1)?.validKl,
    trainSeconds,
    wallSeconds: (performance.now() - started) / 1000,
    trainableParameters: parameters,
    shareOfBase: share,
    history,
  };
  saveAdapter(adapter, f.out);
  writeAccuracy(f.out, acc, f.valid);
  const trees = buildTreeSet(acc.table, { budget: f.budget, promptTokens: f.promptTokens, virtualTokens: f.virtualTokens, attention: f.attention, accuracySource: join(f.out, ACCURACY_FILE) });
  saveTreeSet(join(f.out, TREES_FILE), trees);
  printTable(acc);
  process.stderr.write(
    `held-out KL ${initialKl.toFixed(4)} -> ${history.at(-1)?.validKl?.toFixed(4)}; ${parameters} trainable parameters ` +
      `(${(share * 100).toPrecision(2)} % of the base model); training ${trainSeconds.toFixed(0)} s; ` +
      `trees for budget ${f.budget}: expected ${trees.expectedTokensPerStep.toFixed(2)} tokens/step; wrote ${f.out}\n`,
  );
  await loaded.model.release();
}

export async function evalPromptsCommand(f: {
  model: string;
  ppd: string;
  data: string;
  sequences: number;
  prefixLength: number;
  generated: number;
  seed: number;
  json?: boolean;
  threads?: number;
}): Promise<void> {
  const loaded = await loadModel(f.model, { threads: f.threads, needsTokenizer: true });
  const adapter = loadAdapter(f.ppd, loaded.config);
  const set = await teacherSequences(loaded, f.data, join(f.ppd, 'cache'), 'eval', { count: f.sequences, prefixLength: f.prefixLength, generated: f.generated, topK: 10, seed: f.seed });
  const shape = promptGraphShape(set, { promptTokens: adapter.promptTokens, virtualTokens: adapter.virtualTokens, head: adapter.config.head });
  const files = openModelDir(f.model);
  const session = await PromptSession.create(loaded.model, files.tensors, set, shape, adapter.config.attention, { threads: f.threads });
  files.tensors.close();
  const acc = await accuracyTable(session, adapter.parameters(), set);
  await session.release();
  await loaded.model.release();
  writeAccuracy(f.ppd, acc, f.data);
  if (f.json) process.stdout.write(JSON.stringify({ cuts: acc.cuts, accuracy: acc.table, top1StandardError: acc.top1StandardError }) + '\n');
  else printTable(acc);
}

export function treeBuildCommand(f: { accuracies: string; budget: number; out?: string; maxRank?: number }): void {
  const acc = readAccuracyTable(f.accuracies);
  const adapterDir = join(f.accuracies, '..');
  const adapter = existsSync(join(adapterDir, ADAPTER_CONFIG)) ? loadAdapterShape(adapterDir) : undefined;
  if (f.budget < 1) throw new InputError('--budget must be at least 1');
  const trees = buildTreeSet(acc, {
    budget: f.budget,
    promptTokens: acc.length,
    virtualTokens: adapter?.virtualTokens ?? 1,
    attention: adapter?.attention ?? 'ensemble',
    maxRank: f.maxRank,
    accuracySource: f.accuracies,
  });
  const out = f.out ?? join(f.accuracies, '..', TREES_FILE);
  saveTreeSet(out, trees);
  trees.trees.forEach((tree, d) =>
    process.stdout.write(`d=${d}: ${tree.candidates.length} candidates, expected accepted length ${trees.expectedAcceptedLength[d]!.toFixed(3)}\n`),
  );
  process.stdout.write(`expected tokens per step ${trees.expectedTokensPerStep.toFixed(3)}; wrote ${out}\n`);
}

export function treeConvertCommand(f: { from: string; name?: string; out?: string; adapter?: string; promptTokens?: number; virtualTokens?: number; attention?: AttentionVariant }): void {
  if (!existsSync(f.from)) throw new FormatError(f.from, 'not found');
  const reference = pickReferenceTrees(readReferenceTreeFile(readTextFile(f.from), f.from), f.from, f.name);
  const source = f.name === undefined ? f.from : `${f.from} (${f.name})`;
  // The adapter's own N, V and attention, unless the flags say otherwise.
  const shape = f.adapter === undefined ? undefined : loadAdapterShape(f.adapter);
  const out = f.out ?? (f.adapter === undefined ? undefined : join(f.adapter, TREES_FILE));
  if (out === undefined) throw new InputError('tree convert needs --out FILE or --adapter DIR (to write DIR/trees.json)');
  const trees = treeSetFromReference(reference, {
    promptTokens: f.promptTokens ?? shape?.promptTokens,
    virtualTokens: f.virtualTokens ?? shape?.virtualTokens,
    attention: f.attention ?? shape?.attention,
    source,
  });
  saveTreeSet(out, trees);
  trees.trees.forEach((tree, d) =>
    process.stdout.write(`d=${d}: ${tree.candidates.length} candidates, expected accepted length ${trees.expectedAcceptedLength[d]!.toFixed(3)}\n`),
  );
  process.stdout.write(`budget ${trees.budget} rows; expected tokens per step ${trees.expectedTokensPerStep.toFixed(3)}; wrote ${out}\n`);
}
