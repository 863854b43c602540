/**
 * Parsers for command-line values: each turns a string into a checked value or fails with one
 * line naming the flag and the value, through commander's own error reporting.
 */
import { InvalidArgumentError } from 'commander';

export function integer(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (text: string): number => {
    const value = Number(text);
    if (!/^-?\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new InvalidArgumentError(`expected an integer in ${min}..${max}, got "${text}"`);
    }
    return value;
  };
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
