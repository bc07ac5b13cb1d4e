/**
 * Is the lease source reachable? One record of it, fed by everything that talks to the
 * source (config wait, lease keeper, lease sync): /healthz, /readyz and `status` read it.
 */
import { errorText, type Logger } from "../log.ts";
import type { AgentMetrics } from "../status/status.ts";

export class SourceHealth {
  /** "connecting" until the first answer; "degraded" while calls fail (the datapath keeps what it has). */
  state: "ok" | "degraded" | "connecting" = "connecting";
  lastError: string | null = null;

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
}
