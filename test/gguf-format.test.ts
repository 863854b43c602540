/**
 * The GGUF container: writer/reader round trips of every metadata type and of tensor data at two
 * alignments; nested arrays (which only the reader handles); a tensor past 4 GiB in a sparse
 * file; every malformed-file case, and a
 * truncation at every byte, ending in a FormatError that names the file (never a crash); the
 * writer's refusals, and that a failed write leaves nothing behind.
 */
import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { FormatError, InputError } from '../src/errors.ts';
import { openGguf } from '../src/format/gguf/open.ts';
import type { GgufEntry } from '../src/format/gguf/types.ts';
import { writeGguf, type GgufTensorToWrite } from '../src/format/gguf/write.ts';

const dir = mkdtempSync(join(tmpdir(), 'ppd-gguf-format-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let fileCount = 0;
const freshPath = () => join(dir, `${fileCount++}.gguf`);

const ENTRIES: GgufEntry[] = [
  { key: 'general.architecture', type: 'string', value: 'llama' },
  { key: 't.u8', type: 'u8', value: 255 },
  { key: 't.i8', type: 'i8', value: -128 },
  { key: 't.u16', type: 'u16', value: 65535 },
  { key: 't.i16', type: 'i16', value: -32768 },
  { key: 't.u32', type: 'u32', value: 4294967295 },
  { key: 't.i32', type: 'i32', value: -2147483648 },
  { key: 't.u64', type: 'u64', value: Number.MAX_SAFE_INTEGER },
  { key: 't.i64', type: 'i64', value: Number.MIN_SAFE_INTEGER },
  { key: 't.f32', type: 'f32', value: 0.1 },
  { key: 't.f64', type: 'f64', value: 0.1 },
  { key: 't.bool', type: 'bool', value: true },
  { key: 't.string', type: 'string', value: 'héllo ▁wörld 🙂' },
  { key: 't.empty_string', type: 'string', value: '' },
  { key: 't.strings', type: 'array', itemType: 'string', value: ['a', '', '<0x0A>', '▁the'] },
  { key: 't.floats', type: 'array', itemType: 'f32', value: [-1.5, 0, 3.25] },
  { key: 't.ints', type: 'array', itemType: 'i32', value: [-1, 0, 7] },
  { key: 't.bools', type: 'array', itemType: 'bool', value: [false, true] },
  { key: 't.u64s', type: 'array', itemType: 'u64', value: [0, 2 ** 40] },
  { key: 't.empty', type: 'array', itemType: 'u8', value: [] },
];

/** Three small tensors: F32 [3, 2], Q8_0 [32, 2] (hand-filled bytes), F16 [5]. */
function sampleTensors(): (GgufTensorToWrite & { bytes: Uint8Array })[] {
  const f32 = new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6]).buffer);
  const q8 = Uint8Array.from({ length: 2 * 34 }, (_, i) => (i * 37) % 256);
  const f16 = Uint8Array.from({ length: 10 }, (_, i) => i);
  return [
    { name: 'a', type: 'F32', dims: [3, 2], bytes: f32, data: () => f32 },
    { name: 'b.weight', type: 'Q8_0', dims: [32, 2], bytes: q8, data: () => q8 },
    { name: 'c', type: 'F16', dims: [5], bytes: f16, data: () => f16 },
  ];
}

function assertFormatError(path: string, detail: RegExp): void {
  assert.throws(
    () => openGguf(path).close(),
    (err: unknown) => {
      assert.ok(err instanceof FormatError, `expected FormatError, got ${err}`);
      assert.ok(err.message.includes(path), `message names the file: ${err.message}`);
      assert.match(err.message, detail);
      return true;
    },
  );
}

