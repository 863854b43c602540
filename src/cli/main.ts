/**
 * The `ppd` command line: one subcommand per job, each in its own file. Errors that users cause
 * (PpdError, bad flags) end as one line on stderr and exit code 1; anything else is a bug and
 * keeps its stack trace.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { exitOnPpdError } from '../errors.ts';
import { END_OF_TEXT } from '../data/corpus.ts';
import { DEFAULT_MEASURED_MARGIN } from '../ppd/tree-size-choice.ts';
import { calibrateCommand, integerList } from './calibrate.ts';
import { convertAdapterCommand } from './adapter.ts';
import { CONVERT_TYPES, convertCommand } from './convert.ts';
import { demoCommand } from './demo.ts';
import { generateCommand } from './generate.ts';
import { initCommand } from './init.ts';
import { perplexityCommand } from './perplexity.ts';
import { evalPromptsCommand, trainPromptsCommand, treeBuildCommand, treeConvertCommand } from './prompts.ts';
import { pretrainCommand } from './pretrain.ts';
import { infoCommand, logitsCommand } from './inspect.ts';
import { DEFAULT_NGRAM_GENERATE, ngramBuildCommand, ngramInfoCommand } from './ngram.ts';
import { NGRAM_MAX_CONTEXT } from '../ppd/ngram-table.ts';
import { choice, collect, hostList, idList, integer, number, threadCount } from './options.ts';
import { QUANTIZE_MODES } from '../format/quantize.ts';
import { PROMPT_HEAD_KINDS } from '../model/prompt-head.ts';
import { DEFAULT_DRAFT_TOKENS } from '../spec/setup.ts';
import { DEFAULT_LOOKUP_TOKENS, DEFAULT_NGRAM_TOKENS } from '../ppd/setup.ts';

const program = new Command('ppd')
  .description('Parallel Prompt Decoding for LLaMA-family models, on ONNX Runtime')
  .configureOutput({ outputError: (text, write) => write(text.split('\n')[0] + '\n') });

const threads = () => new Option('--threads <n>', 'ONNX Runtime intra-op threads, at most this machine\'s logical CPUs (default: all cores)').argParser(threadCount);
const quantize = () =>
  new Option('--quantize <mode>', 'keep linear weights in 8- or 4-bit blocks of 32 (like GGUF Q8_0/Q4_0; q4 keeps the LM head at 8 bits); weights a .gguf stores as Q8_0/Q4_0 stay as stored').argParser(choice(QUANTIZE_MODES));
const lookup = () =>
  new Option(
    '--lookup <n>',
    `with --ppd: most tokens per step guessed by context lookup (the tokens that followed the last few tokens where they occurred before), verified beside the tree; 0 = off (default: what \`ppd calibrate\` measured best here, else ${DEFAULT_LOOKUP_TOKENS})`,
  ).argParser(integer(0, 64));
// How --train/--valid/--data/--file texts divide into documents (data/tokenize.ts; README.md, "Text files").
const TEXT_FILES_HELP = `
Text files: a file containing ${END_OF_TEXT} is a split file, its documents separated by it
(ppd's corpora put it on a line of its own between blank lines; a line of its own, or inline as
in GPT-2-style dumps, works too). Any other text is ONE document (ppd says so in a note). Each
document is tokenized as BOS + text + EOS.`;
// Where prompts come from in a --data file of held-out text (calibrate).
const PROMPT_FILES_HELP = `
Prompt text (--data): prompts are the openings of documents spread evenly over a split file (see
\`ppd perplexity --help\`); in plain text, of its paragraphs (blocks between blank lines).`;
const ngram = () =>
  new Option(
    '--ngram <file|off>',
    'with --ppd: a static n-gram table (`ppd ngram build`) whose guesses, the continuations the model itself wrote most often after the last few tokens, are verified beside the tree where it knows a longer context than the context lookup matches; off = none (default: the adapter folder\'s ngram.bin when it has one, unless this machine\'s calibration chose plain decoding)',
  );
const ngramTokens = () =>
  new Option('--ngram-tokens <n>', `with --ppd: most tokens per step the n-gram table may guess; 0 = off (default ${DEFAULT_NGRAM_TOKENS})`).argParser(integer(0, 64));
// Commands that differentiate through the model (pretrain, train-prompts, and eval-prompts,
// whose prompt graph is a gradient graph) keep f32 weights: they refuse --quantize in one line.
/** The cut points of distillation examples, shared by train-prompts and eval-prompts. */
// Teacher sequences (train/distill.ts) are read the same way by train-prompts and eval-prompts.
const prefixLength = () => new Option('--prefix-length <n>', 'text tokens of each teacher sequence, before the continuation').argParser(integer(1, 4096)).default(64);
const generated = () => new Option('--generated <n>', "tokens of the model's greedy continuation in each teacher sequence; every cut point in it is an example").argParser(integer(2, 4096)).default(128);
const noQuantize = () =>
  new Option('--quantize <mode>').hideHelp().argParser(() => {
    throw new InvalidArgumentError('this command differentiates through the model, whose weights stay f32; --quantize is for generate, serve, perplexity, logits and calibrate');
  });

