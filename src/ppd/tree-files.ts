/**
 * Trees and tree sets (tree.ts) as files on Node: read by path, written atomically.
 */
import { writeJsonAtomic } from '../format/atomic.ts';
import { readJsonFile } from '../format/text-file.ts';
import { canonicalTree, parseTree, parseTreeSet, validateTree, validateTreeSet, type PpdTree, type PpdTreeSet, type TreeLimits } from './tree.ts';

export function loadTree(path: string, limits: TreeLimits = {}): PpdTree {
  return parseTree(readJsonFile(path), path, limits);
}

export function saveTree(path: string, tree: PpdTree): void {
  writeJsonAtomic(path, canonicalTree(validateTree(tree)));
}

export function loadTreeSet(path: string): PpdTreeSet {
  return parseTreeSet(readJsonFile(path), path);
}

export function saveTreeSet(path: string, set: PpdTreeSet): void {
  validateTreeSet(set);
  writeJsonAtomic(path, { ...set, trees: set.trees.map(canonicalTree) });
}