describe('GGUF round trip', () => {
  for (const alignment of [32, 64]) {
    test(`every metadata type and tensor bytes come back (alignment ${alignment})`, () => {
      const path = freshPath();
      const tensors = sampleTensors();
      const size = writeGguf(path, ENTRIES, tensors, { alignment });
      assert.equal(size, readFileSync(path).length);
      const file = openGguf(path);
      try {
        assert.equal(file.version, 3);
        assert.equal(file.alignment, alignment);
        for (const entry of ENTRIES) {
          const expected = entry.type === 'f32' ? Math.fround(entry.value as number) : entry.value;
          assert.deepEqual(file.metadata.get(entry.key), expected, entry.key);
          assert.equal(file.metadataTypes.get(entry.key), entry.type === 'array' ? `array<${entry.itemType}>` : entry.type, entry.key);
        }
        assert.equal(file.metadata.has('general.alignment'), alignment !== 32);
        assert.deepEqual(file.tensors.map((t) => [t.name, t.type.name, t.dims, t.elements]), [
          ['a', 'F32', [3, 2], 6],
          ['b.weight', 'Q8_0', [32, 2], 64],
          ['c', 'F16', [5], 5],
        ]);
        for (const t of tensors) {
          const info = file.tensor(t.name)!;
          assert.equal(info.position % alignment, 0, `${t.name} aligned`);
          assert.deepEqual(file.readBytes(info), t.bytes);
        }
        // llama.cpp requires each tensor to start at the previous one's end, padded.
        const padded = (bytes: number) => Math.ceil(bytes / alignment) * alignment;
        const relative = file.tensors.map((t) => t.position - file.tensors[0].position);
        assert.deepEqual(relative, [0, padded(24), padded(24) + padded(68)]);
      } finally {
        file.close();
      }
    });
  }

  test('a vocabulary-sized header outgrows the writer\'s first buffer and the reader\'s 1 MiB window', () => {
    const path = freshPath();
    const tokens = Array.from({ length: 60_000 }, (_, i) => `▁token${i}`); // ~1.3 MB of strings
    const tensors = sampleTensors();
    writeGguf(path, [{ key: 'tokenizer.ggml.tokens', type: 'array', itemType: 'string', value: tokens }], tensors);
    const file = openGguf(path);
    assert.deepEqual(file.metadata.get('tokenizer.ggml.tokens'), tokens);
    assert.deepEqual(file.readBytes(file.tensor('c')!), tensors[2].bytes);
    file.close();
  });

  test('a file without tensors or metadata', () => {
    const path = freshPath();
    writeGguf(path, [], []);
    const file = openGguf(path);
    assert.equal(file.tensors.length, 0);
    assert.equal(file.metadata.size, 0);
    file.close();
  });
});

// Raw bytes for cases the writer cannot produce.
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const u64 = (n: number | bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};
const str = (s: string) => Buffer.concat([u64(Buffer.byteLength(s)), Buffer.from(s)]);
const kv = (key: string, type: number, value: Buffer) => Buffer.concat([str(key), u32(type), value]);
const info = (name: string, dims: number[], type: number, offset: number) =>
  Buffer.concat([str(name), u32(dims.length), ...dims.map(u64), u32(type), u64(offset)]);

interface Raw {
  magic?: Buffer;
  version?: number;
  tensorCount?: Buffer;
  kvCount?: Buffer;
  kvs?: Buffer[];
  infos?: Buffer[];
  data?: Buffer;
}

/** Writes a GGUF file from parts; counts default to the parts given; data starts 32-aligned. */
function raw(r: Raw): string {
  const kvs = r.kvs ?? [];
  const infos = r.infos ?? [];
  const header = Buffer.concat([
    r.magic ?? Buffer.from('GGUF'),
    u32(r.version ?? 3),
    r.tensorCount ?? u64(infos.length),
    r.kvCount ?? u64(kvs.length),
    ...kvs,
    ...infos,
  ]);
  const padding = Buffer.alloc((32 - (header.length % 32)) % 32);
  const path = freshPath();
  writeFileSync(path, Buffer.concat([header, padding, r.data ?? Buffer.alloc(0)]));
  return path;
}

describe('GGUF metadata the reader alone handles', () => {
  test('nested arrays and the types they hold', () => {
    const inner = (items: number[]) => Buffer.concat([u32(0), u64(items.length), Buffer.from(items)]); // array<u8>
    const value = Buffer.concat([u32(9), u64(2), inner([1, 2]), inner([])]);
    const file = openGguf(raw({ kvs: [kv('t.nested', 9, value)] }));
    assert.deepEqual(file.metadata.get('t.nested'), [[1, 2], []]);
    assert.equal(file.metadataTypes.get('t.nested'), 'array<array<u8>>');
    file.close();
  });

  test('version 2 files read like version 3', () => {
    const file = openGguf(raw({ version: 2, kvs: [kv('a.b', 4, u32(7))] }));
    assert.equal(file.version, 2);
    assert.equal(file.metadata.get('a.b'), 7);
    file.close();
  });
});

