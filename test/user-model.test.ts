/**
 * What a user meets running ppd on a model of their own (issue 18, item 7), on the tiny byte
 * model: a folder without tokenizer_config.json keeps its BOS; `generate --ppd` says when it
 * decodes plainly, and --json's stats say which decoder ran; `ppd calibrate` and bench:ppd take
 * the bundled corpus's text by default only for a model with its tokenizer; bench:ppd takes the
 * user's model, adapter, prompts and output folder; eval-prompts measures the file it is given
 * and says what it overwrites.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { openModelDir } from '../src/checkpoint/model-dir.ts';
import { loadModel, tokenizerOf } from '../src/checkpoint/load.ts';
import { startGeneration } from '../src/generate/request.ts';
import { calibrateCommand } from '../src/cli/calibrate.ts';
import { BUNDLED_CORPORA, bundledHeldOutFor, heldOutFile } from '../src/data/bundled-corpora.ts';
import { InputError } from '../src/errors.ts';
import { openForReading } from '../src/format/file-io.ts';
import { readJsonObject } from '../src/format/text-file.ts';
import { PromptAdapter } from '../src/ppd/adapter.ts';
import { saveAdapter } from '../src/ppd/adapter-files.ts';
import { loadPpdSetup, plainDecodingNote, type PpdSetup } from '../src/ppd/setup.ts';
import { saveTreeSet } from '../src/ppd/tree-files.ts';
import { buildTreeSet } from '../src/ppd/tree-builder.ts';
import { Tokenizer } from '../src/tokenizer/tokenizer.ts';
import { runPpd, runPpdOk } from './helpers/cli.ts';
import { writeByteModel } from './helpers/byte-model.ts';

const REPO = join(import.meta.dirname, '..');
const ACC = [0, 1, 2].map((i) => Array.from({ length: 4 }, (_, k) => 0.4 * Math.pow(0.5, k) * Math.pow(0.8, i)));
const SHAPE = { promptTokens: 3, virtualTokens: 1, attention: 'ensemble' as const };

let work: string;
let modelDir: string;
let adapterDir: string;

before(() => {
  work = mkdtempSync(join(tmpdir(), 'ppd-user-model-'));
  modelDir = writeByteModel(join(work, 'model'));
  adapterDir = join(work, 'adapter');
  const files = openModelDir(modelDir);
  const table = files.tensors.readF32('model.embed_tokens.weight');
  files.tensors.close();
  mkdirSync(adapterDir);
  saveAdapter(PromptAdapter.initialise(files.config, table, [70, 71, 72], { ...SHAPE, initText: 'FGH' }), adapterDir);
  writeFileSync(join(adapterDir, 'accuracy.json'), JSON.stringify({ schema: 'ppd.accuracy/1', accuracy: ACC }));
  saveTreeSet(join(adapterDir, 'trees.json'), buildTreeSet(ACC, { budget: 6, ...SHAPE }));
  saveTreeSet(join(work, 'budget-1.json'), buildTreeSet(ACC, { budget: 1, ...SHAPE }));
});

after(() => rmSync(work, { recursive: true, force: true }));

test('a folder without tokenizer_config.json keeps the BOS its post-processor adds, and takes EOS from config.json', () => {
  const bare = join(work, 'bare');
  writeByteModel(bare);
  rmSync(join(bare, 'tokenizer_config.json'));
  const tokenizer = tokenizerOf(openModelDir(bare))!;
  assert.equal(tokenizer.bosId, 1);
  assert.equal(tokenizer.addBosByDefault, true, 'tokenizer.json\'s TemplateProcessing puts <s> first');
  assert.deepEqual(tokenizer.encode('Hi'), [1, 259, 3 + 0x48, 3 + 0x69]);
  assert.equal(tokenizer.eosId, 2, 'config.json eos_token_id names EOS');
});

describe('generate --ppd with nothing to guess with', () => {
  test('says so in one note on stderr, and --json\'s stats say plain decoding ran', async () => {
    const args = ['generate', '--model', modelDir, '--prompt', 'The quick brown fox', '--max-tokens', '12', '--threads', '1', '--json', '--ppd', adapterDir, '--trees', join(work, 'budget-1.json')];
    const plain = await runPpdOk(work, [...args, '--lookup', '0']);
    const notes = plain.stderr.split('\n').filter((line) => line.startsWith('note:'));
    assert.equal(notes.length, 1, plain.stderr);
    assert.match(notes[0]!, /budget-1\.json has budget 1 and the context lookup is off.*one token per forward/);
    assert.equal(JSON.parse(plain.stdout).stats.decoder, 'plain');
    // The same trees with a context lookup still guess: PPD decodes, and says nothing.
    const loaded = await loadModel(modelDir, { threads: 1, cacheDir: work });
    try {
      const setup = loadPpdSetup(loaded.config, adapterDir, { trees: join(work, 'budget-1.json'), lookup: 4 });
      assert.equal(plainDecodingNote(setup, adapterDir, { trees: join(work, 'budget-1.json') }), undefined);
      const result = await startGeneration(loaded, { prompt: 'The quick brown fox', maxTokens: 12, ppd: setup }).complete();
      assert.equal(result.stats.decoder, 'ppd');
      assert.deepEqual(result.ids, JSON.parse(plain.stdout).ids, 'greedy: the same tokens either way');
    } finally {
      await loaded.model.release();
    }
  });

  test('a calibration profile that chose plain decoding is named as such', () => {
    const trees = buildTreeSet(ACC, { budget: 1, ...SHAPE });
    const setup = { trees, treesFile: join(adapterDir, 'profiles', 'abc.trees.json'), lookup: 0 } as PpdSetup;
    assert.match(plainDecodingNote(setup, adapterDir)!, /this machine's calibration chose plain decoding .*--lookup N or --trees .*trees\.json decode with PPD anyway/);
    assert.equal(plainDecodingNote({ ...setup, lookup: 8 }, adapterDir), undefined, 'a context lookup still guesses');
  });
});

describe('the bundled corpus is a default only for models with its tokenizer', () => {
  test('bundledHeldOutFor: each corpus\'s tokenizer finds that corpus, by what it does, not by its folder\'s name; the byte tokenizer none', () => {
    assert.deepEqual(BUNDLED_CORPORA.map((c) => relative(REPO, c.dir)).sort(), ['data/code-corpus', 'data/corpus', 'data/prose-corpus']);
    for (const corpus of BUNDLED_CORPORA) {
      // A model folder of the user's, elsewhere, with a copy of the tokenizer files.
      const copy = join(work, `copy-of-${relative(join(REPO, 'models'), corpus.tokenizer)}`);
      mkdirSync(copy);
      for (const name of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(corpus.tokenizer, name), join(copy, name));
      const tokenizer = Tokenizer.fromFile(openForReading(join(copy, 'tokenizer.json')), readJsonObject(join(copy, 'tokenizer_config.json')));
      assert.equal(bundledHeldOutFor(tokenizer), heldOutFile(corpus), corpus.dir);
    }
    assert.equal(bundledHeldOutFor(tokenizerOf(openModelDir(modelDir))!), undefined);
    // The bundled model (whichever corpus it is trained on) finds one.
    assert.ok(bundledHeldOutFor(tokenizerOf(openModelDir(join(REPO, 'models', 'ppd-base')))!));
  });

  test('ppd calibrate without --data on another model: one error asking for it, before any timing', async () => {
    const flags = { model: modelDir, ppd: adapterDir, threads: 1, maxN: 4, contexts: [8], repeats: 1, warmup: 0, prompts: 2, maxTokens: 4, genRepeats: 1, tolerance: 0, margin: 0.03, lookup: 0 };
    await assert.rejects(calibrateCommand(flags), (e: Error) => e instanceof InputError && /^--data FILE is needed: .*model does not use the tokenizer of a corpus in this repository .*--prompts 0$/.test(e.message));
  });
});

/** Runs bench/ppd.ts as `npm run bench:ppd -- ...args` does. */
function benchPpd(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'bench/ppd.ts', ...args], { cwd: REPO, env: { ...process.env, PPD_CACHE_DIR: join(work, 'cache') }, maxBuffer: 16 << 20 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr }),
    );
  });
}