program
  .command('generate')
  .description('generate text from a prompt, streamed to stdout')
  .requiredOption('--model <path>', 'Hugging Face model folder or .gguf file')
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
  .option('--trees <file>', 'tree set for --ppd (default: this machine\'s profile from `ppd calibrate`, else trees.json in the adapter folder)')
  .option('--verification <kind>', 'with --ppd and sampling: coupled (default: the text plain sampling with the same seed gives), rejection (also keeps the model distribution) or typical', choice(['coupled', 'rejection', 'typical'] as const))
  .addOption(lookup())
  .addOption(ngram())
  .addOption(ngramTokens())
  .option('--draft <path>', 'speculative decoding: this smaller model (folder or .gguf, same tokenizer) drafts, --model verifies')
  .option('--draft-ppd <adapter>', 'with --draft: the draft drafts with Parallel Prompt Decoding, using this adapter folder')
  .option('--draft-tokens <k>', 'with --draft: most tokens drafted per step (adapts within 1..k)', integer(1, 64), DEFAULT_DRAFT_TOKENS)
  .addOption(threads())
  .addOption(quantize())
  .action(generateCommand);

program
  .command('serve')
  .description('serve an OpenAI-style HTTP API and a chat page (SIGTERM finishes requests in progress, then exits)')
  .requiredOption('--model <path>', 'Hugging Face model folder or .gguf file')
  .option('--ppd <adapter>', 'decode with Parallel Prompt Decoding using this adapter folder (requests may send "ppd": false)')
  .option('--trees <file>', 'tree set for --ppd (default: this machine\'s profile from `ppd calibrate`, else trees.json in the adapter folder)')
  .option('--verification <kind>', 'with --ppd and sampling: coupled (default: the text plain sampling with the same seed gives), rejection (also keeps the model distribution) or typical', choice(['coupled', 'rejection', 'typical'] as const))
  .addOption(lookup())
  .addOption(ngram())
  .addOption(ngramTokens())
  .option('--host <address>', 'address to listen on (beyond loopback, set --api-key)', '127.0.0.1')
  .option('--port <n>', 'port to listen on (0: any free port)', integer(0, 65535), 8080)
  .addOption(new Option('--api-key <key>', 'require "Authorization: Bearer <key>" on /v1/* and /metrics').env('PPD_API_KEY'))
  .addOption(
    new Option('--allowed-hosts <names>', 'comma-separated host names clients may address besides IP addresses, localhost and --host (DNS-rebinding defence); * = any')
      .env('PPD_ALLOWED_HOSTS')
      .argParser(hostList),
  )
  .option('--no-batching', 'run each generation on forwards of its own, --concurrency at once (default: concurrent generations share forwards)')
  .option('--concurrency <n>', 'generations at once: with batching the sequences of one batch (default 8), without it side by side (default 1)', integer(1, 64))
  .option('--queue <n>', 'requests that may wait for a slot; more get 429', integer(0, 10_000), 8)
  .option('--timeout <s>', 'seconds a request may take, waiting included', number(0, 86_400, true), 600)
  .option('--max-tokens <n>', 'new tokens when a request gives no max_tokens', integer(1, 1_000_000), 256)
  .option('--body-limit <bytes>', 'largest request body', integer(1024, 1 << 30), 1 << 20)
  .addOption(threads())
  .addOption(quantize())
  // Loaded on use: the server's libraries (fastify, zod, prom-client) would add a third of a
  // second to the start of every other command.
  .action(async (flags) => (await import('./serve.ts')).serveCommand(flags));

