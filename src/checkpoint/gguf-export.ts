/**
 * Writing an opened model (a Hugging Face folder or another GGUF file) as a GGUF file that
 * llama.cpp loads, in the architecture its converter would choose (llama, qwen2, qwen3): its
 * metadata (gguf-config.ts), its tokenizer (tokenizer/gguf/to-gguf.ts), Llama 3's rope_freqs,
 * and its tensors under GGUF names with q_proj/k_proj rows in llama.cpp's order (gguf-tensors.ts).
 *
 * Storage follows convert_hf_to_gguf.py for the float types (1-D tensors and norms stay F32,
 * matrices take the requested type) and llama-quantize for the quantized ones, mixes included
 * (q4_k_m and the like: gguf-mixes.ts says which tensor gets which type, and where a matrix's rows
 * are not whole blocks of its type, what it falls back to).
 */
import { basename, extname } from 'node:path';
import { ModelError } from '../errors.ts';
import type { LlamaConfig } from '../model/config.ts';
import { ropeDivisors } from '../model/rope.ts';
import { expectedTensors } from '../model/weights.ts';
import { ggufTokenizerEntries } from '../tokenizer/gguf/to-gguf.ts';
import { readTokenizerJson, type ModelDir } from './model-folder.ts';
import { ggufArchitecture, llamaGgufEntries, tokenIdEntries } from './gguf-config.ts';
import { gatherRows, ggufRowOfHfRow, ggufTensorName, invert, permutedHeads, ROPE_FREQS } from './gguf-tensors.ts';
import { tensorStorage, type FileType } from './gguf-mixes.ts';
import { quantize } from '../format/gguf/quant.ts';
import type { GgufEntry } from '../format/gguf/types.ts';
import { writeGguf, type GgufTensorToWrite } from '../format/gguf/write.ts';

/** The file types `ppd convert --type` writes: llama-quantize's names (gguf-mixes.ts). */
export type GgufOutputType = FileType;

export interface GgufExportSummary {
  bytes: number;
  /** Tensors written per stored type, e.g. { Q8_0: 14, F32: 5 }. */
  types: Record<string, number>;
  /** Matrices stored another way because their rows are not whole blocks of their type. */
  fallbacks: string[];
}

/** gguf-py's TokenType.UNUSED. */
const UNUSED_TOKEN = 5;

/**
 * llama.cpp wants one token per embedding row. When the embedding table is larger than the
 * vocabulary (padded for speed), convert_hf_to_gguf.py appends "[PAD<id>]" tokens of type
 * UNUSED with score -1000; so does this.
 */
function padVocabulary(entries: GgufEntry[], vocabSize: number, origin: string): GgufEntry[] {
  const tokens = entries.find((e) => e.key === 'tokenizer.ggml.tokens');
  if (!tokens || tokens.type !== 'array') return entries;
  const count = tokens.value.length;
  if (count > vocabSize) throw new ModelError(`${origin}: the tokenizer has ${count} tokens but the model's vocab_size is ${vocabSize}`);
  const padded = (e: GgufEntry & { type: 'array' }, item: (id: number) => number | string): GgufEntry => ({
    ...e,
    value: [...e.value, ...Array.from({ length: vocabSize - count }, (_, i) => item(count + i))],
  });
  return entries.map((e) => {
    if (e.type !== 'array' || e.value.length !== count) return e;
    if (e.key === 'tokenizer.ggml.tokens') return padded(e, (id) => `[PAD${id}]`);
    if (e.key === 'tokenizer.ggml.scores') return padded(e, () => -1000);
    if (e.key === 'tokenizer.ggml.token_type') return padded(e, () => UNUSED_TOKEN);
    return e;
  });
}

/** Metadata: the model's, the tokenizer's, and bos/eos ids from the config where the tokenizer gave none. */
function metadataEntries(model: ModelDir, requested: GgufOutputType, name: string): GgufEntry[] {
  const tokenizerJson = readTokenizerJson(model);
  const tokenizer = tokenizerJson
    ? padVocabulary(ggufTokenizerEntries(tokenizerJson, model.tokenizerConfig, model.chatTemplate, model.dir), model.config.vocabSize, model.dir)
    : [];
  const given = new Set(tokenizer.map((e) => e.key));
  const eos = model.config.eosTokenIds.length > 0 ? model.config.eosTokenIds : model.eosTokenIds;
  const ids = tokenIdEntries({ ...model.config, eosTokenIds: eos }).filter((e) => !given.has(e.key));
  return [...llamaGgufEntries(model.config, { name, fileType: requested }), ...tokenizer, ...ids];
}

/**
 * Llama 3's RoPE scaling as llama.cpp stores it: rope_freqs.weight, the divisor of each
 * frequency [D/2] in F32 (convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors).
 */
function ropeFreqsTensor(config: LlamaConfig): GgufTensorToWrite | undefined {
  const { type } = config.ropeScaling;
  if (type !== 'llama3' && type !== 'factors') return undefined;
  const divisors = Float32Array.from(ropeDivisors(config.headDim, config.ropeTheta, config.ropeScaling));
  return { name: ROPE_FREQS, type: 'F32', dims: [divisors.length], data: () => quantize('F32', divisors) };
}

/** What llama.cpp's loader for the architecture would not accept, as a ModelError. */
function refuseUnloadable(config: LlamaConfig, origin: string): void {
  // llama.cpp's qwen3 loads optional q/k/v biases but no o_proj bias: an extra tensor fails its load.
  if (ggufArchitecture(config) === 'qwen3' && config.bias.output) {
    throw new ModelError(`${origin}: a Qwen3 model with attention_bias has an o_proj bias, which llama.cpp's qwen3 architecture does not load`);
  }
}

/** Writes `model` to `out` as a GGUF v3 file with matrices stored as `requested`. */
export function writeLlamaGguf(model: ModelDir, out: string, requested: GgufOutputType): GgufExportSummary {
  const { config, tensors: source } = model;
  refuseUnloadable(config, model.dir);
  const types: Record<string, number> = {};
  const fallbacks: string[] = [];
  const tensors: GgufTensorToWrite[] = [];
  const ropeFreqs = ropeFreqsTensor(config);
  if (ropeFreqs) {
    tensors.push(ropeFreqs);
    types.F32 = 1;
  }
  for (const [name, shape] of expectedTensors(config)) {
    const { type, fellBack } = tensorStorage(name, shape, requested, config);
    types[type] = (types[type] ?? 0) + 1;
    if (fellBack) fallbacks.push(name);
    const heads = permutedHeads(name, config);
    tensors.push({
      name: ggufTensorName(name)!,
      type,
      dims: [...shape].reverse(),
      data: () => {
        const values = source.readF32(name);
        const ordered = heads === undefined ? values : gatherRows(values, shape[1] ?? 1, invert(ggufRowOfHfRow(shape[0]!, heads)));
        return quantize(type, ordered);
      },
    });
  }
  const name = basename(model.dir, extname(model.dir));
  const bytes = writeGguf(out, metadataEntries(model, requested, name), tensors);
  return { bytes, types, fallbacks };
}
