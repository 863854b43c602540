/**
 * Prompt-token adapters (adapter.ts) as folders on Node: read by path (either format), written
 * with atomic files in ppd's format or the PPD reference implementation's (PEFT).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeJsonAtomic } from '../format/atomic.ts';
import { nodeFolder } from '../format/file-io.ts';
import { writeSafetensors } from '../format/safetensors-write.ts';
import type { LlamaConfig } from '../model/config.ts';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, adapterPromptHead, EMBEDDINGS, PEFT_WEIGHTS, peftAdapterConfig, PromptAdapter, readAdapterConfig, readAdapterShape, type AdapterConfig } from './adapter.ts';
import type { AttentionVariant } from './prompt-mask.ts';
import { InputError } from '../errors.ts';
import { PROMPT_HEAD_BIAS, PROMPT_HEAD_PARENT_WEIGHT, PROMPT_HEAD_WEIGHT } from '../model/prompt-head.ts';

/** The adapter in folder `dir`, checked against `base`. */
export function loadAdapter(dir: string, base: LlamaConfig): PromptAdapter {
  return PromptAdapter.read(nodeFolder(dir), base);
}

/** N when the adapter in `dir` has a prompt head: open the model with `promptHead: N` to decode with it. */
export function promptHeadOf(dir: string): number | undefined {
  return adapterPromptHead(nodeFolder(dir));
}

/** `dir`'s adapter_config.json, checked (no weights, no base-model check). */
export function loadAdapterConfig(dir: string): AdapterConfig {
  return readAdapterConfig(nodeFolder(dir));
}

export function saveAdapter(adapter: PromptAdapter, dir: string): void {
  mkdirSync(dir, { recursive: true });
  const { promptTokens: N, virtualTokens: Vt, baseModel } = adapter.config;
  const C = baseModel.hiddenSize;
  const head = adapter.head;
  const parentWeight = head?.parentWeight;
  writeSafetensors(join(dir, ADAPTER_WEIGHTS), [
    { name: EMBEDDINGS, dtype: 'F32', shape: [N * Vt, C], data: () => adapter.embeddings },
    ...(head
      ? [
          { name: PROMPT_HEAD_WEIGHT, dtype: 'F32' as const, shape: [N, C, C], data: () => head.weight },
          { name: PROMPT_HEAD_BIAS, dtype: 'F32' as const, shape: [N, C], data: () => head.bias },
        ]
      : []),
    ...(parentWeight ? [{ name: PROMPT_HEAD_PARENT_WEIGHT, dtype: 'F32' as const, shape: [N, C, C], data: () => parentWeight }] : []),
  ]);
  writeJsonAtomic(join(dir, ADAPTER_CONFIG), adapter.config);
}

/** N, V and attention of the adapter folder `dir`, ppd's or the reference's. */
export function loadAdapterShape(dir: string): { promptTokens: number; virtualTokens: number; attention: AttentionVariant } {
  return readAdapterShape(nodeFolder(dir));
}

/** The reference implementation's format: adapter_config.json naming `baseModelName`, adapter_model.safetensors. */
export function savePeftAdapter(adapter: PromptAdapter, dir: string, base: LlamaConfig, baseModelName: string): void {
  if (adapter.head) throw new InputError(`this adapter has a prompt head, which the reference implementation's PEFT prompt-tuning format cannot hold`);
  mkdirSync(dir, { recursive: true });
  const { promptTokens: N, virtualTokens: V, baseModel } = adapter.config;
  writeSafetensors(join(dir, PEFT_WEIGHTS), [{ name: EMBEDDINGS, dtype: 'F32', shape: [N * V, baseModel.hiddenSize], data: () => adapter.embeddings }], { metadata: { format: 'pt' } });
  writeJsonAtomic(join(dir, ADAPTER_CONFIG), peftAdapterConfig(adapter, base, baseModelName));
}
