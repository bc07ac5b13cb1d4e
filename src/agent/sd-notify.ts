/**
 * systemd's readiness protocol (sd_notify(3)), as flanneld speaks it: with
 * NOTIFY_SOCKET set (a unit of Type=notify), READY=1 once the lease is held, the
 * datapath programmed and subnet.env written — systemd then runs ExecStartPost and starts
 * what is ordered after us (Docker) — and STOPPING=1 when we shut down. The socket is a
 * path or an abstract name ("@…"). Without NOTIFY_SOCKET nothing is sent.
 *
 * Sent with libc's socket/sendto (libc.ts): Bun.udpSocket refuses a unix address and
 * node:net has only stream sockets. No `systemd-notify` fallback: it would send from its
 * own PID, which NotifyAccess=main rejects, and libc.so.6 is there wherever this
 * glibc-linked binary runs.
 */
import { errorText, type Logger } from "../log.ts";
import { sendUnixDatagram } from "./libc.ts";

export class SystemdNotifier {
  readonly #socket: string | null;
  readonly #log: Logger;

  constructor(socket: string | undefined, log: Logger) {
    this.#socket = socket ? socket : null;
    this.#log = log;
  }

  /** Is there a supervisor to tell? */
  get enabled(): boolean {
    return this.#socket !== null;
  }

  ready(status: string): void {
    this.#send(`READY=1\nSTATUS=${status}`);
  }

  stopping(): void {
    this.#send("STOPPING=1");
  }

  #send(message: string): void {
    if (!this.#socket) return;
    try {
      sendUnixDatagram(this.#socket, message);
      this.#log.debug("notified systemd", { socket: this.#socket, message: message.split("\n")[0] });
    } catch (e) {
      // systemd waits for READY=1 until TimeoutStartSec and then restarts us: say why
      this.#log.warn("cannot notify systemd (NOTIFY_SOCKET)", { socket: this.#socket, error: errorText(e) });
    }
  }
}
