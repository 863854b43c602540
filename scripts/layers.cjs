/**
 * The layers of src/, lowest first: a folder may import only folders of earlier layers (and
 * errors.ts). Read by .dependency-cruiser.cjs (the check in `npm test`) and by
 * scripts/import-diagram.ts (the diagram in docs/ARCHITECTURE.md). A new folder goes here.
 */
const LAYERS = [
  { name: 'errors', folders: ['errors.ts'] },
  { name: 'graph building, sampling', folders: ['graph', 'sampling'] },
  { name: 'runtime, formats', folders: ['runtime', 'format'] },
  { name: 'model, tokenizer, reports', folders: ['model', 'tokenizer', 'report'] },
  { name: 'checkpoint loading', folders: ['checkpoint'] },
  { name: 'decoding core, training text', folders: ['decode', 'data'] },
  { name: 'PPD', folders: ['ppd'] },
  { name: 'speculative decoding', folders: ['spec'] },
  { name: 'generation, evaluation, training', folders: ['generate', 'eval', 'train'] },
  { name: 'the browser app (the server bundles and serves it)', folders: ['browser'] },
  { name: 'applications', folders: ['calibrate', 'server'] },
  { name: 'command line', folders: ['cli'] },
];

module.exports = { LAYERS };