describe('bench:ppd on the user\'s model, adapter, prompts and output folder', () => {
  test('--model --ppd --prompts FILE --out DIR: the report is made of them, greedy PPD equal to plain', async () => {
    const sentence = (i: number) => `Paragraph ${i} says that the quick brown fox jumps over the lazy dog, and then it runs away into the woods for good.`;
    const prompts = join(work, 'prompts.txt');
    writeFileSync(prompts, [1, 2, 3].map((i) => `${sentence(i)} ${sentence(i + 10)}`).join('\n\n') + '\n');
    const out = join(work, 'bench-out');
    const run = await benchPpd(['--quick', '--threads', '1', '--model', modelDir, '--ppd', adapterDir, '--prompts', prompts, '--out', out, '--count', '2', '--max-tokens', '8']);
    assert.equal(run.code, 0, run.stderr);
    const report = JSON.parse(readFileSync(join(out, 'ppd.json'), 'utf8'));
    assert.equal(report.workload.corpusFile, prompts);
    assert.equal(report.workload.prompts.length, 2);
    for (const p of report.workload.prompts) assert.ok(p.text.startsWith('Paragraph '), p.text);
    assert.equal(report.model.dir, modelDir);
    assert.equal(report.adapter.dir, adapterDir);
    assert.equal(report.greedyIdentity.identical, report.greedyIdentity.runs);
    assert.match(readFileSync(join(out, 'ppd.md'), 'utf8'), /prompts\.txt/);
  });

  test('another model without --prompts FILE: one error line asking for it', async () => {
    const run = await benchPpd(['--model', modelDir, '--ppd', adapterDir]);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /^error: --prompts FILE is needed: .*model does not use the tokenizer of a corpus in this repository[^\n]*\n$/);
  });
});

