/**
 * The one way ppd reads a JSON document it owns or understands (config.json, adapter_config.json,
 * trees, hardware profiles, accuracy tables): a zod schema says what the document must hold, and
 * the first thing wrong with it becomes one error line naming the file and the field, e.g.
 *
 *   models/x/config.json: field "hidden_size" must be a positive integer, got "16"
 *
 * The field helpers below make every check of a field report the same "must be <what>, got
 * <value>", so a schema reads as the list of fields and what each must be. Checks that relate
 * several fields go in `crossCheck`, which runs only once every field has the right type and
 * range. Pure (no node:*; the browser build uses it too): reading the file is text-file.ts's
 * `readJsonWithSchema`. Not the schemas (each lives with its
 * concept: model/config.ts, ppd/tree.ts, ppd/adapter.ts, ppd/hardware-profile.ts, ...).
 */
import { z } from 'zod';
import { FormatError } from '../errors.ts';

/** How a failing document is reported. */
export interface SchemaSource {
  /** The file (or other source) named at the start of the error line. */
  file: string;
  /** Prefix of every field path, e.g. "tree" for `tree.candidates[0].path`; also names the whole document. */
  root?: string;
  /** How a field path is written in the message (default: `field "a.b[0]"`). */
  label?: (path: string) => string;
  /** The error to throw for a detail line (default: a FormatError naming `file`). */
  error?: (detail: string) => Error;
}

/** "must be <expected>, got <value>" for every check of one field. */
function mustBe(expected: string): { error: (issue: { input?: unknown }) => string } {
  return { error: (issue) => `must be ${expected}, got ${shown(issue.input)}` };
}

/** A value as the message shows it: JSON where possible. */
export function shown(value: unknown): string {
  return value === undefined ? 'undefined' : JSON.stringify(value);
}

// ---------------------------------------------------------------------------------------------
// Field schemas

/** An integer in min..max; the message says which range. */
export function integer(min = -Infinity, max = Infinity, expected?: string) {
  const what = expected ?? (max === Infinity ? `an integer >= ${min}` : `an integer in ${min}..${max}`);
  let schema = z.number(mustBe(what)).int(mustBe(what));
  if (min > -Infinity) schema = schema.min(min, mustBe(what));
  if (max < Infinity) schema = schema.max(max, mustBe(what));
  return schema;
}

/** A finite number >= min (or > min when `exclusive`). */
export function number(min = -Infinity, expected?: string, exclusive = false) {
  const what = expected ?? (exclusive ? `a number > ${min}` : `a number >= ${min}`);
  const schema = z.number(mustBe(what)); // zod's numbers are finite: NaN and ±Infinity fail
  if (min === -Infinity) return schema;
  return exclusive ? schema.gt(min, mustBe(what)) : schema.min(min, mustBe(what));
}

/** A finite number above 0. */
export const positiveNumber = (expected = 'a positive number') => number(0, expected, true);

/** true or false. */
export function boolean(expected = 'true or false') {
  return z.boolean(mustBe(expected));
}

/** A string; non-empty unless `allowEmpty`. */
export function text(expected = 'a non-empty string', allowEmpty = false) {
  return allowEmpty ? z.string(mustBe(expected)) : z.string(mustBe(expected)).min(1, mustBe(expected));
}

/** A string matching `pattern`. */
export function matching(pattern: RegExp, expected: string) {
  return z.string(mustBe(expected)).regex(pattern, mustBe(expected));
}

/** Exactly `value` (a schema tag like "ppd.tree/1"). */
export function literal<const T extends string>(value: T) {
  return z.literal(value, mustBe(`"${value}"`));
}

/** One of `values`; the message lists them. */
export function oneOf<const T extends readonly [string, ...string[]]>(values: T, expected = `one of ${values.join(', ')}`) {
  return z.enum(values, mustBe(expected));
}

/** A JSON object with these fields (other fields are ignored and dropped). */
export function object<S extends z.ZodRawShape>(shape: S, expected = 'a JSON object') {
  return z.object(shape, mustBe(expected));
}

/** Like `object`, but fields the schema does not name are kept as they were. */
export function looseObject<S extends z.ZodRawShape>(shape: S, expected = 'a JSON object') {
  return z.looseObject(shape, mustBe(expected));
}

/** An array of `element`s (each checked, its index in the field path). */
export function arrayOf<T extends z.ZodType>(element: T, expected: string) {
  return z.array(element, mustBe(expected));
}

/** A field that may be absent or null, read as `fallback` then (as many config.json readers do). */
export function orDefault<T extends z.ZodType>(schema: T, fallback: z.output<T>) {
  return schema.nullish().transform((value) => (value ?? fallback) as z.output<T>);
}

/** Reports a value that fails a check no field helper states, e.g. `"yarn" is not supported`. */
export function failing(message: (input: unknown) => string) {
  return { error: (issue: { input?: unknown }) => message(issue.input) };
}

/** How a cross check reports a problem: the field's path in the document, and the detail. */
export type Fail = (path: (string | number)[], detail: string) => void;

/**
 * `schema` plus checks that relate fields (a parent path exists, a count matches another field):
 * `check` gets the typed document and `fail(path, detail)`; it runs only when every field passed
 * its own checks, so it may trust their types and ranges.
 */
export function crossCheck<S extends z.ZodType>(schema: S, check: (value: z.output<S>, fail: Fail) => void): S {
  return schema.superRefine(
    (value, ctx) => check(value, (path, detail) => ctx.addIssue({ code: 'custom', path, message: detail })),
    { when: (payload) => payload.issues.length === 0 },
  );
}

// ---------------------------------------------------------------------------------------------
// Reading

/** `a.b[0].c` from zod's path ['a', 'b', 0, 'c'], after `root` when given. */
export function fieldPath(path: readonly PropertyKey[], root?: string): string {
  let out = root ?? '';
  for (const key of path) out += typeof key === 'number' ? `[${key}]` : out === '' ? String(key) : `.${String(key)}`;
  return out;
}

const quoted = (path: string) => `field "${path}"`;

/** The first problem zod found, as the detail line of an error. */
function describeIssue(issue: z.core.$ZodIssue, source: SchemaSource): string {
  const path = fieldPath(issue.path, source.root);
  if (path === '') return issue.message.replace(/^must be /, 'must hold ');
  return `${(source.label ?? quoted)(path)} ${issue.message}`;
}

/** Checks `raw` (a parsed JSON value) against `schema`; returns the typed value or throws one error line. */
export function parseWithSchema<S extends z.ZodType>(schema: S, raw: unknown, source: SchemaSource): z.output<S> {
  const result = schema.safeParse(raw, { reportInput: true });
  if (result.success) return result.data;
  const detail = describeIssue(result.error.issues[0]!, source);
  throw source.error ? source.error(detail) : new FormatError(source.file, detail);
}
