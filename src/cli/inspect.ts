/**
 * `ppd info` (what a model folder or .gguf file holds) and `ppd logits` (raw logits for given ids: a parity
 * tool that needs no tokenizer).
 */
import { openModelDir } from '../checkpoint/model-dir.ts';
import { parameterCount, type LlamaConfig } from '../model/config.ts';
import { describeRopeScaling } from '../model/rope.ts';
import { causalMask } from '../model/llama-model.ts';
import { newCache } from '../decode/autoregressive.ts';
import { loadModel } from '../checkpoint/load.ts';
import { InputError } from '../errors.ts';
import type { QuantizeMode } from '../format/quantize.ts';

export function infoCommand(flags: { model: string; json?: boolean }): void {
  const files = openModelDir(flags.model);
  const dtypes = [...new Set(files.tensors.list().map((t) => t.dtype))];
  files.tensors.close();
  const info = {
    dir: files.dir,
    config: files.config,
    parameters: parameterCount(files.config),
    storedDtypes: dtypes,
    f32WeightBytes: parameterCount(files.config) * 4,
    eosTokenIds: files.eosTokenIds,
    tokenizer: files.tokenizerFile ?? (files.tokenizerJson ? `${files.dir} (GGUF metadata)` : null),
    chatTemplate: files.chatTemplate !== undefined || typeof files.tokenizerConfig?.chat_template === 'string',
  };
  if (flags.json) {
    process.stdout.write(JSON.stringify(info, null, 2) + '\n');
    return;
  }
  const c = files.config;
  const lines = [
    `model      ${info.dir}`,
    `type       ${c.modelType}, ${(info.parameters / 1e6).toFixed(2)}M parameters stored as ${dtypes.join('/')}`,
    `shape      ${c.numLayers} layers, hidden ${c.hiddenSize}, MLP ${c.intermediateSize}, ${c.numHeads} heads (${c.numKvHeads} key/value), head dim ${c.headDim}`,
    `vocab      ${c.vocabSize}${c.tieWordEmbeddings ? ', tied embeddings' : ''}`,
    `context    ${c.maxPositionEmbeddings}${c.slidingWindow !== undefined ? ` (sliding window ${c.slidingWindow})` : ''}, rope theta ${c.ropeTheta}${describeRopeScaling(c.ropeScaling) ? `, ${describeRopeScaling(c.ropeScaling)}` : ''}`,
    ...(features(c) ? [`features   ${features(c)}`] : []),
    `eos ids    ${info.eosTokenIds.join(', ') || 'none'}`,
    `tokenizer  ${info.tokenizer ?? 'none'}${info.chatTemplate ? ' (with chat template)' : ''}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
}

/** What a config adds to plain LLaMA attention: biases, q/k norms. */
function features(c: LlamaConfig): string {
  const biased = [c.bias.qkv && 'q/k/v', c.bias.output && 'o', c.bias.mlp && 'MLP'].filter(Boolean);
  return [biased.length > 0 && `${biased.join(', ')} biases`, c.qkNorm && 'q/k RMSNorm per head'].filter(Boolean).join('; ');
}

export async function logitsCommand(flags: { model: string; ids: number[]; json?: boolean; threads?: number; quantize?: QuantizeMode }): Promise<void> {
  if (flags.ids.length === 0) throw new InputError('--ids needs at least one token id');
  const loaded = await loadModel(flags.model, { threads: flags.threads, quantize: flags.quantize });
  const { model } = loaded;
  const T = flags.ids.length;
  const out = await model.forward({
    embeds: model.embed(flags.ids),
    positions: flags.ids.map((_, i) => i),
    mask: causalMask(T, 0),
    cache: newCache(model),
  });
  const V = model.config.vocabSize;
  const rows = Array.from({ length: T }, (_, t) => Array.from(out.logits.subarray(t * V, (t + 1) * V)));
  if (flags.json) {
    process.stdout.write(JSON.stringify({ logits: rows }) + '\n');
  } else {
    rows.forEach((row, t) => {
      const top = row
        .map((v, id) => [id, v] as const)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 5);
      process.stdout.write(`position ${t} (id ${flags.ids[t]}): top ${top.map(([id, v]) => `${id}:${v.toFixed(3)}`).join(' ')}\n`);
    });
  }
  await model.release();
}
