/**
 * Hardware profiles: what `ppd calibrate` leaves in an adapter folder for one machine, and how
 * decoding finds the one for the machine it runs on. Data, not measurement (measure.ts) and not
 * the choice (tree-size-choice.ts).
 *
 * Layout in the adapter folder:
 *   profiles/<hash>.json        `ppd.hardware-profile/1`: the machine signature, the chosen n,
 *                               the predicted (and measured) speedup, what the trees were built from
 *   profiles/<hash>.trees.json  `ppd.trees/1`: the dynamic tree set for the chosen n
 * where <hash> is signatureHash(signature): 16 hex digits of sha256 over the signature's fields.
 *
 * The signature is what changes the latency curve L(n): CPU model, cores, ONNX Runtime intra-op
 * threads, execution provider, ONNX Runtime version and, when the weights are quantized
 * (`--quantize`), the quantization: 8- and 4-bit blocks change L(n) and L(16)/L(1) a lot. A profile also records the adapter's
 * base-model config hash and a digest of accuracy.json; when either changed since calibration,
 * the profile's trees are stale and decoding falls back to trees.json.
 *
 * docs/CALIBRATION.md documents the schema with an example.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { basename, join } from 'node:path';
import { FormatError } from '../errors.ts';
import { writeJsonAtomic } from '../format/atomic.ts';
import { boolean, integer, literal, matching, number, object, oneOf, parseWithSchema, positiveNumber, text, crossCheck } from '../format/schema.ts';
import { readJsonFile } from '../format/text-file.ts';
import { type PpdTreeSet } from './tree.ts';
import { loadTreeSet, saveTreeSet } from './tree-files.ts';
import { QUANTIZE_MODES, type QuantizeMode } from '../format/quantize.ts';
import { defaultThreads, ortVersion } from '../runtime/ort.ts';

export const PROFILE_SCHEMA = 'ppd.hardware-profile/1';
export const PROFILES_DIR = 'profiles';
/** runtime/ort.ts creates every session on this provider. */
const EXECUTION_PROVIDER = 'cpu';

export interface MachineSignature {
  cpuModel: string;
  /** Logical CPUs available to the process. */
  cores: number;
  /** ONNX Runtime intra-op threads. */
  threads: number;
  executionProvider: string;
  onnxruntime: string;
  /** The linear weights' quantization (`--quantize`); absent for f32 weights. */
  quantize?: QuantizeMode;
}

export interface HardwareProfile {
  schema: typeof PROFILE_SCHEMA;
  signature: MachineSignature;
  /** signatureHash(signature); also the file's name. */
  signatureHash: string;
  /** ISO 8601, when the calibration ran. */
  created: string;
  /** What the trees were built for: the adapter's base model and its accuracy table. */
  adapter: { baseConfigHash: string; accuracyDigest: string };
  /** The chosen n: input rows per step. */
  budget: number;
  /** File name, in profiles/, of the `ppd.trees/1` set for `budget`. */
  trees: string;
  /** τ(budget), tokens per step. */
  expectedTokensPerStep: number;
  /** L(1) and L(budget), milliseconds, mean over the calibration's context lengths. */
  latencyMs: { one: number; chosen: number };
  /** τ(budget) · L(1) / L(budget). */
  predictedSpeedup: number;
  /** PPD over plain tokens/s on held-out prompts at `budget` (with `lookup`); null when not measured. */
  measuredSpeedup: number | null;
  /**
   * Context-lookup tokens per step the calibration measured best with `budget` (0: none); absent
   * when it did not measure it (no end-to-end check, or a profile older than the lookup), and
   * then `--lookup` or its default applies.
   */
  lookup?: number;
  /**
   * Whether the adapter folder's static n-gram table (ngram.bin) drafts beside the trees: what
   * the calibration measured best with and without it; absent when it did not measure it (no
   * table in the folder, no end-to-end check, or a profile older than the choice), and then
   * decoding's default applies (setup.ts).
   */
  ngram?: boolean;
  /**
   * Where `lookup` > 0: what decoding without the lookup (`--lookup 0`) takes instead, the
   * prompt-token trees measured fastest alone (bestWithoutLookup), even where they lose to plain
   * decoding (then it says so); absent when the check measured none (and then `--lookup 0` keeps
   * `trees`).
   */
  withoutLookup?: {
    /** Input rows per step (>= 2). */
    budget: number;
    /** File name, in profiles/, of the `ppd.trees/1` set for this budget. */
    trees: string;
    /** Measured speedup over plain tokens/s. */
    measuredSpeedup: number;
  };
  /** The calibration report (JSON), relative to the adapter folder. */
  report: string;
}

/** sha256 of a file's bytes (hex, 16 digits): ties a hardware profile to the accuracy table it used. */
export function fileDigest(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex').slice(0, 16);
}

