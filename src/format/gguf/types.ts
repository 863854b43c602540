/**
 * The GGUF container's value types, shared by its reader and writer and by the modules that map
 * LLaMA models and tokenizers to and from GGUF metadata.
 *
 * Reading gives plain JS values (GgufValue); writing needs each value's GGUF type spelled out
 * (GgufEntry), because a number alone does not say u32 or f32, and llama.cpp checks the type of
 * the keys it reads.
 */

export type GgufScalarType = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'u64' | 'i64' | 'f32' | 'f64' | 'bool' | 'string';

/** A metadata value as read. 64-bit integers arrive as numbers (larger than 2^53 is a FormatError). */
export type GgufValue = number | boolean | string | GgufValue[];

export type GgufMetadata = ReadonlyMap<string, GgufValue>;

/** A metadata entry to write, with its GGUF type. */
export type GgufEntry =
  | { key: string; type: GgufScalarType; value: number | boolean | string }
  | { key: string; type: 'array'; itemType: GgufScalarType; value: readonly (number | boolean | string)[] };
