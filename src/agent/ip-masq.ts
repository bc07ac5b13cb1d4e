/**
 * Keeps the --ip-masq rules in place: applied once our lease is known, checked every
 * few seconds and re-applied (with a log line) if someone removed them.
 */
import type { Cidr } from "../config/cidr.ts";
import { errorText, type Logger } from "../log.ts";
import { applyMasq, masqPresent } from "../net/masq.ts";

export class MasqKeeper {
  #timer: ReturnType<typeof setInterval> | null = null;
  #subnet: Cidr | null = null;
  #checking = false;
  reapplied = 0;

  constructor(
    private readonly network: Cidr,
    private readonly log: Logger,
    private readonly everyMs = 5000,
  ) {}

  async set(subnet: Cidr): Promise<void> {
    this.#subnet = subnet;
    await applyMasq(this.network, subnet);
    this.log.info("ip-masq rules applied", { table: "ip tartan" });
    if (!this.#timer) this.#timer = setInterval(() => void this.#check(), this.everyMs);
  }

  async #check(): Promise<void> {
    if (this.#checking || !this.#subnet) return;
    this.#checking = true;
    try {
      if (!(await masqPresent(this.network))) {
        await applyMasq(this.network, this.#subnet);
        this.reapplied++;
        this.log.warn("ip-masq rules were missing; re-applied them", { table: "ip tartan" });
      }
    } catch (e) {
      this.log.error("checking the ip-masq rules failed", { error: errorText(e) });
    } finally {
      this.#checking = false;
    }
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }
}
