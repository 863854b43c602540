/**
 * bench:serve's clients on a worker thread of their own (runClients in client.ts starts it). The
 * servers under test run in the benchmark's main thread, where a forward holds the event loop
 * until it ends: clients there would read each chunk only after the server's next forward, and
 * their own work would count as the server's. On this thread they read as an outside client does.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { streamCompletion, type ClientsJob, type ClientOutcome, type ClientsRun } from './client.ts';

const job = workerData as ClientsJob;
const start = performance.now();
const deadline = start + job.seconds * 1000;

async function client(c: number): Promise<ClientOutcome[]> {
  const outcomes: ClientOutcome[] = [];
  for (let n = 0; performance.now() < deadline; n++) {
    const body = (c * 3 + n) % job.bodies.length;
    outcomes.push({ ...(await streamCompletion(job.url, job.bodies[body]!)), body });
  }
  return outcomes;
}

const outcomes = (await Promise.all(Array.from({ length: job.clients }, (_, c) => client(c)))).flat();
parentPort!.postMessage({ outcomes, wallSeconds: (performance.now() - start) / 1000 } satisfies ClientsRun);
