/**
 * The `ppd` command line: one subcommand per job, each in its own file. Errors that users cause
 * (PpdError, bad flags) end as one line on stderr and exit code 1; anything else is a bug and
 * keeps its stack trace.
 */
import { Command, Option } from 'commander';
import { PpdError } from '../errors.ts';
import { demoCommand } from './demo.ts';
import { generateCommand } from './generate.ts';
import { initCommand } from './init.ts';
import { infoCommand, logitsCommand } from './inspect.ts';
import { choice, collect, idList, integer, number } from './options.ts';

const program = new Command('ppd')
  .description('Parallel Prompt Decoding for LLaMA-family models, on ONNX Runtime')
  .configureOutput({ outputError: (text, write) => write(text.split('\n')[0] + '\n') });

const threads = () => new Option('--threads <n>', 'ONNX Runtime intra-op threads (default: all cores)').argParser(integer(1, 1024));

program
  .command('generate')
  .description('generate text from a prompt, streamed to stdout')
  .requiredOption('--model <dir>', 'Hugging Face model folder')
  .requiredOption('--prompt <text>', 'prompt text (with --chat: the user message)')
  .option('--max-tokens <n>', 'most new tokens', integer(1, 1_000_000), 128)
  .option('--temperature <t>', 'sampling temperature; 0 = greedy', number(0, 100), 0)
  .option('--top-p <p>', 'nucleus sampling mass (1 = off)', number(0, 1, true), 1)
  .option('--top-k <k>', 'keep the k most likely tokens (0 = off)', integer(0, 1_000_000), 0)
  .option('--seed <s>', 'sampling seed', integer(-(2 ** 53) + 1), 0)
  .option('--stop <text>', 'stop string (repeatable)', collect)
  .option('--chat', 'wrap the prompt in the model chat template as a user message')
  .option('--json', 'print one JSON object (text, ids, stats) instead of streaming')
  .addOption(threads())
  .action(generateCommand);

program
  .command('logits')
  .description('print the logits of every position for the given token ids')
  .requiredOption('--model <dir>', 'Hugging Face model folder')
  .requiredOption('--ids <ids>', 'comma-separated token ids, e.g. 1,2,3', idList)
  .option('--json', 'print {"logits": [[...], ...]}')
  .addOption(threads())
  .action(logitsCommand);

program
  .command('info')
  .description('describe a model folder')
  .requiredOption('--model <dir>', 'Hugging Face model folder')
  .option('--json', 'print JSON')
  .action(infoCommand);

program
  .command('init')
  .description('write a model folder')
  .option('--random', 'random weights (the only kind for now)')
  .requiredOption('--config <file>', 'config.json giving the shape')
  .requiredOption('--out <dir>', 'folder to write')
  .option('--seed <s>', 'random seed', integer(0), 0)
  .option('--dtype <type>', 'stored dtype', choice(['f32', 'f16', 'bf16'] as const), 'f32')
  .action(initCommand);

program
  .command('demo')
  .description('the main job on the bundled model (what npm start runs)')
  .option('--max-tokens <n>', 'most new tokens', integer(1, 100_000), 64)
  .action(demoCommand);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof PpdError) {
    process.stderr.write(`error: ${error.message}\n`);
    process.exit(1);
  }
  throw error;
}