program
  .command('logits')
  .description('print the logits of every position for the given token ids')
  .requiredOption('--model <path>', 'Hugging Face model folder or .gguf file')
  .requiredOption('--ids <ids>', 'comma-separated token ids, e.g. 1,2,3', idList)
  .option('--json', 'print {"logits": [[...], ...]}')
  .addOption(threads())
  .addOption(quantize())
  .action(logitsCommand);

program
  .command('info')
  .description('describe a model folder or .gguf file')
  .requiredOption('--model <path>', 'Hugging Face model folder or .gguf file')
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
  .command('convert')
  .description('write a model as a GGUF file (for llama.cpp) or as a Hugging Face folder')
  .requiredOption('--model <path>', 'Hugging Face model folder or .gguf file to read')
  .requiredOption('--to <format>', 'gguf or hf', choice(['gguf', 'hf'] as const))
  .option('--type <type>', 'stored type: gguf takes f32, f16, bf16 or llama-quantize\'s q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k_s|m|l, q4_k_s|m, q5_k_s|m, q6_k (default f16); hf takes f32, f16, bf16 (default f32)', choice(CONVERT_TYPES))
  .requiredOption('--out <path>', '.gguf file (--to gguf) or folder (--to hf) to write')
  .action(convertCommand);

program
  .command('convert-adapter')
  .description("write a prompt-token adapter in the PPD reference implementation's format (a PEFT prompt-tuning folder) or in ppd's")
  .requiredOption('--ppd <dir>', "adapter folder to read (ppd's, or the reference's)")
  .requiredOption('--model <path>', 'the base model it was trained for (checked; --to peft also records its shape)')
  .requiredOption('--to <format>', 'peft (the reference code loads it) or ppd', choice(['peft', 'ppd'] as const))
  .requiredOption('--out <dir>', 'folder to write')
  .option('--base-model-name <name>', 'base_model_name_or_path for --to peft, e.g. a Hugging Face id (default: the model folder\'s name)')
  .action(convertAdapterCommand);

program
  .command('pretrain')
  .description('train a model from scratch on a text corpus (resumable)')
  .addHelpText('after', TEXT_FILES_HELP)
  .requiredOption('--train <file>', 'training text (a split file or plain text: see below)')
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
  .option('--stop-at <step>', 'stop (resumably) once this step is done, e.g. to compare runs at equal budgets', integer(1))
  .option('--resume', 'continue from the newest checkpoint in --run')
  .option('--dtype <type>', 'stored dtype of the exported model', choice(['f32', 'f16', 'bf16'] as const), 'f32')
  .addOption(threads())
  .addOption(noQuantize())
  .action(pretrainCommand);

program
  .command('perplexity')
  .description('held-out perplexity of a model on a text file (sliding window)')
  .addHelpText('after', TEXT_FILES_HELP)
  .requiredOption('--model <path>', 'Hugging Face model folder or .gguf file')
  .requiredOption('--file <text>', 'text to score (a split file document by document, BOS + text + EOS each: see below)')
  .option('--window <n>', 'tokens per window (default min(512, context))', integer(2))
  .option('--stride <n>', 'new tokens scored per window (default window/2)', integer(1))
  .option('--max-tokens <n>', 'score only the first n tokens', integer(2))
  .option('--json', 'print JSON')
  .addOption(threads())
  .addOption(quantize())
  .action(perplexityCommand);

