/**
 * What ppd's benchmarks share: the flags every one takes, the machine they ran on, how much CPU
 * other processes took meanwhile (every figure drops when the cores are shared), timing
 * statistics, number formats and the Markdown table of the machine.
 *
 * What it is not: a benchmark framework. Each benchmark (engine.ts, train.ts) decides what it
 * measures and owns its report schema; JSON and Markdown are written with src/format/atomic.ts,
 * progress bars come from src/report/progress.ts.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { availableParallelism, cpus, release, totalmem } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { exitOnPpdError, InputError } from '../src/errors.ts';
import { writeFileAtomic, writeJsonAtomic } from '../src/format/atomic.ts';
import { writeLineChart, type LineChart } from '../src/report/plot.ts';
import type { Spread } from '../src/report/timing.ts';
import { defaultThreads, ortVersion } from '../src/runtime/ort.ts';

export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));

// ---------------------------------------------------------------------------------------------
// Flags and the entry point.

export interface BenchArgs {
  /** Smoke check: a small shape, few repeats, written to a temporary folder. */
  quick: boolean;
  /** ONNX Runtime intra-op threads (default: all cores). */
  threads: number;
}

/**
 * `--quick` and `--threads N`, the flags every benchmark takes, plus a benchmark's own string
 * flags (`extra`, names without dashes), returned unchecked in `flags` for it to validate.
 */
export function parseBenchArgs(
  argv: string[],
  extra: readonly string[] = [],
  switchNames: readonly string[] = [],
): BenchArgs & { flags: Record<string, string | undefined>; switches: Record<string, boolean> } {
  const options: Record<string, { type: 'string' | 'boolean' }> = { quick: { type: 'boolean' }, threads: { type: 'string' } };
  for (const name of extra) options[name] = { type: 'string' };
  for (const name of switchNames) options[name] = { type: 'boolean' };
  const { values } = parseArgs({ args: argv, options });
  const threads = values.threads === undefined ? defaultThreads() : Number(values.threads);
  if (!Number.isInteger(threads) || threads < 1) {
    throw new InputError(`--threads must be a positive integer, got ${JSON.stringify(values.threads)}`);
  }
  const flags = Object.fromEntries(extra.map((name) => [name, values[name] as string | undefined]));
  const switches = Object.fromEntries(switchNames.map((name) => [name, values[name] === true]));
  return { quick: values.quick === true, threads, flags, switches };
}

/** Runs a benchmark's main; bad input (a PpdError, an unknown flag) ends as one line, not a stack. */
export async function runBenchmark(main: (argv: string[]) => Promise<void>): Promise<void> {
  try {
    await main(process.argv.slice(2));
  } catch (error) {
    // An unknown flag (node:util's parseArgs) is bad input too. Exiting at once matters here: a
    // model or llama.cpp context opened before the error would keep the process (and the CPU lock) alive.
    const parseArgs = error instanceof TypeError && 'code' in error && String(error.code).startsWith('ERR_PARSE_ARGS');
    exitOnPpdError(parseArgs ? new InputError(error.message) : error);
  }
}

