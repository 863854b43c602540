/**
 * Parsers for command-line values: each turns a string into a checked value or fails with one
 * line naming the flag and the value, through commander's own error reporting.
 */
import { InvalidArgumentError } from 'commander';
import { availableParallelism } from 'node:os';
import { InputError } from '../errors.ts';
import type { PpdSetupOptions } from '../ppd/setup.ts';

export function integer(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (text: string): number => {
    const value = Number(text);
    if (!/^-?\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new InvalidArgumentError(`expected an integer in ${min}..${max}, got "${text}"`);
    }
    return value;
  };
}

/**
 * ONNX Runtime intra-op threads: 1 up to this machine's logical CPUs. More threads than CPUs only
 * contend with each other (a decode step slows down many times over), so it is refused.
 */
export function threadCount(text: string): number {
  const cpus = availableParallelism();
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || value < 1 || value > cpus) {
    throw new InvalidArgumentError(`expected an integer in 1..${cpus} (this machine's logical CPUs), got "${text}"`);
  }
  return value;
}

/** A number in min..max; with `exclusiveMin`, in (min, max]. */
export function number(min: number, max: number, exclusiveMin = false) {
  return (text: string): number => {
    const value = Number(text);
    const aboveMin = exclusiveMin ? value > min : value >= min;
    if (text.trim() === '' || !Number.isFinite(value) || !aboveMin || value > max) {
      throw new InvalidArgumentError(`expected a number in ${exclusiveMin ? '(' : ''}${min}..${max}${exclusiveMin ? ']' : ''}, got "${text}"`);
    }
    return value;
  };
}

export function idList(text: string): number[] {
  const parts = text.split(',').map((s) => s.trim());
  if (parts.some((p) => !/^\d+$/.test(p))) {
    throw new InvalidArgumentError(`expected comma-separated token ids such as 1,2,3, got "${text}"`);
  }
  return parts.map(Number);
}

export function choice<T extends string>(allowed: readonly T[]) {
  return (text: string): T => {
    if (!(allowed as readonly string[]).includes(text)) {
      throw new InvalidArgumentError(`expected one of ${allowed.join(', ')}, got "${text}"`);
    }
    return text as T;
  };
}

/** Repeatable flag: collects every occurrence. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Comma-separated host names (or `*`), e.g. "ppd.example.com,ppd". */
export function hostList(text: string): string[] {
  const names = text.split(',').map((s) => s.trim());
  if (names.some((n) => n !== '*' && !/^[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?$/i.test(n))) {
    throw new InvalidArgumentError(`expected comma-separated host names such as ppd.example.com,ppd (or *), got "${text}"`);
  }
  return names;
}

/** The flags that only mean something with --ppd: each given without it is one error line. */
export function checkPpdOnlyFlags(flags: { ppd?: string; trees?: string; verification?: string; lookup?: number; ngram?: string; ngramTokens?: number }): void {
  if (flags.ppd) return;
  if (flags.trees !== undefined) throw new InputError('--trees needs --ppd ADAPTER: the trees are what PPD verifies each step');
  if (flags.verification !== undefined) throw new InputError('--verification needs --ppd ADAPTER: it chooses how PPD accepts sampled guesses');
  if (flags.lookup !== undefined) throw new InputError('--lookup needs --ppd ADAPTER: the context lookup is verified within PPD steps');
  if (flags.ngram !== undefined) throw new InputError('--ngram needs --ppd ADAPTER: the n-gram table\'s guesses are verified within PPD steps');
  if (flags.ngramTokens !== undefined) throw new InputError('--ngram-tokens needs --ppd ADAPTER: the n-gram table\'s guesses are verified within PPD steps');
}

/** The --ppd decoding flags generate and serve share, as loadPpdSetup takes them. */
export function ppdFlags(flags: { trees?: string; verification?: PpdSetupOptions['verification']; lookup?: number; ngram?: string; ngramTokens?: number }): PpdSetupOptions {
  return { trees: flags.trees, verification: flags.verification, lookup: flags.lookup, ngram: flags.ngram, ngramTokens: flags.ngramTokens };
}