// Also the plain text notice of a command that reads text: perplexity on a text with no separators.
test('ppd perplexity on plain text: the note says it is one document', async () => {
  const text = join(work, 'plain.txt');
  writeFileSync(text, 'Just some text.\n\nAnother paragraph of it.\n');
  const run = await runPpd(work, ['perplexity', '--model', modelDir, '--file', text, '--json', '--threads', '1']);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, /^note: .*plain\.txt has no <\|endoftext\|> separator, so it is read as one document/m);
});

describe('eval-prompts on the user\'s text', () => {
  test('another --data file is another teacher set, never the cached one of the first; replacing accuracy.json is said; plain text gets the one-document note', async () => {
    const adapter = join(work, 'eval-adapter');
    cpSync(adapterDir, adapter, { recursive: true });
    const story = (i: number) => `Story ${i}: the fox and the dog met by the river every morning, and talked about the weather for a while.`;
    const split = join(work, 'stories.txt');
    writeFileSync(split, [1, 2, 3].map(story).join('\n<|endoftext|>\n') + '\n');
    const plain = join(work, 'essay.txt');
    writeFileSync(plain, 'An essay on rivers. Rivers run to the sea, and the sea does not fill; the water comes back as rain and runs again.\n');
    const args = (data: string) => ['eval-prompts', '--model', modelDir, '--ppd', adapter, '--data', data, '--sequences', '2', '--prefix-length', '16', '--generated', '6', '--threads', '1', '--json'];
    const teacherSets = () => readdirSync(join(adapter, 'cache')).filter((name) => name.startsWith('teachers-'));

    const first = await runPpdOk(work, args(split));
    assert.match(first.stderr, new RegExp(`replacing ${join(adapter, 'accuracy.json').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} with the table measured on .*stories\\.txt`));
    assert.doesNotMatch(first.stderr, /^note: .*read as one document/m);
    assert.equal(teacherSets().length, 1);

    const second = await runPpdOk(work, args(plain));
    assert.match(second.stderr, /^note: .*essay\.txt has no <\|endoftext\|> separator, so it is read as one document/m);
    assert.equal(teacherSets().length, 2, 'the second file\'s teacher set is its own, not the first file\'s from the cache');
    assert.equal(JSON.parse(readFileSync(join(adapter, 'accuracy.json'), 'utf8')).source, plain);
  });
});
