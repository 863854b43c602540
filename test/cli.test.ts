/**
 * The `ppd` command line end to end: each test spawns the real CLI on one tiny random model that
 * `ppd init --random` writes in before(). Numbers are checked against the naive reference
 * forward on the same weights; bad input must end as one `error:` line naming the culprit,
 * exit code 1, no stack trace. Compiled graphs go to a temporary PPD_CACHE_DIR.
 *
 * Not covered here: `ppd demo` (a larger model; slow), --chat and --stop (generate.ts tests).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openModelDir } from '../src/checkpoint/model-dir.ts';
import type { LlamaConfig } from '../src/model/config.ts';
import { writeRandomModel } from '../src/checkpoint/random-init.ts';
import { Tokenizer } from '../src/tokenizer/tokenizer.ts';
import { openForReading } from '../src/format/file-io.ts';
import { causalMask, embedTokens, naiveForward } from './reference/naive-llama.ts';
import { BYTE_MODEL_SHAPE } from './helpers/byte-model.ts';
import { assertUserError as assertUserErrorOf, runPpdOk } from './helpers/cli.ts';
import { assertClose, range } from './helpers/tiny-model.ts';

const EOS = 2;
const SHAPE = BYTE_MODEL_SHAPE;

let work: string; // temporary root: shape.json, model/, cache/, broken model folders
let modelDir: string;

/** Runs `ppd ...args` from the repo root, compiled graphs in this suite's cache. */
const ppdOk = (...args: string[]) => runPpdOk(join(work, 'cache'), args);
const assertUserError = (args: string[], culprits: string[]) => assertUserErrorOf(join(work, 'cache'), args, culprits);

/** Every tensor of a model folder as F32, for the naive reference. */
function readModel(dir: string): { config: LlamaConfig; weights: Map<string, Float32Array> } {
  const files = openModelDir(dir);
  try {
    const weights = new Map(files.tensors.list().map((t) => [t.name, files.tensors.readF32(t.name)] as const));
    return { config: files.config, weights };
  } finally {
    files.tensors.close();
  }
}

/** Logits [T, V] of the naive forward over the whole of `ids` from position 0. */
function naiveLogits(config: LlamaConfig, weights: Map<string, Float32Array>, ids: number[]): Float32Array {
  return naiveForward(config, weights, {
    embeds: embedTokens(config, weights, ids),
    positions: range(0, ids.length),
    mask: causalMask(ids.length, 0),
  }).logits;
}

function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/** A copy of the good model folder, to break one file of. */
function copyModel(name: string, files = ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  for (const f of files) copyFileSync(join(modelDir, f), join(dir, f));
  return dir;
}

/** A safetensors file from raw header JSON and data bytes. */
function safetensorsBytes(header: object, data: Uint8Array): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, data]);
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'ppd-cli-test-'));
  modelDir = join(work, 'model');
  writeFileSync(join(work, 'shape.json'), JSON.stringify(SHAPE));
  // Seed 8: on "hello" the naive top-1 logit leads the runner-up by >= 1.7e-2 at every greedy
  // step, far above f32 noise, so the greedy parity test cannot flip on a near-tie.
  const { stderr } = await ppdOk('init', '--random', '--config', join(work, 'shape.json'), '--out', modelDir, '--seed', '8');
  assert.match(stderr, /byte-level tokenizer/);
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('ppd info', () => {
  test('--json reports the shape init was given', async () => {
    const info = JSON.parse((await ppdOk('info', '--model', modelDir, '--json')).stdout);
    assert.deepEqual(
      {
        vocabSize: info.config.vocabSize,
        hiddenSize: info.config.hiddenSize,
        intermediateSize: info.config.intermediateSize,
        numLayers: info.config.numLayers,
        numHeads: info.config.numHeads,
        numKvHeads: info.config.numKvHeads,
        headDim: info.config.headDim,
      },
      { vocabSize: 260, hiddenSize: 32, intermediateSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 8 },
    );
    assert.deepEqual(info.eosTokenIds, [EOS]);
    assert.deepEqual(info.storedDtypes, ['F32']);
    assert.equal(info.tokenizer, join(modelDir, 'tokenizer.json'));
  });

  test('plain output is labelled lines', async () => {
    const lines = (await ppdOk('info', '--model', modelDir)).stdout.trimEnd().split('\n');
    assert.ok(lines.length >= 5, `expected several lines, got ${lines.length}`);
    const text = lines.join('\n');
    assert.match(text, /^model +.*model$/m);
    assert.match(text, /^shape +2 layers, hidden 32, MLP 64, 4 heads \(2 key\/value\), head dim 8$/m);
    assert.match(text, /^vocab +260$/m);
    assert.match(text, /^eos ids +2$/m);
  });
});

