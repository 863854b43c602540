/**
 * Counts the tokens of corpus split files under a tokenizer, as pretraining streams them (each
 * document as BOS + its tokens + EOS, src/data/tokenize.ts), and the UTF-8 bytes per token of the
 * documents' text. The streams are cached in `--cache` under the key `ppd pretrain` uses, so
 * copying a cached file into a pretraining run folder spares that run the tokenising.
 *
 *   npx tsx scripts/count-tokens.ts --tokenizer models/tokenizer-code-8k data/code-corpus/{train,valid,test}.txt
 *     [--cache DIR] [--json FILE]
 */
import { join } from 'node:path';
import { Command } from 'commander';
import { documentsOf, cachedTokenStream } from '../src/data/tokenize.ts';
import { exitOnPpdError } from '../src/errors.ts';
import { writeJsonAtomic } from '../src/format/atomic.ts';
import { openForReading } from '../src/format/file-io.ts';
import { readJsonObject, readTextFile } from '../src/format/text-file.ts';
import { Progress } from '../src/report/progress.ts';
import { Tokenizer } from '../src/tokenizer/tokenizer.ts';

interface Flags {
  tokenizer: string;
  cache: string;
  json?: string;
}

function main(files: string[], flags: Flags): void {
  const tokenizerFile = join(flags.tokenizer, 'tokenizer.json');
  const tokenizer = Tokenizer.fromFile(openForReading(tokenizerFile), readJsonObject(join(flags.tokenizer, 'tokenizer_config.json')));
  const tokenizerKey = readTextFile(tokenizerFile);
  const rows = files.map((file) => {
    const text = readTextFile(file);
    const documents = documentsOf(text);
    const t0 = performance.now();
    let bar: Progress | undefined;
    const ids = cachedTokenStream(tokenizer, tokenizerKey, text, flags.cache, (done, total) => {
      bar ??= new Progress(`tokenising ${file}`, total, 'docs');
      bar.update(done);
    });
    bar?.stop();
    const bytes = documents.reduce((n, doc) => n + Buffer.byteLength(doc, 'utf8'), 0);
    const textTokens = ids.length - 2 * documents.length; // without each document's BOS and EOS
    const row = {
      file,
      documents: documents.length,
      bytes,
      tokens: ids.length,
      textTokens,
      bytesPerToken: Number((bytes / Math.max(1, textTokens)).toFixed(3)),
    };
    // The time is the tokenising's only on a cache miss, so it is shown, not recorded.
    process.stdout.write(
      `${file}: ${row.documents} documents, ${(bytes / 1e6).toFixed(2)} MB, ${ids.length} tokens in the stream ` +
        `(${textTokens} of text, ${row.bytesPerToken} bytes/token) in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
    );
    return row;
  });
  if (flags.json) writeJsonAtomic(flags.json, { tokenizer: flags.tokenizer, files: rows });
}

new Command('count-tokens')
  .description('count the tokens of corpus split files under a tokenizer')
  .argument('<files...>', 'split files (documents separated by <|endoftext|> lines) or plain text')
  .requiredOption('--tokenizer <dir>', 'folder with tokenizer.json and tokenizer_config.json')
  .option('--cache <dir>', 'where token streams are cached', '.cache/tokens')
  .option('--json <file>', 'also write the counts as JSON')
  .configureOutput({ outputError: (text, write) => write(text.split('\n')[0] + '\n') })
  .action((files: string[], flags: Flags) => {
    try {
      main(files, flags);
    } catch (err) {
      exitOnPpdError(err);
    }
  })
  .parse();
