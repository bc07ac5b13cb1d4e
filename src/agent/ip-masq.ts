/**
 * Keeps the --ip-masq rules in place: applied once our lease is known, checked every
 * few seconds and re-applied (with a log line) if someone removed them. A dual-stack node
 * keeps the IPv6 table too.
 */
import type { Cidr } from "../config/cidr.ts";
import type { Cidr6 } from "../config/cidr6.ts";
import { errorText, type Logger } from "../log.ts";
import { applyMasq, type Masq6, masqPresent } from "../net/masq.ts";

export class MasqKeeper {
  #timer: ReturnType<typeof setInterval> | null = null;
  #subnet: Cidr | null = null;
  #v6: Masq6 | null = null;
  #checking = false;
  reapplied = 0;

  constructor(
    private readonly network: Cidr,
    private readonly log: Logger,
    /** Dual stack: the IPv6 network, masqueraded in `table ip6 tartan`. */
    private readonly network6: Cidr6 | null = null,
    private readonly everyMs = 5000,
  ) {}

  get #tables(): string {
    return this.network6 ? "ip tartan, ip6 tartan" : "ip tartan";
  }

  async set(subnet: Cidr, subnet6: Cidr6 | null = null): Promise<void> {
    this.#subnet = subnet;
    this.#v6 = this.network6 && subnet6 ? { network6: this.network6, subnet6 } : null;
    await applyMasq(this.network, subnet, this.#v6);
    this.log.info("ip-masq rules applied", { table: this.#tables });
    if (!this.#timer) this.#timer = setInterval(() => void this.#check(), this.everyMs);
  }

  async #check(): Promise<void> {
    if (this.#checking || !this.#subnet) return;
    this.#checking = true;
    try {
      if (!(await masqPresent(this.network, this.#v6?.network6 ?? null))) {
        await applyMasq(this.network, this.#subnet, this.#v6);
        this.reapplied++;
        this.log.warn("ip-masq rules were missing; re-applied them", { table: this.#tables });
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