program
  .command('train-prompts')
  .description('train PPD prompt tokens for a model by self-distillation, then measure them and build trees')
  .addHelpText('after', TEXT_FILES_HELP)
  .requiredOption('--model <path>', 'base model folder or .gguf file')
  .requiredOption('--train <file>', 'training text (corpus split file or plain text)')
  .requiredOption('--valid <file>', 'held-out text')
  .requiredOption('--out <dir>', 'adapter folder to write')
  .option('--prompt-tokens <n>', 'N prompt tokens', integer(1, 16), 3)
  .option('--virtual-tokens <n>', 'Vt: virtual tokens per prompt token', integer(1, 16), 1)
  .option('--attention <kind>', 'attention among prompt tokens', choice(['ensemble', 'decoder', 'encoder'] as const), 'ensemble')
  .option('--init-text <text>', 'text whose embeddings initialise the prompt tokens', 'Next 2 word Next 3 word Next 4 word')
  .addOption(
    new Option('--head [kind]', 'train a prompt head too: a residual block per prompt token before the LM head; residual-parent also reads the state of the row the prompt tokens follow (docs/PROMPT-TOKENS.md)')
      .argParser(choice(PROMPT_HEAD_KINDS))
      .preset('residual'),
  )
  .option('--sequences <n>', 'teacher sequences to train on', integer(1), 2000)
  .option('--valid-sequences <n>', 'held-out teacher sequences (each gives --generated minus --prompt-tokens cut points)', integer(1), 64)
  .addOption(prefixLength())
  .addOption(generated())
  .option('--top-k <n>', 'teacher logits kept per position', integer(1, 1000), 32)
  .option('--steps <n>', 'optimiser steps', integer(1), 600)
  .option('--batch <n>', 'teacher sequences per step', integer(1), 4)
  .option('--lr <x>', 'peak learning rate (cosine schedule)', number(0, 10, true), 1e-2)
  .option('--seed <s>', 'seed', integer(0), 0)
  .option('--budget <n>', 'input rows per step for the default trees', integer(1, 4096), 16)
  .addOption(threads())
  .addOption(noQuantize())
  .action(trainPromptsCommand);

program
  .command('eval-prompts')
  .description('top-1..top-10 accuracy of each prompt token on held-out text')
  .addHelpText('after', TEXT_FILES_HELP)
  .requiredOption('--model <path>', 'base model folder or .gguf file')
  .requiredOption('--ppd <adapter>', 'adapter folder')
  .requiredOption('--data <file>', 'held-out text')
  .option('--sequences <n>', 'held-out teacher sequences (each gives --generated minus N cut points)', integer(1), 64)
  .addOption(prefixLength())
  .addOption(generated())
  .option('--seed <s>', 'seed', integer(0), 1)
  .option('--json', 'print JSON')
  .addOption(threads())
  .addOption(noQuantize())
  .action(evalPromptsCommand);

const tree = program.command('tree').description('candidate trees');
tree
  .command('build')
  .description('build the dynamic tree set for a budget of step input rows from an accuracy table')
  .requiredOption('--accuracies <file>', 'accuracy.json from train-prompts or eval-prompts')
  .requiredOption('--budget <n>', 'input rows per step', integer(1, 4096))
  .option('--max-rank <n>', 'ranks considered per position', integer(1, 1000))
  .option('--out <file>', 'where to write the tree set (default: trees.json beside the table)')
  .action(treeBuildCommand);
tree
  .command('convert')
  .description("convert the PPD reference implementation's sparse trees (a dynamic_sparse_trees_*.py dictionary, or its JSON) to a ppd tree set")
  .requiredOption('--from <file>', '.py file (or .json) holding {depth: [[path, accuracy, prompt tokens], ...]} dictionaries')
  .option('--name <name>', 'which dictionary of the file, e.g. dynamic_sparse_trees_105 (needed when it holds several)')
  .option('--adapter <dir>', "the adapter the trees are for (ppd's or the reference's PEFT folder): its prompt tokens, virtual tokens and attention, and the default --out DIR/trees.json")
  .option('--out <file>', 'where to write the tree set')
  .option('--prompt-tokens <n>', "the adapter's prompt tokens (default: the adapter's, else the deepest key)", integer(1, 64))
  .option('--virtual-tokens <n>', "virtual tokens per prompt token (default: the adapter's, else 1)", integer(1, 64))
  .option('--attention <kind>', "attention among prompt tokens (default: the adapter's, else ensemble)", choice(['ensemble', 'decoder', 'encoder'] as const))
  .action(treeConvertCommand);

