/**
 * Doctor's latest report for the page and /metrics, without making them wait: the
 * agent's source answers at once once its first run has finished; before that (the
 * checks and probes take seconds) a request gets the previous report or none.
 */
import type { DoctorReport } from "../doctor/report.ts";

/** How long a page or a scrape waits for a report before going on without it. */
const WAIT_MS = 25;

export class DoctorView {
  #last: DoctorReport | null = null;
  #pending: Promise<void> | null = null;

  constructor(private readonly source?: () => Promise<DoctorReport>) {}

  /** The newest report the source has, or null when it has none yet (or no source). */
  async current(): Promise<DoctorReport | null> {
    if (!this.source) return null;
    if (!this.#pending)
      this.#pending = this.source()
        .then((r) => {
          this.#last = r;
        })
        .catch(() => {})
        .finally(() => {
          this.#pending = null;
        });
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.#pending, new Promise<void>((r) => (timer = setTimeout(r, WAIT_MS)))]);
    clearTimeout(timer);
    return this.#last;
  }
}