// ---------------------------------------------------------------------------------------------
// Signatures

/** This machine's signature when ONNX Runtime runs with `threads` intra-op threads (and `quantize`d weights). */
export function machineSignature(threads: number, quantize?: QuantizeMode): MachineSignature {
  return {
    cpuModel: cpus()[0]?.model.trim() || 'unknown',
    cores: availableParallelism(),
    threads,
    executionProvider: EXECUTION_PROVIDER,
    onnxruntime: ortVersion(),
    ...(quantize === undefined ? {} : { quantize }),
  };
}

/**
 * 16 hex digits of sha256 over the signature's fields in a fixed order; `quantize` only when
 * set, so the profiles of f32 weights keep the hashes they had before quantization existed.
 */
export function signatureHash(s: MachineSignature): string {
  const fields = [s.cpuModel, s.cores, s.threads, s.executionProvider, s.onnxruntime, ...(s.quantize === undefined ? [] : [s.quantize])];
  return createHash('sha256').update(JSON.stringify(fields)).digest('hex').slice(0, 16);
}

/** "Intel Xeon ..., 2 cores, 2 threads, cpu EP, ORT 1.23.0[, q8 weights]": a signature for people. */
export function describeSignature(s: MachineSignature): string {
  const weights = s.quantize === undefined ? '' : `, ${s.quantize} weights`;
  return `${s.cpuModel}, ${s.cores} cores, ${s.threads} thread${s.threads === 1 ? '' : 's'}, ${s.executionProvider} EP, ORT ${s.onnxruntime}${weights}`;
}

// ---------------------------------------------------------------------------------------------
// Validation, load, save

const hash16 = () => matching(/^[0-9a-f]{16}$/, '16 hex digits');
const treesFileName = () => matching(/^[\w.-]+\.json$/, 'a file name in profiles/ ending in .json');

const signatureSchema = object(
  {
    cpuModel: text(),
    cores: integer(1),
    threads: integer(1),
    executionProvider: text(),
    onnxruntime: text(),
    quantize: oneOf(QUANTIZE_MODES, `one of ${QUANTIZE_MODES.join(', ')} (or absent)`).optional(),
  },
  'an object {cpuModel, cores, threads, executionProvider, onnxruntime}',
);

const profileSchema = crossCheck(object({
  schema: literal(PROFILE_SCHEMA),
  signature: signatureSchema,
  signatureHash: hash16(),
  created: text('an ISO 8601 date'),
  adapter: object({ baseConfigHash: hash16(), accuracyDigest: hash16() }, 'an object {baseConfigHash, accuracyDigest}'),
  budget: integer(1),
  trees: treesFileName(),
  expectedTokensPerStep: number(1),
  latencyMs: object({ one: positiveNumber(), chosen: positiveNumber() }, 'an object {one, chosen}'),
  predictedSpeedup: positiveNumber(),
  measuredSpeedup: positiveNumber('a positive number or null').nullable(),
  lookup: integer(0, Infinity, 'an integer >= 0 (or absent)').optional(),
  ngram: boolean('true or false (or absent)').optional(),
  withoutLookup: object(
    { budget: integer(2), trees: treesFileName(), measuredSpeedup: positiveNumber() },
    'an object {budget, trees, measuredSpeedup} (or absent)',
  ).optional(),
  report: text('a path relative to the adapter folder'),
}), (p, fail) => {
  const hash = signatureHash(p.signature);
  if (p.signatureHash !== hash) fail(['signatureHash'], `${p.signatureHash} is not the hash of the signature (${hash})`);
});

/** Parses a `ppd.hardware-profile/1` object read from `file` (FormatError naming the field). */
export function parseProfile(raw: unknown, file = 'profile.json'): HardwareProfile {
  return parseWithSchema(profileSchema, raw, { file });
}

/** Reads a profile and checks that its trees files are there and hold the sets for their budgets. */
export function loadProfile(path: string): HardwareProfile {
  const profile = parseProfile(readJsonFile(path), path);
  const expectedName = `${profile.signatureHash}.json`;
  if (basename(path) !== expectedName) throw new FormatError(path, `a profile for signature ${profile.signatureHash} must be named ${expectedName}`);
  const check = (field: string, file: string, budget: number) => {
    const treesPath = join(path, '..', file);
    if (!existsSync(treesPath)) throw new FormatError(path, `field "${field}" names ${file}, which is not in ${join(path, '..')}`);
    const trees = loadTreeSet(treesPath);
    if (trees.budget !== budget) throw new FormatError(treesPath, `budget ${trees.budget} differs from the profile's ${budget} (${path}, ${field})`);
  };
  check('trees', profile.trees, profile.budget);
  if (profile.withoutLookup) check('withoutLookup.trees', profile.withoutLookup.trees, profile.withoutLookup.budget);
  return profile;
}

