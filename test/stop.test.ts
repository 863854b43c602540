import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InputError } from '../src/errors.ts';
import { StopStrings } from '../src/generate/stop.ts';
import { Rng } from '../src/sampling/rng.ts';

/** Feeds pieces; returns each push's result and the flushed tail. */
function feed(stops: string[], pieces: string[]) {
  const matcher = new StopStrings(stops);
  const results = pieces.map((p) => matcher.push(p));
  return { results, tail: matcher.flush(), matcher };
}

test('a stop string inside one piece cuts the text; the stop string is not emitted', () => {
  const { results, tail } = feed(['STOP'], ['hello STOP world']);
  assert.deepEqual(results, [{ emit: 'hello ', stopped: true }]);
  assert.equal(tail, '');
});

test('a stop string split across pieces is held back, then cut', () => {
  const { results } = feed(['</answer>'], ['42</', 'ans', 'wer> and more']);
  assert.deepEqual(results, [
    { emit: '42', stopped: false },
    { emit: '', stopped: false },
    { emit: '', stopped: true },
  ]);
});

test('a held-back prefix is released once it can no longer match', () => {
  const { results, tail } = feed(['\nUser:'], ['a\nUs', 'ual text', '\nU']);
  assert.deepEqual(results.map((r) => r.emit), ['a', '\nUsual text', '']);
  assert.equal(tail, '\nU');
});

test('overlapping candidates: "aab" with stop "ab" emits "a"', () => {
  const { results } = feed(['ab'], ['a', 'a', 'b']);
  assert.deepEqual(results.map((r) => r.emit), ['', 'a', '']);
  assert.equal(results[2].stopped, true);
});

test('the earliest of several stop strings wins; after stopping, pushes emit nothing', () => {
  const { results, matcher } = feed(['world', 'lo w', 'x'], ['hel', 'lo world x']);
  assert.deepEqual(results, [
    { emit: 'he', stopped: false },
    { emit: 'l', stopped: true }, // 'hel' + 'lo w...': "lo w" starts before "world"
  ]);
  assert.deepEqual(matcher.push('more'), { emit: '', stopped: true });
  assert.equal(matcher.stopped, true);
});

test('a stop string at the very start emits nothing; no stop strings pass text through', () => {
  assert.deepEqual(feed(['###'], ['###rest']).results, [{ emit: '', stopped: true }]);
  assert.deepEqual(feed([], ['a', 'b']).results.map((r) => r.emit), ['a', 'b']);
});

test('empty stop strings are rejected', () => {
  assert.throws(() => new StopStrings(['ok', '']), InputError);
});

test('random texts and splits: output equals the text cut at the earliest stop string', () => {
  const rng = new Rng(99);
  const alphabet = 'ab\n:';
  const pick = (n: number) =>
    Array.from({ length: n }, () => alphabet[Math.floor(rng.next() * alphabet.length)]).join('');
  for (let trial = 0; trial < 2000; trial++) {
    const stops = Array.from({ length: 1 + Math.floor(rng.next() * 3) }, () => pick(1 + Math.floor(rng.next() * 4)));
    const text = pick(Math.floor(rng.next() * 30));
    const pieces: string[] = [];
    for (let i = 0; i < text.length; ) {
      const n = 1 + Math.floor(rng.next() * 5);
      pieces.push(text.slice(i, i + n));
      i += n;
    }
    const cuts = stops.map((s) => text.indexOf(s)).filter((i) => i >= 0);
    const expected = cuts.length > 0 ? text.slice(0, Math.min(...cuts)) : text;
    const { results, tail } = feed(stops, pieces);
    assert.equal(results.map((r) => r.emit).join('') + tail, expected, JSON.stringify({ stops, pieces }));
    assert.equal(results.some((r) => r.stopped), cuts.length > 0);
  }
});
