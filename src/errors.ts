/**
 * Typed errors that reach the user as one clear line.
 *
 * Every error ppd raises on bad input is a PpdError: its message already names the file, field
 * or value at fault, so the CLI prints `error: <message>` and exits non-zero without a stack
 * trace. Anything that is not a PpdError is a bug and keeps its stack.
 */

export class PpdError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** A file on disk is missing, unreadable or malformed (JSON, safetensors, ONNX, ...). */
export class FormatError extends PpdError {
  constructor(readonly file: string, detail: string) {
    super(`${file}: ${detail}`);
  }
}

/** A model's configuration or weights do not fit what ppd supports or what the config says. */
export class ModelError extends PpdError {}

/** A caller passed an argument that cannot be used (empty prompt, id out of vocabulary, flag). */
export class InputError extends PpdError {}

/**
 * How a command-line program (the `ppd` CLI, scripts/, benchmarks) ends on an error: a PpdError
 * becomes one `error: <message>` line on stderr and exit code 1, at once (an open model or
 * session would otherwise keep the process alive); anything else is a bug, rethrown with its stack.
 */
export function exitOnPpdError(error: unknown): never {
  if (!(error instanceof PpdError)) throw error;
  process.stderr.write(`error: ${error.message}\n`);
  process.exit(1);
}
