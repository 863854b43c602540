/**
 * Safetensors reading and writing: half-float conversions against their definitions, write/read
 * round trips per dtype, every malformed-header case, sharded checkpoints, and a tensor lying
 * beyond 2 GiB in a sparse file.
 */
import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { FormatError, InputError } from '../src/errors.ts';
import {
  bf16BitsToNumber,
  f16BitsToNumber,
  f16ToF32,
  numberToBf16Bits,
  numberToF16Bits,
} from '../src/format/half.ts';
import { writeSafetensors, type TensorToWrite } from '../src/format/safetensors-write.ts';
import { openSafetensors, openShardedSafetensors } from '../src/format/file-io.ts';
import type { FloatDType } from '../src/format/tensor-source.ts';

const dir = mkdtempSync(join(tmpdir(), 'ppd-safetensors-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let fileCount = 0;
const freshPath = (name = 'x.safetensors') => join(dir, `${fileCount++}-${name}`);

function entry(name: string, dtype: FloatDType, shape: number[], values: number[] | Float32Array): TensorToWrite {
  return { name, dtype, shape, data: () => Float32Array.from(values) };
}

/** A safetensors file from a raw header (object or text) and data bytes, for malformed cases. */
function writeRaw(header: unknown, data = new Uint8Array(0), headerLength?: bigint): string {
  const path = freshPath('raw.safetensors');
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(headerLength ?? BigInt(json.length));
  writeFileSync(path, Buffer.concat([prefix, json, data]));
  return path;
}

function assertFormatError(path: string, open: () => unknown, detail: RegExp): void {
  assert.throws(open, (err: unknown) => {
    assert.ok(err instanceof FormatError, `expected FormatError, got ${err}`);
    assert.ok(err.message.includes(path), `message names the file: ${err.message}`);
    assert.match(err.message, detail);
    return true;
  });
}

describe('half-float conversion', () => {
  test('every F16 pattern widens as defined and narrows back to itself', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const wide = f16ToF32(all);
    for (let h = 0; h < 65536; h++) {
      const v = f16BitsToNumber(h);
      if (Number.isNaN(v)) {
        assert.ok(Number.isNaN(wide[h]) && Number.isNaN(f16BitsToNumber(numberToF16Bits(v))));
        continue;
      }
      assert.ok(Object.is(wide[h], v), `table at ${h}`);
      assert.equal(numberToF16Bits(v), h, `round trip of ${h}`);
    }
  });

  test('F16 special values: subnormals, max, inf', () => {
    assert.equal(f16BitsToNumber(0x0001), 2 ** -24);
    assert.equal(f16BitsToNumber(0x03ff), 1023 * 2 ** -24);
    assert.equal(f16BitsToNumber(0x7bff), 65504);
    assert.equal(f16BitsToNumber(0x7c00), Infinity);
    assert.equal(f16BitsToNumber(0xfc00), -Infinity);
    assert.ok(Object.is(f16BitsToNumber(0x8000), -0));
    assert.equal(numberToF16Bits(65520), 0x7c00); // halfway to 65536: ties to even, which is inf
    assert.equal(numberToF16Bits(65519), 0x7bff);
    assert.equal(numberToF16Bits(1e9), 0x7c00);
    assert.equal(numberToF16Bits(2 ** -25), 0x0000); // halfway to the smallest subnormal: even is 0
    assert.equal(numberToF16Bits(1.5 * 2 ** -25), 0x0001);
    assert.equal(numberToF16Bits(-(2 ** -26)), 0x8000);
    assert.equal(numberToF16Bits(1e-30), 0x0000); // an F32 far below F16's range
  });

  test('F16 narrowing rounds halfway cases to even, and just-above cases up', () => {
    for (let h = 0; h < 0x7bff; h++) {
      const mid = (f16BitsToNumber(h) + f16BitsToNumber(h + 1)) / 2; // exact in F32
      assert.equal(numberToF16Bits(mid), h % 2 === 0 ? h : h + 1, `midpoint above ${h}`);
      assert.equal(numberToF16Bits(mid * (1 + 2 ** -20)), h + 1, `just above midpoint of ${h}`);
      assert.equal(numberToF16Bits(-mid), 0x8000 | (h % 2 === 0 ? h : h + 1), `midpoint below -${h}`);
    }
  });

  test('BF16 round trips every pattern and rounds halfway cases to even', () => {
    for (let b = 0; b < 65536; b++) {
      const v = bf16BitsToNumber(b);
      if (!Number.isNaN(v)) assert.equal(numberToBf16Bits(v), b);
    }
    assert.equal(numberToBf16Bits(1), 0x3f80);
    assert.equal(numberToBf16Bits(1 + 2 ** -8), 0x3f80); // halfway, 0x3f80 is even
    assert.equal(numberToBf16Bits(1 + 3 * 2 ** -8), 0x3f82); // halfway, 0x3f82 is even
    assert.equal(numberToBf16Bits(3.4e38), 0x7f80); // beyond BF16's max: inf
    assert.ok(Number.isNaN(bf16BitsToNumber(numberToBf16Bits(NaN))));
  });
});

describe('safetensors round trip', () => {
  const random = Float32Array.from({ length: 600 }, (_, i) => Math.sin(i * 12.9898) * 3);
  const exactInF16 = [0, -0, 1, -2.5, 65504, -65504, 2 ** -24, 2 ** -14, 1023 * 2 ** -24, Infinity, -Infinity];

  test('F32 is exact; list() reports names, dtypes and shapes in order', () => {
    const path = freshPath();
    writeSafetensors(path, [
      entry('a', 'F32', [20, 30], random),
      entry('scalar', 'F32', [], [7.25]),
      entry('empty', 'F32', [0, 4], []),
    ], { metadata: { format: 'pt' } });
    assert.ok(!existsSync(`${path}.tmp`));
    const source = openSafetensors(path);
    assert.deepEqual(source.list(), [
      { name: 'a', dtype: 'F32', shape: [20, 30] },
      { name: 'scalar', dtype: 'F32', shape: [] },
      { name: 'empty', dtype: 'F32', shape: [0, 4] },
    ]);
    assert.deepEqual(source.readF32('a'), random);
    assert.deepEqual(source.readF32('scalar'), Float32Array.of(7.25));
    assert.equal(source.readF32('empty').length, 0);
    assertFormatError(path, () => source.readF32('nope'), /no tensor named "nope"/);
    source.close();
  });

  for (const [dtype, relativeError] of [['F16', 2 ** -11], ['BF16', 2 ** -8]] as const) {
    test(`${dtype} is within its precision and exact for representable values`, () => {
      const exact = dtype === 'F16' ? exactInF16 : [0, -0, 1, -2.5, 2 ** -130, 3.3895313892515355e38, Infinity];
      const path = freshPath();
      writeSafetensors(path, [entry('r', dtype, [600], random), entry('x', dtype, [exact.length], exact)]);
      const source = openSafetensors(path);
      const back = source.readF32('r');
      for (let i = 0; i < random.length; i++) {
        assert.ok(Math.abs(back[i] - random[i]) <= Math.abs(random[i]) * relativeError, `${random[i]} -> ${back[i]}`);
      }
      const exactBack = source.readF32('x');
      exact.forEach((v, i) => assert.ok(Object.is(exactBack[i], v), `${v} -> ${exactBack[i]}`));
      source.close();
    });
  }

  test('a data region that starts unaligned still reads correctly', () => {
    // An odd header length puts the data region at an odd byte, which no F32 view can start on.
    const header = JSON.stringify({ t: { dtype: 'F32', shape: [3], data_offsets: [0, 12] } });
    const odd = header.length % 2 === 1 ? header : `${header} `;
    const path = writeRaw(odd, new Uint8Array(Float32Array.of(1.5, -2, 3).buffer));
    assert.deepEqual(openSafetensors(path).readF32('t'), Float32Array.of(1.5, -2, 3));
  });

  test('a failed write leaves neither the file nor its .tmp', () => {
    const path = freshPath();
    assert.throws(() => writeSafetensors(path, [entry('t', 'F32', [2, 2], [1, 2, 3])]), InputError);
    assert.ok(!existsSync(path) && !existsSync(`${path}.tmp`));
    assert.throws(() => writeSafetensors(path, [entry('t', 'F32', [1], [1]), entry('t', 'F16', [1], [1])]), InputError);
  });
});

describe('malformed safetensors headers', () => {
  const f32 = (offsets: number[], shape = [2]) => ({ dtype: 'F32', shape, data_offsets: offsets });
  const eightBytes = new Uint8Array(8);
  const cases: [string, () => string, RegExp][] = [
    ['file shorter than the length prefix', () => { const p = freshPath(); writeFileSync(p, 'abc'); return p; }, /too short/],
    ['absurd header length', () => writeRaw({}, eightBytes, 1n << 60n), /header length/],
    ['header length beyond the file', () => writeRaw({}, eightBytes, 1000n), /header length 1000/],
    ['malformed JSON', () => writeRaw('{"t": {', eightBytes), /malformed JSON/],
    ['header not an object', () => writeRaw([1, 2]), /JSON object/],
    ['entry missing dtype', () => writeRaw({ t: { shape: [2], data_offsets: [0, 8] } }, eightBytes), /"t".*missing "dtype"/],
    ['entry missing shape', () => writeRaw({ t: { dtype: 'F32', data_offsets: [0, 8] } }, eightBytes), /"t".*missing "shape"/],
    ['entry missing data_offsets', () => writeRaw({ t: { dtype: 'F32', shape: [2] } }, eightBytes), /"t".*missing "data_offsets"/],
    ['unsupported dtype', () => writeRaw({ t: { dtype: 'I8', shape: [8], data_offsets: [0, 8] } }, eightBytes), /"t".*"I8" is not supported/],
    ['byte length not shape * itemsize', () => writeRaw({ t: f32([0, 8], [3]) }, eightBytes), /"t".*holds 8 bytes.*needs 12/],
    ['offsets beyond the data region', () => writeRaw({ t: f32([8, 16]) }, eightBytes), /"t".*beyond the data region/],
    ['reversed offsets', () => writeRaw({ t: f32([8, 0]) }, eightBytes), /"t".*begin <= end/],
    ['negative shape', () => writeRaw({ t: f32([0, 8], [-2]) }, eightBytes), /"t".*"shape"/],
    ['overlapping tensors', () => writeRaw({ a: f32([0, 8]), b: f32([4, 12]) }, new Uint8Array(12)), /"a" and "b" overlap/],
  ];
  for (const [what, make, detail] of cases) {
    test(what, () => {
      const path = make();
      assertFormatError(path, () => openSafetensors(path), detail);
    });
  }

  test('a missing file is a FormatError', () => {
    const path = join(dir, 'absent.safetensors');
    assertFormatError(path, () => openSafetensors(path), /not found/);
  });

  test('__metadata__ is allowed and not listed as a tensor', () => {
    const path = writeRaw({ __metadata__: { format: 'pt' }, t: f32([0, 8]) }, eightBytes);
    assert.deepEqual(openSafetensors(path).list(), [{ name: 't', dtype: 'F32', shape: [2] }]);
  });
});

describe('sharded safetensors', () => {
  function writeSharded(weightMap: Record<string, string>, shards: Record<string, TensorToWrite[]>): string {
    const shardDir = mkdtempSync(join(dir, 'sharded-'));
    for (const [file, entries] of Object.entries(shards)) writeSafetensors(join(shardDir, file), entries);
    const index = join(shardDir, 'model.safetensors.index.json');
    writeFileSync(index, JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
    return index;
  }
  const shardA = [entry('a', 'F32', [2], [1, 2]), entry('b', 'F16', [1, 2], [3, 4])];
  const shardB = [entry('c', 'BF16', [3], [5, 6, 7])];

  test('loads tensors from every shard', () => {
    const index = writeSharded({ a: 'one.safetensors', b: 'one.safetensors', c: 'two.safetensors' }, {
      'one.safetensors': shardA,
      'two.safetensors': shardB,
    });
    const source = openShardedSafetensors(index);
    assert.equal(source.origin, index);
    assert.deepEqual(source.list().map((t) => [t.name, t.dtype, t.shape]), [['a', 'F32', [2]], ['b', 'F16', [1, 2]], ['c', 'BF16', [3]]]);
    assert.deepEqual(source.readF32('b'), Float32Array.of(3, 4));
    assert.deepEqual(source.readF32('c'), Float32Array.of(5, 6, 7));
    assertFormatError(index, () => source.readF32('d'), /no tensor named "d"/);
    source.close();
  });

  test('a shard named in weight_map but missing on disk', () => {
    const index = writeSharded({ a: 'one.safetensors', c: 'gone.safetensors' }, { 'one.safetensors': [shardA[0]] });
    assertFormatError(index, () => openShardedSafetensors(index), /"gone.safetensors".*does not exist/);
  });

  test('a tensor listed in weight_map but absent from its shard', () => {
    const index = writeSharded({ a: 'one.safetensors', b: 'one.safetensors', z: 'one.safetensors' }, { 'one.safetensors': shardA });
    assertFormatError(index, () => openShardedSafetensors(index), /"z" is listed in .* but absent/);
  });

  test('a tensor in a shard that weight_map does not assign to it', () => {
    const index = writeSharded({ a: 'one.safetensors' }, { 'one.safetensors': shardA });
    assertFormatError(index, () => openShardedSafetensors(index), /"b" is not assigned to this shard/);
  });

  test('a weight_map that is not an object', () => {
    const index = writeSharded({}, {});
    writeFileSync(index, JSON.stringify({ weight_map: ['a'] }));
    assertFormatError(index, () => openShardedSafetensors(index), /"weight_map" must be an object/);
  });
});

test('a tensor stored beyond 2 GiB in a sparse file reads correctly', () => {
  // A 2 GiB + 16 B filler tensor (never written, so a hole on disk) puts "far" past 2^31.
  const fillerBytes = 2 ** 31 + 16;
  const far = Float32Array.of(1, -2, 3.5, 1e-3, -1e30, 42);
  const header = Buffer.from(JSON.stringify({
    filler: { dtype: 'F32', shape: [fillerBytes / 4], data_offsets: [0, fillerBytes] },
    far: { dtype: 'F32', shape: [2, 3], data_offsets: [fillerBytes, fillerBytes + far.byteLength] },
  }));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(header.length));
  const path = freshPath('sparse.safetensors');
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, Buffer.concat([prefix, header]), 0, 8 + header.length, 0);
    writeSync(fd, new Uint8Array(far.buffer), 0, far.byteLength, 8 + header.length + fillerBytes);
  } finally {
    closeSync(fd);
  }
  const source = openSafetensors(path);
  assert.deepEqual(source.readF32('far'), far);
  source.close();
  rmSync(path);
});