describe('ppd logits', () => {
  test('--json equals the naive reference forward on the same weights', async () => {
    const ids = [1, 5, 9];
    const { logits } = JSON.parse((await ppdOk('logits', '--model', modelDir, '--ids', ids.join(','), '--json')).stdout);
    const { config, weights } = readModel(modelDir);
    assert.equal(logits.length, ids.length);
    assertClose(logits.flat(), naiveLogits(config, weights, ids), 1e-4, 'logits');
  });

  test('--quantize q8 and q4 stay near the reference (bounds of test/quantize.test.ts)', async () => {
    const ids = [1, 5, 9, 200, 7];
    const { config, weights } = readModel(modelDir);
    const reference = naiveLogits(config, weights, ids);
    for (const [mode, bound] of [['q8', 0.05], ['q4', 0.3]] as const) {
      const { logits } = JSON.parse((await ppdOk('logits', '--model', modelDir, '--ids', ids.join(','), '--quantize', mode, '--json')).stdout);
      const got: number[] = logits.flat();
      let error = 0;
      let norm = 0;
      got.forEach((v, i) => ((error += (v - reference[i]!) ** 2), (norm += reference[i]! ** 2)));
      const relative = Math.sqrt(error / norm);
      assert.ok(relative > 0 && relative < bound, `${mode}: relative RMS error ${relative}`);
    }
  });
});

describe('ppd generate', () => {
  const PROMPT = 'hello';
  const MAX = 12;
  let greedy: { text: string; ids: number[]; stats: Record<string, unknown> };

  before(async () => {
    greedy = JSON.parse((await ppdOk('generate', '--model', modelDir, '--prompt', PROMPT, '--max-tokens', String(MAX), '--json')).stdout);
  });

  test('--json prints text, ids and stats', () => {
    assert.equal(typeof greedy.text, 'string');
    assert.ok(Array.isArray(greedy.ids) && greedy.ids.length >= 1 && greedy.ids.length <= MAX, `ids: ${greedy.ids}`);
    const s = greedy.stats;
    for (const field of ['promptTokens', 'newTokens', 'seconds', 'tokensPerSecond', 'steps']) {
      assert.equal(typeof s[field], 'number', `stats.${field}`);
      assert.ok(Number.isFinite(s[field]) && (s[field] as number) >= 0, `stats.${field} = ${s[field]}`);
    }
    assert.equal(s.newTokens, greedy.ids.length);
    assert.ok(['eos', 'length'].includes(s.finishReason as string), `finishReason ${s.finishReason}`);
  });

  test('greedy ids equal a naive greedy loop over the full sequence', () => {
    const { config, weights } = readModel(modelDir);
    const tokenizer = Tokenizer.fromFile(
      openForReading(join(modelDir, 'tokenizer.json')),
      JSON.parse(readFileSync(join(modelDir, 'tokenizer_config.json'), 'utf8')),
    );
    const prompt = tokenizer.encode(PROMPT);
    assert.equal(greedy.stats.promptTokens, prompt.length);
    const sequence = [...prompt];
    const expected: number[] = [];
    while (expected.length < MAX) {
      const logits = naiveLogits(config, weights, sequence);
      const next = argmax(logits.subarray((sequence.length - 1) * config.vocabSize));
      expected.push(next);
      if (next === EOS) break;
      sequence.push(next);
    }
    assert.deepEqual(greedy.ids, expected);
    assert.equal(greedy.stats.finishReason, expected.at(-1) === EOS ? 'eos' : 'length');
    assert.equal(greedy.text, tokenizer.decode(expected.filter((id) => id !== EOS)));
  });

  test('streaming prints the text on stdout and a stats line last on stderr', async () => {
    const { stdout, stderr } = await ppdOk('generate', '--model', modelDir, '--prompt', PROMPT, '--max-tokens', String(MAX));
    assert.equal(stdout, greedy.text + '\n');
    const lastLine = stderr.trimEnd().split('\n').at(-1)!;
    assert.match(lastLine, /tokens\/s/);
  });

  test('sampling is reproducible by seed and differs between seeds', async () => {
    const sample = async (seed: number) =>
      JSON.parse(
        (await ppdOk('generate', '--model', modelDir, '--prompt', PROMPT, '--max-tokens', '48', '--temperature', '1', '--seed', String(seed), '--json'))
          .stdout,
      ).ids as number[];
    const [a, b, c] = await Promise.all([sample(5), sample(5), sample(6)]);
    assert.deepEqual(a, b);
    // Near-uniform logits over 260 ids: 48 equal draws by chance is out of the question.
    assert.notDeepEqual(a, c);
  });
});

