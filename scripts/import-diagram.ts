/**
 * The import diagram of docs/ARCHITECTURE.md, generated from the code: dependency-cruiser reads
 * every import under src/ (the same options as the layering check, .dependency-cruiser.cjs), the
 * modules are collapsed to their top-level folder, and the folder graph is drawn as a Mermaid
 * flowchart with one row per layer (scripts/layers.cjs), lowest at the bottom. Only the edges
 * that no longer path implies are drawn (the transitive reduction), so the picture stays small;
 * `--all` draws every folder-to-folder import.
 *
 *   npm run docs:diagram            rewrites the diagram between its markers in docs/ARCHITECTURE.md
 *   npm run docs:diagram -- --print prints it instead
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ICruiseResult } from 'dependency-cruiser';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DOC = join(ROOT, 'docs', 'ARCHITECTURE.md');
const BEGIN = '<!-- import-diagram:begin (npm run docs:diagram) -->';
const END = '<!-- import-diagram:end -->';

interface Layer {
  name: string;
  folders: string[];
}
const { LAYERS } = createRequire(import.meta.url)('./layers.cjs') as { LAYERS: Layer[] };

/** `src/ppd/decode.ts` → `ppd`; `src/errors.ts` → `errors.ts`. */
const folderOf = (path: string): string => path.split('/')[1]!;

/** Folder → the folders it imports, from dependency-cruiser's module graph (its CLI, as `npm test` runs it). */
function folderGraph(): Map<string, Set<string>> {
  const run = spawnSync(join(ROOT, 'node_modules', '.bin', 'depcruise'), ['--config', '.dependency-cruiser.cjs', '--output-type', 'json', 'src'], {
    cwd: ROOT,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  if (run.error || !run.stdout.startsWith('{')) throw new Error(`depcruise failed: ${run.error?.message ?? run.stderr}`);
  const output = JSON.parse(run.stdout) as ICruiseResult;
  const graph = new Map<string, Set<string>>();
  for (const module of output.modules) {
    if (!module.source.startsWith('src/')) continue;
    const from = folderOf(module.source);
    if (!graph.has(from)) graph.set(from, new Set());
    for (const dependency of module.dependencies) {
      if (!dependency.resolved.startsWith('src/')) continue;
      const to = folderOf(dependency.resolved);
      if (to !== from) graph.get(from)!.add(to);
    }
  }
  return graph;
}

/** The edges no longer path implies (the layering check keeps the graph acyclic). */
function transitiveReduction(graph: Map<string, Set<string>>): Map<string, Set<string>> {
  const reaches = (from: string, to: string, skip: string): boolean => {
    const seen = new Set<string>();
    const stack = [...(graph.get(from) ?? [])].filter((next) => next !== skip);
    while (stack.length > 0) {
      const node = stack.pop()!;
      if (node === to) return true;
      if (seen.has(node)) continue;
      seen.add(node);
      stack.push(...(graph.get(node) ?? []));
    }
    return false;
  };
  const reduced = new Map<string, Set<string>>();
  for (const [from, targets] of graph) reduced.set(from, new Set([...targets].filter((to) => !reaches(from, to, to))));
  return reduced;
}

const nodeId = (folder: string) => `n_${folder.replace(/\W/g, '_')}`; // plain ids such as "graph" or "end" are Mermaid keywords

function mermaid(graph: Map<string, Set<string>>): string {
  const lines = ['```mermaid', 'flowchart BT'];
  LAYERS.forEach((layer, i) => {
    const present = layer.folders.filter((folder) => graph.has(folder));
    if (present.length === 0) return;
    lines.push(`  subgraph L${i}["${layer.name}"]`, '    direction LR');
    for (const folder of present) lines.push(`    ${nodeId(folder)}["${folder === 'errors.ts' ? folder : `${folder}/`}"]`);
    lines.push('  end');
  });
  for (const [from, targets] of [...graph].sort(([a], [b]) => a.localeCompare(b))) {
    for (const to of [...targets].sort()) lines.push(`  ${nodeId(from)} --> ${nodeId(to)}`);
  }
  lines.push('```');
  return lines.join('\n');
}

const args = process.argv.slice(2);
const graph = folderGraph();
const diagram = mermaid(args.includes('--all') ? graph : transitiveReduction(graph));
if (args.includes('--print')) {
  process.stdout.write(diagram + '\n');
} else {
  const doc = readFileSync(DOC, 'utf8');
  const start = doc.indexOf(BEGIN);
  const end = doc.indexOf(END);
  if (start < 0 || end < start) throw new Error(`${DOC}: no ${BEGIN} ... ${END} markers`);
  writeFileSync(DOC, `${doc.slice(0, start + BEGIN.length)}\n${diagram}\n${doc.slice(end)}`);
  process.stdout.write(`wrote the import diagram into ${DOC}\n`);
}