export const profilePath = (adapterDir: string, hash: string) => join(adapterDir, PROFILES_DIR, `${hash}.json`);
export const profileTreesName = (hash: string) => `${hash}.trees.json`;
/** The file of a profile's `withoutLookup` trees. */
export const profileTreesWithoutLookupName = (hash: string) => `${hash}.without-lookup.trees.json`;

/**
 * Writes the tree sets (`trees` for the profile's budget; `treesWithoutLookup` for its
 * withoutLookup, required exactly when it has one), then the profile that names them (so a
 * profile never points at nothing).
 */
export function saveProfile(adapterDir: string, profile: HardwareProfile, trees: PpdTreeSet, treesWithoutLookup?: PpdTreeSet): string {
  const checked = parseProfile(profile, 'profile');
  if (trees.budget !== checked.budget) throw new FormatError(checked.trees, `budget ${trees.budget} differs from the profile's ${checked.budget}`);
  const without = checked.withoutLookup;
  if ((without === undefined) !== (treesWithoutLookup === undefined)) throw new FormatError('profile', 'withoutLookup and its tree set come together');
  if (without && treesWithoutLookup!.budget !== without.budget) throw new FormatError(without.trees, `budget ${treesWithoutLookup!.budget} differs from the profile's ${without.budget}`);
  mkdirSync(join(adapterDir, PROFILES_DIR), { recursive: true });
  saveTreeSet(join(adapterDir, PROFILES_DIR, checked.trees), trees);
  if (without) saveTreeSet(join(adapterDir, PROFILES_DIR, without.trees), treesWithoutLookup!);
  const path = profilePath(adapterDir, checked.signatureHash);
  writeJsonAtomic(path, checked);
  return path;
}

// ---------------------------------------------------------------------------------------------
// Finding this machine's profile

export type ProfileLookup =
  | { found: true; profile: HardwareProfile; /** The profile's tree-set file. */ treesPath: string }
  | { found: false; /** Why not, as the start of a sentence for the user. */ reason: string };

export interface LookupOptions {
  /** The machine as decoding will run on it. */
  signature: MachineSignature;
  /** configHashes of the base model the adapter is loaded for (a profile may carry any of them). */
  baseConfigHashes: readonly string[];
  /** The adapter's accuracy.json (a profile built from another table is stale). */
  accuracyFile: string;
}

/** Profiles in the folder other than `except` (file names like <hash>.json). */
function otherProfiles(adapterDir: string, except: string): number {
  const dir = join(adapterDir, PROFILES_DIR);
  if (!existsSync(dir)) return 0;
  return readdirSync(dir).filter((f) => /^[0-9a-f]{16}\.json$/.test(f) && f !== `${except}.json`).length;
}

/**
 * This machine's profile in the adapter folder, when it exists and was built for the adapter's
 * base model and current accuracy table. A profile for this machine that is malformed, or names
 * trees that are missing, is a FormatError (delete it or calibrate again), never skipped.
 */
export function findProfile(adapterDir: string, o: LookupOptions): ProfileLookup {
  const hash = signatureHash(o.signature);
  const path = profilePath(adapterDir, hash);
  if (!existsSync(path)) {
    const others = otherProfiles(adapterDir, hash);
    const elsewhere = others === 0 ? '' : ` (it has ${others} for other machines or thread counts)`;
    return { found: false, reason: `no hardware profile for this machine (${describeSignature(o.signature)}) in ${join(adapterDir, PROFILES_DIR)}${elsewhere}` };
  }
  const profile = loadProfile(path);
  if (!o.baseConfigHashes.includes(profile.adapter.baseConfigHash)) {
    return { found: false, reason: `the hardware profile ${path} was calibrated for another base model` };
  }
  const accuracyNow = existsSync(o.accuracyFile) ? fileDigest(o.accuracyFile) : 'missing';
  if (profile.adapter.accuracyDigest !== accuracyNow) {
    return { found: false, reason: `the hardware profile ${path} was calibrated with another ${basename(o.accuracyFile)} than ${o.accuracyFile}` };
  }
  return { found: true, profile, treesPath: join(adapterDir, PROFILES_DIR, profile.trees) };
}

/** The `ppd calibrate` command line that makes a profile for this machine (for notices). */
export function calibrationCommandLine(modelDir: string, adapterDir: string, threads: number, quantize?: QuantizeMode): string {
  const flags = `${threads === defaultThreads() ? '' : ` --threads ${threads}`}${quantize === undefined ? '' : ` --quantize ${quantize}`}`;
  return `ppd calibrate --model ${modelDir} --ppd ${adapterDir}${flags}`;
}