describe('bad input ends as one error line', () => {
  test('missing model folder', async () => {
    const dir = join(work, 'no-such-model');
    await assertUserError(['info', '--model', dir], [dir]);
  });

  test('config.json is malformed JSON', async () => {
    const dir = copyModel('bad-json');
    writeFileSync(join(dir, 'config.json'), '{"model_type": "llama",');
    await assertUserError(['info', '--model', dir], [join(dir, 'config.json'), 'JSON']);
  });

  test('unsupported model_type', async () => {
    const dir = copyModel('gpt2');
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...SHAPE, model_type: 'gpt2' }));
    await assertUserError(['generate', '--model', dir, '--prompt', 'hi'], ['config.json', 'model_type', 'gpt2']);
  });

  test('a tensor whose shape is not the config’s', async () => {
    const other = join(work, 'hidden-16');
    writeRandomModel(other, { ...SHAPE, hidden_size: 16 }, { seed: 1 });
    const dir = copyModel('wrong-shape', ['config.json']);
    copyFileSync(join(other, 'model.safetensors'), join(dir, 'model.safetensors'));
    await assertUserError(['logits', '--model', dir, '--ids', '1'], ['model.embed_tokens.weight', '[260,16]', '[260,32]']);
  });

  test('truncated model.safetensors', async () => {
    const dir = copyModel('truncated');
    writeFileSync(join(dir, 'model.safetensors'), readFileSync(join(modelDir, 'model.safetensors')).subarray(0, 100));
    await assertUserError(['logits', '--model', dir, '--ids', '1'], [join(dir, 'model.safetensors')]);
  });

  test('model.safetensors header that is not JSON', async () => {
    const dir = copyModel('garbage-header');
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(16n);
    writeFileSync(join(dir, 'model.safetensors'), Buffer.concat([length, Buffer.from('this is not json')]));
    await assertUserError(['generate', '--model', dir, '--prompt', 'hi'], [join(dir, 'model.safetensors'), 'JSON']);
  });

  test('unsupported dtype in the safetensors header', async () => {
    const dir = copyModel('int8', ['config.json']);
    const header = { 'model.embed_tokens.weight': { dtype: 'I8', shape: [2], data_offsets: [0, 2] } };
    writeFileSync(join(dir, 'model.safetensors'), safetensorsBytes(header, new Uint8Array(2)));
    await assertUserError(['info', '--model', dir], ['model.safetensors', 'model.embed_tokens.weight', 'I8']);
  });

  test('empty prompt', async () => {
    await assertUserError(['generate', '--model', modelDir, '--prompt', ''], ['prompt']);
  });

  test('token id outside the vocabulary', async () => {
    await assertUserError(['logits', '--model', modelDir, '--ids', '1,260'], ['260']);
  });

  test('--ids that is not a list of ids', async () => {
    await assertUserError(['logits', '--model', modelDir, '--ids', '1,x'], ['--ids', '1,x']);
  });

  test('--max-tokens 0', async () => {
    await assertUserError(['generate', '--model', modelDir, '--prompt', 'hi', '--max-tokens', '0'], ['--max-tokens', '"0"']);
  });

  test('--temperature -1', async () => {
    await assertUserError(['generate', '--model', modelDir, '--prompt', 'hi', '--temperature', '-1'], ['--temperature', '"-1"']);
  });

  test('--top-p 2', async () => {
    await assertUserError(['generate', '--model', modelDir, '--prompt', 'hi', '--top-p', '2'], ['--top-p', '"2"']);
  });

  test('--trees and --verification without --ppd, and more --threads than the machine has', async () => {
    await assertUserError(['generate', '--model', modelDir, '--prompt', 'hi', '--trees', 'trees.json'], ['--trees', '--ppd']);
    await assertUserError(['generate', '--model', modelDir, '--prompt', 'hi', '--verification', 'typical'], ['--verification', '--ppd']);
    await assertUserError(['serve', '--model', modelDir, '--trees', 'trees.json'], ['--trees', '--ppd']);
    await assertUserError(['generate', '--model', modelDir, '--prompt', 'hi', '--threads', '999'], ['--threads', '"999"', 'logical CPUs']);
    await assertUserError(['generate', '--model', modelDir, '--prompt', 'hi', '--threads', '0'], ['--threads', '"0"']);
  });

  test('--lookup -1 and --lookup 1000', async () => {
    await assertUserError(['generate', '--model', modelDir, '--prompt', 'hi', '--lookup', '-1'], ['--lookup', '"-1"']);
    await assertUserError(['generate', '--model', modelDir, '--prompt', 'hi', '--lookup', '1000'], ['--lookup', '"1000"']);
    await assertUserError(['generate', '--model', modelDir, '--prompt', 'hi', '--lookup', '4'], ['--lookup', '--ppd']);
  });

  test('--quantize with an unknown mode', async () => {
    await assertUserError(['perplexity', '--model', modelDir, '--file', 'x.txt', '--quantize', 'q5'], ['--quantize', 'q5', 'q8, q4']);
  });

  test('--quantize on a command that trains', async () => {
    await assertUserError(['train-prompts', '--model', modelDir, '--train', 'a', '--valid', 'b', '--out', 'o', '--quantize', 'q8'], ['--quantize', 'f32']);
  });

  test('unknown flag', async () => {
    await assertUserError(['generate', '--model', modelDir, '--prompt', 'hi', '--bogus'], ['--bogus']);
  });

  test('unknown command', async () => {
    await assertUserError(['frobnicate'], ['frobnicate']);
  });

  test('generate on a model folder without tokenizer.json', async () => {
    const dir = copyModel('no-tokenizer', ['config.json', 'generation_config.json', 'model.safetensors']);
    await assertUserError(['generate', '--model', dir, '--prompt', 'hi'], [dir, 'tokenizer']);
  });
});