const ngramCommand = program.command('ngram').description('static n-gram tables: guesses from the model\'s own generations, verified beside the tree');
ngramCommand
  .command('build')
  .description('count which tokens the model itself writes after each context of 1..4 tokens, from its greedy continuations of prompts cut from a text; resumable')
  .requiredOption('--model <path>', 'Hugging Face model folder or .gguf file')
  .option('--ppd <adapter>', 'the adapter folder: the table goes to ADAPTER/ngram.bin, and generations decode with the context lookup (same ids, faster)')
  .requiredOption('--data <file>', 'text to cut prompts from (a corpus split file or plain text; e.g. data/corpus/train.txt)')
  .option('--out <file>', 'where to write the table (default: ADAPTER/ngram.bin)')
  .option('--generate <n>', 'new tokens to generate in all', integer(1, 1_000_000_000), DEFAULT_NGRAM_GENERATE)
  .option('--length <n>', 'most new tokens per generation', integer(1, 1_000_000), 128)
  .option('--prompt-tokens <n>', 'most prompt tokens per generation', integer(1, 1_000_000), 64)
  .option('--seed <s>', 'which prompts are cut', integer(0), 0)
  .option('--max-ngram <n>', 'longest context counted (tokens)', integer(1, NGRAM_MAX_CONTEXT), 4)
  .option('--min-count <n>', 'contexts seen fewer times are left out', integer(1, 1_000_000), 2)
  .option('--top <n>', 'continuations kept per context', integer(1, 1000), 4)
  .option('--text', "also count the text's own n-grams (its token stream is cached in a cache/ folder beside the table)")
  .addOption(threads())
  .addOption(quantize())
  .action(ngramBuildCommand);
ngramCommand
  .command('info')
  .description('what an n-gram table holds and what it was built for')
  .requiredOption('--table <file>', 'the table, e.g. models/ppd-base/ppd/ngram.bin')
  .option('--json', 'print the header as JSON')
  .action(ngramInfoCommand);

program
  .command('calibrate')
  .description('pick the tree size for this machine: profile forward latency L(n), predict τ(n)/L(n), check on held-out prompts, write a hardware profile')
  .addHelpText('after', PROMPT_FILES_HELP)
  .requiredOption('--model <path>', 'base model folder or .gguf file')
  .requiredOption('--ppd <adapter>', 'adapter folder (with accuracy.json); the profile and report are written into it')
  .option('--max-n <n>', 'largest step size (input rows) to profile', integer(1, 4096), 256)
  .option('--contexts <list>', 'cache lengths to time each step size at (comma-separated)', integerList(0, 1_000_000), [64, 256])
  .option('--repeats <n>', 'timed rounds over every step size (median counts)', integer(1, 1000), 7)
  .option('--warmup <n>', 'untimed rounds first', integer(0, 100), 1)
  .option('--prompts <n>', 'held-out prompts for the end-to-end check (0 = skip it)', integer(0, 1000), 8)
  .option('--max-tokens <n>', 'new tokens per held-out generation', integer(1, 100_000), 64)
  .option('--gen-repeats <n>', 'timed generations per prompt and decoder (median counts)', integer(1, 100), 1)
  .option('--data <file>', 'held-out text for the check (default: test.txt of the corpus here made for the model\'s tokenizer: data/corpus, data/prose-corpus or data/code-corpus; other models must name theirs)')
  .option('--check-sizes <list>', 'step sizes to check end to end besides the chosen one and its neighbours', integerList(1, 4096))
  .option('--tolerance <share>', 'take the smallest n within this share of the best predicted speed', number(0, 0.5), 0)
  .option('--margin <share>', 'after the check: decode plainly unless a checked size beats plain by this share', number(0, 0.5), DEFAULT_MEASURED_MARGIN)
  .option('--lookup <n>', 'context-lookup tokens per step to check every size with too, and alone (0 = check prompt-token trees only); the best measured goes into the profile', integer(0, 64), DEFAULT_LOOKUP_TOKENS)
  .option('--no-ngram', 'do not check the adapter folder\'s n-gram table (default: every checked decoder runs with and without it, and it alone; the profile records the choice)')
  .option('--latency-model <path>', 'time L(n) on this model (folder or .gguf) instead (what-if: report only, no profile)')
  .option('--report <dir>', 'also write the report (JSON, Markdown, SVG) into this folder, e.g. docs')
  .addOption(threads())
  .addOption(quantize())
  .action(calibrateCommand);

program
  .command('demo')
  .description('the main job on the bundled model (what npm start runs)')
  .option('--max-tokens <n>', 'most new tokens', integer(1, 100_000), 64)
  .action(demoCommand);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  exitOnPpdError(error);
}
