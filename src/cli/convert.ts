/**
 * `ppd convert`: a model folder or .gguf file written as a GGUF file (for llama.cpp and friends:
 * f32, f16, bf16, or llama-quantize's types q8_0 ... q2_k and its mixes q4_k_m, q5_k_m, ...) or
 * as a Hugging Face folder (safetensors f32/f16/bf16). The work is in
 * checkpoint/gguf-export.ts and checkpoint/hf-export.ts; this file checks the flags and reports.
 */
import { statSync } from 'node:fs';
import { InputError } from '../errors.ts';
import { writeLlamaGguf, type GgufOutputType } from '../checkpoint/gguf-export.ts';
import { writeHfModel } from '../checkpoint/hf-export.ts';
import { openModelDir } from '../checkpoint/model-dir.ts';
import { FILE_TYPES } from '../checkpoint/gguf-mixes.ts';
import type { FloatDType } from '../format/tensor-source.ts';

export const CONVERT_TYPES = FILE_TYPES.map((t) => t.toLowerCase()) as Lowercase<(typeof FILE_TYPES)[number]>[];

export interface ConvertFlags {
  model: string;
  to: 'gguf' | 'hf';
  type?: Lowercase<(typeof FILE_TYPES)[number]>;
  out: string;
}

function megabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(bytes < 1e7 ? 2 : 0)} MB`;
}

function checkOut(flags: ConvertFlags): void {
  const existing = statSync(flags.out, { throwIfNoEntry: false });
  if (flags.to === 'gguf') {
    if (!flags.out.toLowerCase().endsWith('.gguf')) throw new InputError(`--out must name a .gguf file, got "${flags.out}"`);
    if (existing?.isDirectory()) throw new InputError(`--out "${flags.out}" is a directory`);
  } else {
    if (existing && !existing.isDirectory()) throw new InputError(`--out "${flags.out}" is a file; --to hf writes a folder`);
    if (flags.type !== undefined && !['f32', 'f16', 'bf16'].includes(flags.type)) {
      throw new InputError(`--to hf writes float safetensors: --type must be f32, f16 or bf16, got ${flags.type}`);
    }
  }
}

export function convertCommand(flags: ConvertFlags): void {
  checkOut(flags);
  const started = performance.now();
  const model = openModelDir(flags.model);
  try {
    const seconds = () => ((performance.now() - started) / 1000).toFixed(1);
    if (flags.to === 'gguf') {
      const type = (flags.type ?? 'f16').toUpperCase() as GgufOutputType;
      const { bytes, types, fallbacks } = writeLlamaGguf(model, flags.out, type);
      const stored = Object.entries(types).map(([t, n]) => `${n} ${t}`).join(', ');
      const note = fallbacks.length > 0 ? ` (${fallbacks.length} fell back: rows not whole blocks of their type)` : '';
      process.stdout.write(`wrote ${flags.out}: ${megabytes(bytes)}, tensors ${stored}${note}, in ${seconds()} s\n`);
    } else {
      const dtype = (flags.type ?? 'f32').toUpperCase() as FloatDType;
      const bytes = writeHfModel(model, flags.out, dtype);
      process.stdout.write(`wrote ${flags.out}: ${megabytes(bytes)} of ${dtype} weights, config and tokenizer, in ${seconds()} s\n`);
    }
  } finally {
    model.tensors.close();
  }
}
