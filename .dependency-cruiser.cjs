/**
 * The layering of src/ (docs/ARCHITECTURE.md, "Layers"), checked by `npm run lint:deps` (part of
 * `npm test`): a folder imports only folders of the layers before its own (the table is
 * scripts/layers.cjs), so no folder can be in an import cycle, and low layers know nothing of the
 * ones above them. A new folder must be added to that table (the check fails on modules outside
 * it). Type-only imports count: a type is a concept too.
 */
const { LAYERS } = require('./scripts/layers.cjs');

const pattern = (folders) => `^src/(${folders.map((f) => f.replace('.', '\\.')).join('|')})(/|$)`;
const ALL = LAYERS.flatMap((layer) => layer.folders);

const layerRules = LAYERS.flatMap((layer, i) => {
  const above = LAYERS.slice(i + 1).flatMap((l) => l.folders);
  const rules = [];
  if (above.length > 0) {
    rules.push({
      name: `layer-${i}-imports-downward`,
      comment: `${layer.name} (${layer.folders.join(', ')}) must not import a higher layer`,
      severity: 'error',
      from: { path: pattern(layer.folders) },
      to: { path: pattern(above) },
    });
  }
  // Folders of one layer do not import each other (each is its own concept).
  for (const folder of layer.folders) {
    const siblings = layer.folders.filter((f) => f !== folder);
    if (siblings.length === 0) continue;
    rules.push({
      name: `layer-${i}-no-sideways`,
      comment: `${folder} must not import ${siblings.join(', ')} (same layer)`,
      severity: 'error',
      from: { path: pattern([folder]) },
      to: { path: pattern(siblings) },
    });
  }
  return rules;
});

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'folder-in-layer-table',
      comment: 'every folder of src/ belongs to a layer in .dependency-cruiser.cjs',
      severity: 'error',
      from: { path: '^src/', pathNot: pattern(ALL) },
      to: {},
    },
    {
      name: 'no-folder-cycles',
      comment: 'no import cycle between folders (subfolders included, e.g. format and format/gguf)',
      severity: 'error',
      scope: 'folder',
      from: { path: '^src/' },
      to: { circular: true },
    },
    {
      name: 'no-module-cycles',
      comment: 'no runtime import cycle between modules (a cycle through type-only imports is harmless at run time)',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true, dependencyTypesNot: ['type-only'], viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
  ],
  options: {
    // TypeScript 7 has no JavaScript API; swc parses the sources.
    parser: 'swc',
    tsPreCompilationDeps: true,
    doNotFollow: { path: 'node_modules' },
    exclude: { path: ['node_modules', '^src/server/page/'] },
    includeOnly: '^src/',
  },
};
