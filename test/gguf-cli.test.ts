/**
 * `ppd convert` and `--model FILE.gguf` end to end, through the real CLI: a tiny random model
 * converted to GGUF and back, `ppd logits` on its f32 GGUF equal to the folder's logits, `ppd info`
 * and `ppd generate` on a GGUF, and bad arguments ending as one `error:` line (a few spawned, to
 * check the contract; the rest called in process, as each spawn costs a second or two).
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { convertCommand, type ConvertFlags } from '../src/cli/convert.ts';
import { FormatError, InputError } from '../src/errors.ts';
import { openModelDir } from '../src/checkpoint/model-dir.ts';
import { newCache } from '../src/decode/autoregressive.ts';
import { loadModel } from '../src/checkpoint/load.ts';
import { causalMask } from '../src/model/llama-model.ts';
import { BYTE_MODEL_SHAPE, writeByteModel } from './helpers/byte-model.ts';
import { assertUserError, runPpdOk } from './helpers/cli.ts';

let work: string;
let modelDir: string;
const cache = () => join(work, 'cache');
const ppd = (...args: string[]) => runPpdOk(cache(), args);

/** Logits [T][V] of the folder model, in process, as `ppd logits --json` prints them. */
async function folderLogits(ids: number[]): Promise<number[][]> {
  const { model } = await loadModel(modelDir, { cacheDir: false });
  const out = await model.forward({ embeds: model.embed(ids), positions: ids.map((_, i) => i), mask: causalMask(ids.length, 0), cache: newCache(model) });
  await model.release();
  const V = model.config.vocabSize;
  return ids.map((_, t) => Array.from(out.logits.subarray(t * V, (t + 1) * V)));
}

before(() => {
  work = mkdtempSync(join(tmpdir(), 'ppd-gguf-cli-'));
  modelDir = join(work, 'model');
  writeByteModel(modelDir, BYTE_MODEL_SHAPE, 21);
});
after(() => rmSync(work, { recursive: true, force: true }));

test('convert to f32 GGUF: one summary line; logits equal to the folder\'s; back to a folder with the same config', async () => {
  const gguf = join(work, 'f32.gguf');
  const { stdout } = await ppd('convert', '--model', modelDir, '--to', 'gguf', '--type', 'f32', '--out', gguf);
  assert.match(stdout, /^wrote \S+f32\.gguf: [\d.]+ MB, tensors \d+ F32, in [\d.]+ s\n$/);

  const back = join(work, 'back');
  const [fromGguf, toHf] = await Promise.all([
    ppd('logits', '--model', gguf, '--ids', '1,72,105', '--json'),
    ppd('convert', '--model', gguf, '--to', 'hf', '--type', 'f16', '--out', back),
  ]);
  assert.deepEqual(JSON.parse(fromGguf.stdout).logits, await folderLogits([1, 72, 105]));
  assert.match(toHf.stdout, /^wrote \S+back: [\d.]+ MB of F16 weights, config and tokenizer, in [\d.]+ s\n$/);
  const [original, converted] = [modelDir, back].map((dir) => {
    const m = openModelDir(dir);
    m.tensors.close();
    return m;
  });
  assert.deepEqual(converted.config, original.config);
  assert.ok(converted.tokenizerFile);
});

test('q8_0 GGUF: info describes it, generate runs on its own tokenizer', async () => {
  const gguf = join(work, 'q8.gguf');
  const { stdout } = await ppd('convert', '--model', modelDir, '--to', 'gguf', '--type', 'q8_0', '--out', gguf);
  assert.match(stdout, /tensors \d+ Q8_0, \d+ F32,/);
  const [info, generated] = (
    await Promise.all([ppd('info', '--model', gguf, '--json'), ppd('generate', '--model', gguf, '--prompt', 'Hi', '--max-tokens', '3', '--json')])
  ).map((run) => JSON.parse(run.stdout));
  assert.deepEqual(info.storedDtypes.sort(), ['F32', 'Q8_0']);
  assert.match(info.tokenizer, /q8\.gguf \(GGUF metadata\)/);
  assert.ok(generated.ids.length > 0);
});

test('bad arguments and bad files end as one error line', async () => {
  const notGguf = join(work, 'junk.gguf');
  writeFileSync(notGguf, 'not a model at all');
  const out = join(work, 'x.gguf');
  await Promise.all([
    assertUserError(cache(), ['convert', '--model', modelDir, '--to', 'onnx', '--out', out], ['--to', 'onnx']),
    assertUserError(cache(), ['convert', '--model', modelDir, '--to', 'hf', '--type', 'q4_0', '--out', join(work, 'hf')], ['--to hf', 'q4_0']),
    assertUserError(cache(), ['logits', '--model', notGguf, '--ids', '1'], ['junk.gguf', 'not a GGUF file']),
  ]);
});

test('convert refuses what it cannot write, naming the flag (in process)', () => {
  const text = join(work, 'model.txt');
  writeFileSync(text, 'x');
  const cases: [ConvertFlags, typeof InputError | typeof FormatError, RegExp][] = [
    [{ model: modelDir, to: 'gguf', out: join(work, 'x.bin') }, InputError, /--out must name a \.gguf file, got ".*x\.bin"/],
    [{ model: modelDir, to: 'gguf', out: join(work, 'dir.gguf') }, InputError, /--out ".*dir\.gguf" is a directory/],
    [{ model: modelDir, to: 'hf', out: text }, InputError, /--out ".*model\.txt" is a file; --to hf writes a folder/],
    [{ model: join(work, 'absent.gguf'), to: 'hf', out: join(work, 'hf') }, FormatError, /absent\.gguf: GGUF file not found/],
    [{ model: text, to: 'gguf', out: join(work, 'y.gguf') }, FormatError, /model\.txt: neither a model directory nor a \.gguf file/],
  ];
  mkdirSync(join(work, 'dir.gguf'));
  for (const [flags, type, detail] of cases) {
    assert.throws(() => convertCommand(flags), (err: unknown) => err instanceof type && detail.test(err.message), JSON.stringify(flags));
  }
});
