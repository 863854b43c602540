/**
 * Prompt-token adapters (adapter.ts) as folders on Node: read by path, written with atomic files.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeJsonAtomic } from '../format/atomic.ts';
import { nodeFolder } from '../format/file-io.ts';
import { writeSafetensors } from '../format/safetensors-write.ts';
import type { LlamaConfig } from '../model/config.ts';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS, EMBEDDINGS, PromptAdapter, readAdapterConfig, type AdapterConfig } from './adapter.ts';

/** The adapter in folder `dir`, checked against `base`. */
export function loadAdapter(dir: string, base: LlamaConfig): PromptAdapter {
  return PromptAdapter.read(nodeFolder(dir), base);
}

/** `dir`'s adapter_config.json, checked (no weights, no base-model check). */
export function loadAdapterConfig(dir: string): AdapterConfig {
  return readAdapterConfig(nodeFolder(dir));
}

export function saveAdapter(adapter: PromptAdapter, dir: string): void {
  mkdirSync(dir, { recursive: true });
  const { promptTokens: N, virtualTokens: V, baseModel } = adapter.config;
  writeSafetensors(join(dir, ADAPTER_WEIGHTS), [
    { name: EMBEDDINGS, dtype: 'F32', shape: [N * V, baseModel.hiddenSize], data: () => adapter.embeddings },
  ]);
  writeJsonAtomic(join(dir, ADAPTER_CONFIG), adapter.config);
}
