/** Sleeps that end early when their owner stops, so a stop never waits out a retry backoff. */
export class StoppableSleep {
  #stopped = false;
  readonly #waking = new Set<() => void>();

  get stopped(): boolean {
    return this.#stopped;
  }

  /** Resolves after `ms`, or at once when stop() is (or was) called. */
  sleep(ms: number): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(t);
        this.#waking.delete(wake);
        resolve();
      };
      const t = setTimeout(wake, ms);
      this.#waking.add(wake);
    });
  }

  stop(): void {
    this.#stopped = true;
    for (const wake of [...this.#waking]) wake();
  }
}
