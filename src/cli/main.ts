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
import { perplexityCommand } from './perplexity.ts';
import { evalPromptsCommand, trainPromptsCommand, treeBuildCommand } from './prompts.ts';
import { pretrainCommand } from './pretrain.ts';
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
  .option('--ppd <adapter>', 'decode with Parallel Prompt Decoding, using this adapter folder')
  .option('--trees <file>', 'tree set for --ppd (default: trees.json in the adapter folder)')
  .option('--verification <kind>', 'with --ppd and sampling: rejection (keeps the model distribution) or typical', choice(['rejection', 'typical'] as const))
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
  .command('pretrain')
  .description('train a model from scratch on a text corpus (resumable)')
  .requiredOption('--train <file>', 'training text (a corpus split file or plain text)')
  .requiredOption('--valid <file>', 'held-out text for periodic evaluation')
  .requiredOption('--config <file>', 'config.json of the model to train (tie_word_embeddings: true)')
  .requiredOption('--tokenizer <dir>', 'folder with tokenizer.json and tokenizer_config.json')
  .requiredOption('--run <dir>', 'folder for checkpoints and cached token streams')
  .requiredOption('--out <dir>', 'folder to write the trained model to')
  .option('--steps <n>', 'optimiser steps', integer(1), 1000)
  .option('--seq-len <n>', 'tokens per training window', integer(2, 65536), 128)
  .option('--batch <n>', 'windows per micro-batch', integer(1, 4096), 4)
  .option('--accum <n>', 'micro-batches per step', integer(1, 4096), 1)
  .option('--lr <x>', 'peak learning rate', number(0, 10, true), 3e-3)
  .option('--warmup <n>', 'warm-up steps', integer(0), 100)
  .option('--min-lr-ratio <x>', 'cosine floor as a fraction of the peak', number(0, 1), 0.1)
  .option('--weight-decay <x>', 'AdamW weight decay', number(0, 10), 0.1)
  .option('--clip <x>', 'gradient clipping norm (0 = off)', number(0, 1e9), 1)
  .option('--seed <s>', 'seed for initialisation and batches', integer(0), 0)
  .option('--eval-every <n>', 'steps between held-out evaluations and checkpoints', integer(1), 100)
  .option('--eval-windows <n>', 'held-out windows per evaluation', integer(1), 32)
  .option('--minutes <m>', 'stop (resumably) after this much time', number(0, 1e6, true))
  .option('--resume', 'continue from the newest checkpoint in --run')
  .option('--dtype <type>', 'stored dtype of the exported model', choice(['f32', 'f16', 'bf16'] as const), 'f32')
  .addOption(threads())
  .action(pretrainCommand);

program
  .command('perplexity')
  .description('held-out perplexity of a model on a text file (sliding window)')
  .requiredOption('--model <dir>', 'Hugging Face model folder')
  .requiredOption('--file <text>', 'text to score (a corpus split file is scored per document)')
  .option('--window <n>', 'tokens per window (default min(512, context))', integer(2))
  .option('--stride <n>', 'new tokens scored per window (default window/2)', integer(1))
  .option('--max-tokens <n>', 'score only the first n tokens', integer(2))
  .option('--json', 'print JSON')
  .addOption(threads())
  .action(perplexityCommand);

program
  .command('train-prompts')
  .description('train PPD prompt tokens for a model by self-distillation, then measure them and build trees')
  .requiredOption('--model <dir>', 'base model folder')
  .requiredOption('--train <file>', 'training text (corpus split file or plain text)')
  .requiredOption('--valid <file>', 'held-out text')
  .requiredOption('--out <dir>', 'adapter folder to write')
  .option('--prompt-tokens <n>', 'N prompt tokens', integer(1, 16), 3)
  .option('--virtual-tokens <n>', 'V virtual tokens per prompt token', integer(1, 16), 1)
  .option('--attention <kind>', 'attention among prompt tokens', choice(['ensemble', 'decoder', 'encoder'] as const), 'ensemble')
  .option('--init-text <text>', 'text whose embeddings initialise the prompt tokens', 'Next 2 word Next 3 word Next 4 word')
  .option('--examples <n>', 'training examples (random cut points)', integer(1), 2000)
  .option('--valid-examples <n>', 'held-out examples', integer(1), 200)
  .option('--prefix-length <n>', 'tokens before each cut point', integer(1, 4096), 64)
  .option('--top-k <n>', 'teacher logits kept per position', integer(1, 1000), 32)
  .option('--steps <n>', 'optimiser steps', integer(1), 600)
  .option('--batch <n>', 'examples per step', integer(1), 8)
  .option('--lr <x>', 'peak learning rate (cosine schedule)', number(0, 10, true), 1e-2)
  .option('--seed <s>', 'seed', integer(0), 0)
  .option('--budget <n>', 'input rows per step for the default trees', integer(1, 4096), 16)
  .addOption(threads())
  .action(trainPromptsCommand);

program
  .command('eval-prompts')
  .description('top-1..top-10 accuracy of each prompt token on held-out text')
  .requiredOption('--model <dir>', 'base model folder')
  .requiredOption('--ppd <adapter>', 'adapter folder')
  .requiredOption('--data <file>', 'held-out text')
  .option('--examples <n>', 'examples', integer(1), 200)
  .option('--prefix-length <n>', 'tokens before each cut point', integer(1, 4096), 64)
  .option('--seed <s>', 'seed', integer(0), 1)
  .option('--json', 'print JSON')
  .addOption(threads())
  .action(evalPromptsCommand);

program
  .command('tree')
  .description('candidate trees')
  .command('build')
  .description('build the dynamic tree set for a budget of step input rows from an accuracy table')
  .requiredOption('--accuracies <file>', 'accuracy.json from train-prompts or eval-prompts')
  .requiredOption('--budget <n>', 'input rows per step', integer(1, 4096))
  .option('--max-rank <n>', 'ranks considered per position', integer(1, 1000))
  .option('--out <file>', 'where to write the tree set (default: trees.json beside the table)')
  .action(treeBuildCommand);

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
