/**
 * Writes models/<name>/README.md, the model card, from the files the pipeline produced: the
 * config, training.json (ppd pretrain), perplexity-test.json (ppd perplexity) and the corpus
 * manifest. Every figure on the card comes from one of those files.
 *
 *   npx tsx scripts/model-card.ts models/ppd-base [ROLE] [--corpus data/code-corpus --tokenizer models/tokenizer-code-8k]
 */
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { writeFileAtomic } from '../src/format/atomic.ts';
import { readJsonObject } from '../src/format/text-file.ts';
import { parameterCount, parseLlamaConfig } from '../src/model/config.ts';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { corpus: { type: 'string', default: 'data/code-corpus' }, tokenizer: { type: 'string', default: 'models/tokenizer-code-8k' } },
});
const dir = positionals[0] ?? 'models/ppd-base';
/** What the model is for, one sentence (the second argument). */
const role = positionals[1] ?? 'It is the base model of the bundled PPD adapter in `ppd/`.';
const corpus = values.corpus!;
const config = parseLlamaConfig(readJsonObject(join(dir, 'config.json')));
const training = readJsonObject(join(dir, 'training.json')) as Record<string, any>;
const ppl = readJsonObject(join(dir, 'perplexity-test.json')) as Record<string, any>;
const sliceFile = join(dir, 'perplexity-test-slice.json');
const slice = existsSync(sliceFile) ? (readJsonObject(sliceFile) as Record<string, any>) : undefined;
const manifest = readJsonObject(join(corpus, 'manifest.json')) as Record<string, any>;
/** The data row: a prose corpus lists its public-domain sources, the code corpus its npm packages and their licences. */
function dataDescription(): string {
  if (Array.isArray(manifest.sources)) return `${manifest.sources.map((x: any) => x.title).join('; ')} — public domain`;
  const packages = (manifest.packages as { split: string; licence: string }[]).filter((p) => p.split === 'train');
  const licences = new Map<string, number>();
  for (const p of packages) licences.set(p.licence, (licences.get(p.licence) ?? 0) + 1);
  const byCount = [...licences].sort((a, b) => b[1] - a[1]).map(([licence, n]) => `${licence} ${n}`);
  return `JavaScript and TypeScript source of ${packages.length} npm packages (licences: ${byCount.join(', ')})`;
}
const s = training.settings;
const evals = (training.history as { step: number; validLoss?: number }[]).filter((h) => h.validLoss !== undefined);
const last = evals.at(-1);

const name = basename(dir);
/** Resumes that changed the planned length (ppd pretrain --resume --steps). */
const changes = (training.reschedules ?? []) as { atStep: number; fromSteps: number; toSteps: number }[];
const reschedules =
  changes.length === 0
    ? ''
    : ` (the plan changed at ${changes.map((r) => `step ${r.atStep} from ${r.fromSteps} to ${r.toSteps}`).join(', ')}; the cosine schedule follows each new plan from there, optimizer state kept)`;
const card = `# ${name}

A small LLaMA-architecture language model trained from scratch by ppd on this project's machine,
so that ppd has a real model to decode with (no model can be downloaded here). ${role}

| | |
| --- | --- |
| architecture | LLaMA (\`model_type\` llama), ${config.numLayers} layers, hidden ${config.hiddenSize}, MLP ${config.intermediateSize}, ${config.numHeads} query heads / ${config.numKvHeads} key-value heads (grouped-query attention), head dim ${config.headDim}, RoPE θ ${config.ropeTheta}, tied embeddings |
| parameters | ${(parameterCount(config) / 1e6).toFixed(2)}M (stored as F16 in \`model.safetensors\`; ppd computes in F32) |
| vocabulary | ${config.vocabSize} tokens: LLaMA-style BPE with byte fallback, trained by \`scripts/train-tokenizer.ts\` on the training split |
| context | ${config.maxPositionEmbeddings} tokens (trained on windows of ${s.seqLen}) |
| data | ${dataDescription()}; see \`${corpus}/README.md\` |
| training tokens | ${training.trainTokens} in the training split; ${training.tokensSeen} seen (${(training.tokensSeen / training.trainTokens).toFixed(2)} epochs) |
| steps | ${training.stepsDone} of ${s.steps} planned${training.finished ? '' : ' (stopped early, by its time budget or an interruption; `--resume` continues the schedule)'}${reschedules}, ${s.seqLen * s.batchWindows * s.accumulation} tokens per step |
| optimiser | AdamW (β 0.9/0.95, weight decay ${s.weightDecay}), peak lr ${s.schedule.peakLr}, ${s.schedule.warmupSteps} warm-up steps, cosine to ${s.schedule.minLrRatio}× peak, clipping at ${s.clipNorm} |
| wall time | ${(training.wallSeconds / 60).toFixed(0)} min on 2 CPU cores, shared with other jobs for part of the run (ONNX Runtime, ppd's own autodiff) |
| held-out loss | ${last ? `${last.validLoss!.toFixed(3)} nats/token on the validation split at step ${last.step}` : 'n/a'} |
| test perplexity | **${ppl.perplexity.toFixed(2)}** (${ppl.nll.toFixed(4)} nats/token) over ${ppl.tokens} tokens of \`${corpus}/test.txt\`, window ${ppl.window}, stride ${ppl.stride} |
${slice ? `| test slice (tested) | ${slice.perplexity.toFixed(3)} over its first ${slice.tokens} tokens (\`--max-tokens ${slice.tokens + 1}\`); \`test/bundled-model.test.ts\` checks the model still scores no worse |` : ''}

## Reproduce

\`\`\`sh
npm run pretrain:${name === 'ppd-base' ? 'default' : 'draft'}   # pretraining (resumable) and test perplexity
npx tsx scripts/model-card.ts ${dir}
\`\`\`

Exact pretraining command: \`ppd pretrain --train ${corpus}/train.txt --valid ${corpus}/valid.txt
--config configs/${name}.json --tokenizer ${values.tokenizer} --run runs/${name} --out models/${name}
--steps ${s.steps} --seq-len ${s.seqLen} --batch ${s.batchWindows} --accum ${s.accumulation} --lr ${s.schedule.peakLr}
--warmup ${s.schedule.warmupSteps} --eval-every ${s.evalEvery} --eval-windows ${s.evalWindows} --seed ${s.seed} --dtype f16\`
(interrupted runs continue with \`--resume\`).

## Held-out loss during training

| step | validation loss |
| --- | --- |
${evals.map((h) => `| ${h.step} | ${h.validLoss!.toFixed(3)} |`).join('\n')}

## Limits

A few million parameters trained for ${(training.wallSeconds / 60).toFixed(0)} minutes on two CPU cores: it writes text in the
style of its corpus with local fluency and no knowledge worth trusting (code from it will not run
as intended). It exists to make decoding speed measurable on a real model.
`;
writeFileAtomic(join(dir, 'README.md'), card);
process.stdout.write(`wrote ${join(dir, 'README.md')}\n`);
