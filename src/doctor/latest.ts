/**
 * The latest doctor result inside the agent, for GET /v1/doctor: runs the checks
 * (never --fix) once at start and then again `everyMs()` after each run ends, one run at
 * a time, and keeps the last report. A request never waits for a run unless none has
 * finished yet.
 */
import type { DoctorReport } from "./report.ts";

export class LatestDoctor {
  #latest: DoctorReport | null = null;
  #running: Promise<DoctorReport> | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #stopped = false;
  /** The last run's failure (the checks themselves never throw; gathering might). */
  lastError: string | null = null;

  constructor(
    private readonly run: () => Promise<DoctorReport>,
    /** The wait after a run before the next one (ms); asked again after every run. */
    private readonly everyMs: () => number = () => 60_000,
  ) {}

  start(): void {
    if (this.#timer || this.#stopped) return;
    const next = () => {
      this.#timer = setTimeout(() => {
        void this.refresh()
          .catch(() => {})
          .finally(() => {
            if (!this.#stopped) next();
          });
      }, this.everyMs());
      this.#timer.unref?.();
    };
    void this.refresh()
      .catch(() => {})
      .finally(() => {
        if (!this.#stopped) next();
      });
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** Runs the checks now, or joins the run in progress. */
  refresh(): Promise<DoctorReport> {
    if (this.#running) return this.#running;
    const p = this.run()
      .then((r) => {
        this.#latest = r;
        this.lastError = null;
        return r;
      })
      .catch((e: unknown) => {
        this.lastError = (e as Error).message;
        throw e;
      })
      .finally(() => {
        this.#running = null;
      });
    this.#running = p;
    return p;
  }

  /** The last finished report; waits for the first run when there is none yet. */
  async latest(): Promise<DoctorReport> {
    return this.#latest ?? this.refresh();
  }
}
