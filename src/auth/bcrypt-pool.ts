import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

/**
 * bcrypt compares in worker threads. bcryptjs is pure JavaScript and slow on purpose (tens to hundreds of
 * ms per compare); run on the event loop (compareSync, or its async API, which still runs 100 ms slices)
 * it stalls every other request while someone guesses passwords. The queue is bounded: when it is full,
 * compare() rejects with PoolBusyError instead of letting waiting work (and memory) grow without limit.
 */
export class PoolBusyError extends Error {
  constructor() {
    super('bcrypt pool busy');
    this.name = 'PoolBusyError';
  }
}

export interface BcryptPoolOptions {
  /** Worker threads. Default: one per core but one, at least 1, at most 4. */
  size?: number;
  /** Compares waiting for a worker beyond those running. Default 32 per worker. */
  maxQueued?: number;
}

interface Job {
  password: string;
  hash: string;
  resolve: (ok: boolean) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  job: Job | undefined;
  dead: boolean;
}

/** Compares with bcryptjs's synchronous compare inside the worker; malformed hashes compare false. */
const WORKER_SOURCE = (bcryptUrl: string): string => `
import { parentPort } from 'node:worker_threads';
import bcrypt from ${JSON.stringify(bcryptUrl)};
parentPort.on('message', ({ password, hash }) => {
  let ok = false;
  try { ok = bcrypt.compareSync(password, hash); } catch { ok = false; }
  parentPort.postMessage(ok);
});
`;

export class BcryptPool {
  private readonly size: number;
  private readonly maxQueued: number;
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private closed = false;

  constructor(options: BcryptPoolOptions = {}) {
    this.size = Math.max(1, options.size ?? Math.min(4, availableParallelism() - 1));
    this.maxQueued = options.maxQueued ?? 32 * this.size;
  }

  /** Resolves whether `password` matches the bcrypt `hash`; rejects with PoolBusyError when the queue is full. */
  compare(password: string, hash: string): Promise<boolean> {
    if (this.closed) return Promise.reject(new Error('bcrypt pool closed'));
    const idle = this.slots.find((s) => !s.job);
    if (!idle && this.slots.length >= this.size && this.queue.length >= this.maxQueued) return Promise.reject(new PoolBusyError());
    return new Promise<boolean>((resolve, reject) => {
      const job: Job = { password, hash, resolve, reject };
      if (idle) this.run(idle, job);
      else if (this.slots.length < this.size) this.run(this.spawn(), job);
      else this.queue.push(job);
    });
  }

  /** Compares running or queued now (for tests and metrics). */
  get pending(): number {
    return this.queue.length + this.slots.filter((s) => s.job).length;
  }

  async close(): Promise<void> {
    this.closed = true;
    const error = new Error('bcrypt pool closed');
    for (const job of this.queue.splice(0)) job.reject(error);
    const slots = this.slots.splice(0);
    for (const s of slots) s.job?.reject(error);
    await Promise.all(slots.map((s) => s.worker.terminate().catch(() => undefined)));
  }

  private spawn(): Slot {
    const source = WORKER_SOURCE(import.meta.resolve('bcryptjs'));
    // execArgv []: no loaders or flags of the parent (a test runner's TypeScript hooks) in the worker.
    const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(source)}`), {
      execArgv: [],
      resourceLimits: { maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 8 },
    });
    const slot: Slot = { worker, job: undefined, dead: false };
    // Idle workers must not keep a stopping process alive.
    worker.unref();
    worker.on('message', (ok: unknown) => {
      const job = slot.job;
      slot.job = undefined;
      job?.resolve(ok === true);
      this.next(slot);
    });
    const fail = (e: Error) => {
      if (slot.dead) return;
      slot.dead = true;
      const i = this.slots.indexOf(slot);
      if (i >= 0) this.slots.splice(i, 1);
      slot.job?.reject(e);
      slot.job = undefined;
      // A replacement worker takes what is queued.
      const queued = this.queue.shift();
      if (queued && !this.closed) this.run(this.spawn(), queued);
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`bcrypt worker exited (${code})`)));
    this.slots.push(slot);
    return slot;
  }

  private run(slot: Slot, job: Job): void {
    slot.job = job;
    slot.worker.postMessage({ password: job.password, hash: job.hash });
  }

  private next(slot: Slot): void {
    const job = this.queue.shift();
    if (job) this.run(slot, job);
  }
}