test('a tensor stored beyond 4 GiB in a sparse file reads correctly', () => {
  // Offsets past 2^32 need the u64 path end to end; the hole before the tensor is never written.
  const offset = 2 ** 32 + 64;
  const values = Float32Array.of(1, -2, 3.5, 1e-3, -1e30, 42, 0, 7);
  const header = Buffer.concat([Buffer.from('GGUF'), u32(3), u64(1), u64(0), info('far', [8], 0, offset)]);
  const dataStart = Math.ceil(header.length / 32) * 32;
  const path = freshPath();
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, header, 0, header.length, 0);
    writeSync(fd, new Uint8Array(values.buffer), 0, values.byteLength, dataStart + offset);
  } finally {
    closeSync(fd);
  }
  const file = openGguf(path);
  const far = file.tensor('far')!;
  assert.equal(far.position, dataStart + offset);
  assert.deepEqual(new Float32Array(file.readBytes(far).buffer), values);
  file.close();
});

describe('malformed GGUF files are FormatErrors naming the file', () => {
  const f32Tensor = (name: string, offset: number, elements = 8) => info(name, [elements], 0, offset);
  const cases: [string, () => string, RegExp][] = [
    ['missing file', () => join(dir, 'absent.gguf'), /file not found/],
    ['empty file', () => { const p = freshPath(); writeFileSync(p, ''); return p; }, /not a GGUF file/],
    ['bad magic', () => raw({ magic: Buffer.from('GGML') }), /not a GGUF file/],
    ['version 1', () => raw({ version: 1 }), /version 1 is GGUF v1/],
    ['version 4', () => raw({ version: 4 }), /version 4 is an unknown version/],
    ['big-endian', () => raw({ version: 0x03000000 }), /big-endian/],
    ['absurd tensor count', () => raw({ tensorCount: u64(2 ** 40) }), /tensor count .* is 1099511627776, more than/],
    ['tensor count beyond 2^53', () => raw({ tensorCount: u64(2n ** 63n) }), /tensor count .* too large/],
    ['absurd metadata count', () => raw({ kvCount: u64(1e9) }), /metadata entry count .* more than/],
    ['key length past the end', () => raw({ kvs: [Buffer.concat([u64(1e12), Buffer.from('abc')])] }), /key of metadata entry 0 .* claims 1000000000000 bytes/],
    ['unknown value type', () => raw({ kvs: [kv('a.b', 13, u32(0))] }), /"a\.b" .*unknown value type 13/],
    ['unknown array item type', () => raw({ kvs: [kv('a.b', 9, Buffer.concat([u32(42), u64(1), u32(0)]))] }), /unknown array item type 42/],
    ['array longer than the file', () => raw({ kvs: [kv('a.b', 9, Buffer.concat([u32(4), u64(1e6)]))] }), /length of "a\.b" .* more than/],
    ['bool neither 0 nor 1', () => raw({ kvs: [kv('a.b', 7, Buffer.from([2]))] }), /bool stored as 2/],
    ['duplicate key', () => raw({ kvs: [kv('a.b', 4, u32(1)), kv('a.b', 4, u32(2))] }), /"a\.b" appears twice/],
    ['alignment of the wrong type', () => raw({ kvs: [kv('general.alignment', 0, Buffer.from([32]))] }), /general\.alignment.* u32 power of two, got u8/],
    ['alignment not a power of two', () => raw({ kvs: [kv('general.alignment', 4, u32(24))] }), /power of two, got u32 24/],
    ['arrays nested too deep', () => {
      let value = Buffer.concat([u32(0), u64(0)]);
      for (let i = 0; i < 9; i++) value = Buffer.concat([u32(9), u64(1), value]);
      return raw({ kvs: [kv('a.b', 9, value)] });
    }, /nests arrays more than 8 deep/],
    ['unsupported tensor type', () => raw({ infos: [info('w', [256], 23, 0)], data: Buffer.alloc(136) }), /tensor "w" is stored as IQ4_XS \(23\), which ppd does not read/],
    ['unknown tensor type', () => raw({ infos: [info('w', [32], 99, 0)] }), /tensor "w" is stored as unknown type 99/],
    ['too many dimensions', () => raw({ infos: [info('w', [1, 1, 1, 1, 1], 0, 0)] }), /tensor "w" has 5 dimensions/],
    ['row not whole blocks', () => raw({ infos: [info('w', [33, 2], 8, 0)] }), /tensor "w": row length 33 is not a multiple of Q8_0's block of 32/],
    ['misaligned offset', () => raw({ infos: [f32Tensor('w', 4)], data: Buffer.alloc(64) }), /tensor "w": data offset 4 is not a multiple of the alignment 32/],
    ['tensor past the end', () => raw({ infos: [f32Tensor('w', 0)], data: Buffer.alloc(16) }), /tensor "w": data .* beyond the end of the file/],
    ['overlapping tensors', () => raw({ infos: [f32Tensor('x', 0, 16), f32Tensor('y', 32, 16)], data: Buffer.alloc(128) }), /tensors "x" and "y" overlap/],
    ['duplicate tensor', () => raw({ infos: [f32Tensor('w', 0), f32Tensor('w', 32)], data: Buffer.alloc(64) }), /tensor "w" appears twice/],
    ['tensor name past the end', () => raw({ infos: [Buffer.concat([u64(500), Buffer.from('w')])] }), /name of tensor 0 .* claims 500 bytes/],
  ];
  for (const [what, make, detail] of cases) {
    test(what, () => assertFormatError(make(), detail));
  }

  test('a file cut at any byte before its last tensor ends', () => {
    const whole = freshPath();
    writeGguf(whole, ENTRIES, sampleTensors());
    const file = openGguf(whole);
    const last = file.tensors.at(-1)!;
    const end = last.position + last.byteLength;
    file.close();
    const bytes = readFileSync(whole);
    const cut = join(dir, 'cut.gguf');
    for (let length = 0; length < end; length++) {
      writeFileSync(cut, bytes.subarray(0, length));
      assert.throws(() => openGguf(cut).close(), (err: unknown) => err instanceof FormatError && err.message.startsWith(cut), `cut at ${length}`);
    }
    writeFileSync(cut, bytes.subarray(0, end)); // only the final padding missing: still whole
    openGguf(cut).close();
  });
});

describe('GGUF writer refusals', () => {
  const refuses = (what: string, write: (path: string) => void, detail: RegExp) =>
    test(what, () => {
      const path = freshPath();
      assert.throws(() => write(path), (err: unknown) => err instanceof InputError && detail.test(err.message));
      assert.ok(!existsSync(path), 'no file written');
    });
  refuses('an integer out of its type\'s range', (p) => writeGguf(p, [{ key: 'a', type: 'u8', value: 256 }], []), /"a": 256 is not a valid u8/);
  refuses('a fraction as an integer', (p) => writeGguf(p, [{ key: 'a', type: 'u32', value: 1.5 }], []), /not a valid u32/);
  refuses('a wrong array item', (p) => writeGguf(p, [{ key: 'a', type: 'array', itemType: 'string', value: ['x', 1] }], []), /1 is not a valid string/);
  refuses('a key given twice', (p) => writeGguf(p, [{ key: 'a', type: 'u8', value: 1 }, { key: 'a', type: 'u8', value: 2 }], []), /"a" is given twice/);
  refuses('general.alignment as an entry', (p) => writeGguf(p, [{ key: 'general.alignment', type: 'u32', value: 64 }], []), /alignment option/);
  refuses('an alignment not a power of two', (p) => writeGguf(p, [], [], { alignment: 48 }), /power of two/);
  refuses('a row that is not whole blocks', (p) => writeGguf(p, [], [{ name: 'w', type: 'Q4_0', dims: [16], data: () => new Uint8Array(9) }]), /ne0 is 16/);

  test('data of the wrong size fails mid-write and leaves the old file and no temporary', () => {
    const path = freshPath();
    writeFileSync(path, 'old');
    const tensors: GgufTensorToWrite[] = [
      { name: 'ok', type: 'F32', dims: [2], data: () => new Uint8Array(8) },
      { name: 'short', type: 'F32', dims: [4], data: () => new Uint8Array(12) },
    ];
    assert.throws(() => writeGguf(path, [], tensors), /"short": data\(\) gave 12 bytes, F32 \[4\] needs 16/);
    assert.equal(readFileSync(path, 'utf8'), 'old');
    assert.deepEqual(readdirSync(dir).filter((f) => f.includes('.tmp')), []);
  });
});