/** A flag's positive integer value, or `fallback` when the flag is absent. */
export function positiveInt(flag: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new InputError(`--${flag} must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

/** A path as a report records it: relative to the repository when inside it. */
export const repoPath = (path: string) => {
  const rel = relative(REPO_ROOT, path);
  return rel.startsWith('..') ? path : rel;
};

/**
 * A benchmark's report, written atomically into `outDir` (made if absent): `<name>.json` (the
 * data), `<name>.md` (the same for people) and the chart as `svgFile`. Returns the three paths.
 */
export async function writeReportFiles(outDir: string, name: string, report: unknown, markdown: string, svgFile: string, chart: LineChart): Promise<string[]> {
  mkdirSync(outDir, { recursive: true });
  const paths = [join(outDir, `${name}.json`), join(outDir, `${name}.md`), join(outDir, svgFile)];
  writeJsonAtomic(paths[0]!, report);
  writeFileAtomic(paths[1]!, markdown);
  await writeLineChart(paths[2]!, chart);
  return paths;
}

/** Model shapes for benchmarks: real checkpoints' config.json files without weights (bench/shapes/README.md). */
const SHAPES_DIR = join(REPO_ROOT, 'bench', 'shapes');

/** bench/shapes/`name`.json; absent, an InputError for `flag` that lists the shapes there are. */
export function shapeConfigFile(name: string, flag: string): string {
  const file = join(SHAPES_DIR, `${name}.json`);
  if (!existsSync(file)) {
    const known = readdirSync(SHAPES_DIR).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5));
    throw new InputError(`${flag}: no ${name}.json in bench/shapes (there: ${known.join(', ')})`);
  }
  return file;
}

/** A written file as the user should see it: relative to the working folder when inside it. */
export function shownPath(path: string): string {
  const shown = relative(process.cwd(), path);
  return shown.startsWith('..') ? path : shown;
}

// ---------------------------------------------------------------------------------------------
// Machine.

export interface Machine {
  cpuModel: string;
  /** SIMD features of the CPU that ONNX Runtime's kernels use, from /proc/cpuinfo. */
  cpuFlags: string[];
  /** Last-level cache as /proc/cpuinfo reports it (in a VM, often the host's, shared); null if unknown. */
  lastLevelCacheBytes: number | null;
  cores: number;
  threadsUsed: number;
  totalMemoryBytes: number;
  os: string;
  node: string;
  onnxruntime: string;
}

export function describeMachine(threadsUsed: number): Machine {
  let cpuinfo = '';
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    // not Linux: os.cpus() still names the CPU, and the flags stay unknown
  }
  const field = (name: string) => cpuinfo.match(new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm'))?.[1]?.trim();
  const flags = new Set((field('flags') ?? '').split(/\s+/));
  const cacheKiB = Number.parseInt(field('cache size') ?? '', 10); // "307200 KB"
  const simd = ['avx', 'avx2', 'fma', 'f16c', 'avx512f', 'avx512bw', 'avx512_vnni', 'avx_vnni', 'avx512_bf16', 'amx_tile', 'neon', 'asimd'];
  return {
    cpuModel: field('model name') ?? cpus()[0]?.model ?? 'unknown',
    cpuFlags: simd.filter((f) => flags.has(f)),
    lastLevelCacheBytes: Number.isFinite(cacheKiB) ? cacheKiB * 1024 : null,
    cores: availableParallelism(),
    threadsUsed,
    totalMemoryBytes: totalmem(),
    os: `${process.platform} ${release()}`,
    node: process.version,
    onnxruntime: ortVersion(),
  };
}

// ---------------------------------------------------------------------------------------------
// CPU taken by other processes.

/** Cores' worth of CPU time over a phase's wall time: 1.0 = one core busy the whole phase. */
export interface PhaseLoad {
  wallSeconds: number;
  /** This process (all its threads). */
  ownCores: number;
  /** Everything else on the machine, steal included; null where /proc/stat is unavailable. */
  otherCores: number | null;
}

/** Other processes using more than this many cores during a phase make its figures suspect. */
export const BUSY_MACHINE_CORES = 0.25;

/** Busy and total jiffies of all CPUs from /proc/stat, or null off Linux. */
function cpuJiffies(): { busy: number; total: number } | null {
  let line: string;
  try {
    line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  } catch {
    return null;
  }
  // cpu  user nice system idle iowait irq softirq steal ...
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1, 9).map(Number) as number[];
  const busy = user! + nice! + system! + irq! + softirq! + steal!;
  return { busy, total: busy + idle! + iowait! };
}

/** This process's child processes (a browser it drives, a bundler's service), from /proc; [] off Linux. */
export function childProcesses(): number[] {
  try {
    return readdirSync('/proc')
      .filter((name) => /^\d+$/.test(name))
      .filter((pid) => {
        try {
          const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
          return Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[1]) === process.pid;
        } catch {
          return false;
        }
      })
      .map(Number);
  } catch {
    return [];
  }
}

/**
 * CPU seconds (user + system) used so far by the processes `roots` and all their descendants,
 * from /proc (0 off Linux). Processes that ended meanwhile are not counted.
 */
export function processTreeSeconds(roots: number[]): number {
  if (roots.length === 0) return 0;
  const ticksPerSecond = 100; // USER_HZ: 100 on every Linux ABI Node runs on
  const stats = new Map<number, { parent: number; ticks: number }>();
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return 0;
  }
  for (const pid of pids) {
    try {
      // pid (comm) state ppid ... utime(14) stime(15): comm may hold spaces, so split after ')'.
      const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
      stats.set(Number(pid), { parent: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // the process ended between the listing and the read
    }
  }
  const wanted = new Set(roots);
  let ticks = 0;
  for (const [pid, stat] of stats) {
    for (let at: number | undefined = pid; at !== undefined && at > 1; at = stats.get(at)?.parent) {
      if (wanted.has(at)) {
        ticks += stat.ticks;
        break;
      }
    }
  }
  return ticks / ticksPerSecond;
}

/**
 * Starts watching the machine's CPU; the returned function ends the phase and reports it.
 * `helpers` names processes that work for this benchmark (a browser it drives): their CPU time
 * counts as its own, not as other processes'.
 */
export function watchLoad(helpers: () => number[] = () => []): () => PhaseLoad {
  const wallStart = performance.now();
  const ownStart = process.cpuUsage();
  const helpersStart = processTreeSeconds(helpers());
  const jiffiesStart = cpuJiffies();
  return () => {
    const wallSeconds = (performance.now() - wallStart) / 1000;
    const own = process.cpuUsage(ownStart);
    const ownSeconds = (own.user + own.system) / 1e6 + Math.max(0, processTreeSeconds(helpers()) - helpersStart);
    const jiffiesEnd = cpuJiffies();
    let otherCores: number | null = null;
    if (jiffiesStart && jiffiesEnd && wallSeconds > 0) {
      // Jiffies per second differ between kernels; all CPUs together tick cores * HZ a second.
      const perSecond = (jiffiesEnd.total - jiffiesStart.total) / wallSeconds;
      const busySeconds = ((jiffiesEnd.busy - jiffiesStart.busy) / perSecond) * availableParallelism();
      otherCores = Math.max(0, busySeconds - ownSeconds) / wallSeconds;
    }
    return { wallSeconds, ownCores: ownSeconds / wallSeconds, otherCores };
  };
}

/** Every figure drops when other processes share the cores: say so before the run, not after. */
export async function warnIfBusy(): Promise<void> {
  const endSample = watchLoad();
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const { otherCores } = endSample();
  if (otherCores !== null && otherCores > BUSY_MACHINE_CORES) {
    process.stderr.write(`warning: other processes are using ${fmt(otherCores, 2)} cores; the figures will understate ppd\n`);
  }
}

export const otherCpu = (load: PhaseLoad) => (load.otherCores === null ? 'unknown' : `${fmt(load.otherCores, 2)} cores`);

// ---------------------------------------------------------------------------------------------
// Timing.

/** Wall time of `run` in milliseconds. */
export async function timed(run: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await run();
  return performance.now() - start;
}

export const range = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);

/** Deterministic, spread-out token ids (the values do not change the cost of a forward). */
export const tokenIds = (n: number, V: number, salt: number) => range(n).map((i) => (i * 7919 + salt * 104729) % V);

// ---------------------------------------------------------------------------------------------
// Memory.

/**
 * The process's resident memory after a full garbage collection, so that a load's growth is its
 * own memory and not the garbage of reading and converting weights (V8 hides `gc` unless asked).
 * On Linux also its two parts (/proc/self/status): anonymous memory, which only this process
 * holds (ONNX Runtime's packed weights, the JS heap), and file-backed pages, mapped files the
 * kernel may drop and read back (a model file llama.cpp maps, the initializers ORT maps and
 * keeps): null elsewhere.
 */
export interface Resident {
  rssBytes: number;
  anonBytes: number | null;
  fileBytes: number | null;
}

export async function residentMemory(): Promise<Resident> {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
  await new Promise((resolve) => setTimeout(resolve, 50)); // backing stores are freed just after
  const rssBytes = process.memoryUsage().rss;
  let status = '';
  try {
    status = readFileSync('/proc/self/status', 'utf8');
  } catch {
    return { rssBytes, anonBytes: null, fileBytes: null };
  }
  const kib = (key: string) => {
    const match = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status);
    return match ? Number(match[1]) * 1024 : null;
  };
  return { rssBytes, anonBytes: kib('RssAnon'), fileBytes: kib('RssFile') };
}

/** b - a, part by part (a part unknown in either is unknown). */
export function residentGrowth(a: Resident, b: Resident): Resident {
  const minus = (x: number | null, y: number | null) => (x === null || y === null ? null : x - y);
  return { rssBytes: b.rssBytes - a.rssBytes, anonBytes: minus(b.anonBytes, a.anonBytes), fileBytes: minus(b.fileBytes, a.fileBytes) };
}

// ---------------------------------------------------------------------------------------------
// Formats and the Markdown machine table.

export const GB = 1e9;
export const MiB = 2 ** 20;
export const fmt = (x: number, digits = 1) => x.toFixed(digits);
export const gib = (bytes: number) => `${fmt(bytes / 2 ** 30, 2)} GiB`;
export const pct = (share: number) => `${fmt(share * 100, 0)}%`;
/** "12.3 MiB", "4.0 KiB", "512 B". */
export const bytes = (n: number) => (n >= 2 ** 20 ? `${fmt(n / 2 ** 20, 1)} MiB` : n >= 1024 ? `${fmt(n / 1024, 1)} KiB` : `${n} B`);
/** "12.3 [11.9–14.0]": median [min–max] in milliseconds. */
export const msSpread = (s: Spread, digits = 1) => `${fmt(s.medianMs, digits)} [${fmt(s.minMs, digits)}–${fmt(s.maxMs, digits)}]`;

/** The "## Machine" section of a report, `load` being the whole run's. */
export function machineSection(m: Machine, load: PhaseLoad): string[] {
  return [
    '## Machine',
    '',
    '| | |',
    '| --- | --- |',
    `| CPU | ${m.cpuModel} (${m.cpuFlags.join(', ') || 'flags unknown'}) |`,
    `| last-level cache | ${m.lastLevelCacheBytes === null ? 'unknown' : `${fmt(m.lastLevelCacheBytes / MiB, 0)} MiB`} |`,
    `| cores / threads used | ${m.cores} / ${m.threadsUsed} |`,
    `| memory | ${gib(m.totalMemoryBytes)} |`,
    `| OS | ${m.os} |`,
    `| Node / ONNX Runtime | ${m.node} / ${m.onnxruntime} |`,
    `| CPU used by other processes during the run | ${otherCpu(load)} |`,
    '',
  ];
}
