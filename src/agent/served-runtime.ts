/**
 * The runtime the agent serves, replaceable while it runs: a release switch (src/release, A/B
 * slots) loads the new models beside the old ones, then swaps. Each request holds the runtime it
 * started with until it ends; the old runtime is released only once its last request finished,
 * so a switch drops no request in flight.
 */
import type { GuardedModel } from '../runtime/index.ts';

export class ServedRuntime {
  private active: GuardedModel;
  private readonly users = new Map<GuardedModel, number>();
  private readonly drained = new Map<GuardedModel, () => void>();
  private released = false;

  constructor(initial: GuardedModel) {
    this.active = initial;
  }

  get current(): GuardedModel {
    return this.active;
  }

  /** Run `fn` on the current runtime; a swap meanwhile waits for it before releasing that runtime. */
  async use<T>(fn: (runtime: GuardedModel) => Promise<T>): Promise<T> {
    const r = this.active;
    this.users.set(r, (this.users.get(r) ?? 0) + 1);
    try {
      return await fn(r);
    } finally {
      const left = this.users.get(r)! - 1;
      if (left > 0) this.users.set(r, left);
      else {
        this.users.delete(r);
        this.drained.get(r)?.();
      }
    }
  }

  /** Serve `next` from now on; resolves once the previous runtime's requests ended and it is released. */
  async swap(next: GuardedModel): Promise<void> {
    if (this.released) {
      await next.release();
      return;
    }
    const old = this.active;
    this.active = next;
    if (this.users.has(old)) await new Promise<void>((resolve) => this.drained.set(old, resolve));
    this.drained.delete(old);
    await old.release();
  }

  /** Release the current runtime (shutdown, tamper lock); later swaps release what they are given. */
  async release(): Promise<void> {
    this.released = true;
    await this.active.release();
  }
}
