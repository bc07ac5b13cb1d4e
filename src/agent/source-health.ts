/**
 * Is the lease source reachable? One record of it, fed by everything that talks to the
 * source (config wait, lease keeper, lease sync): /healthz, /readyz and `status` read it.
 * It also holds what the agent waits for when the source answers but cannot give it yet
 * (our Node has no podCIDR): said once in the log, named at /readyz until it is over.
 */
import { errorText, type Logger } from "../log.ts";
import type { AgentMetrics } from "../status/status.ts";

export class SourceHealth {
  /** "connecting" until the first answer; "degraded" while calls fail (the datapath keeps what it has). */
  state: "ok" | "degraded" | "connecting" = "connecting";
  lastError: string | null = null;
  /** What the agent waits for from the source, or null. */
  waitingFor: string | null = null;

  constructor(
    readonly description: string,
    private readonly log: Logger,
    private readonly metrics: AgentMetrics,
  ) {}

  failed(e: unknown): void {
    this.metrics.registryErrors++;
    this.state = "degraded";
    this.lastError = errorText(e);
  }

  ok(): void {
    if (this.state !== "ok") this.log.info("registry reachable", { registry: this.description });
    this.state = "ok";
    this.lastError = null;
  }

  /**
   * The source answered, but without what we need yet; `why` is logged once (until it
   * changes, or the wait is over), whatever else talks to the source meanwhile.
   */
  waiting(why: string): void {
    this.ok();
    if (this.waitingFor !== why) this.log.warn(why, { registry: this.description });
    this.waitingFor = why;
  }

  /** What we waited for came. */
  waited(): void {
    this.waitingFor = null;
  }
}
