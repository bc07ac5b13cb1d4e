/**
 * Per-container state under the plugin's data dir, so DEL and CHECK work after a
 * restart or an upgrade: `<dataDir>/<containerId>` holds the delegated config exactly as
 * flannel's plugin stores it (either plugin can DEL the other's pods), and
 * `<dataDir>/tartan-endpoints/<containerId>` the endpoint reported to the datapath.
 */
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Endpoint } from "../backend/endpoint.ts";
import { writeFileAtomic } from "../files.ts";
import { CNI_ERR, CniError } from "./errors.ts";

const ENDPOINTS_DIR = "tartan-endpoints";

export class ContainerState {
  constructor(
    readonly dataDir: string,
    readonly containerId: string,
  ) {}

  get confPath(): string {
    return join(this.dataDir, this.containerId);
  }

  get endpointPath(): string {
    return join(this.dataDir, ENDPOINTS_DIR, this.containerId);
  }

  saveConf(conf: Record<string, unknown>): void {
    this.#write(this.confPath, JSON.stringify(conf));
  }

  /** The stored delegate config; null when there is none (never added, or already deleted). */
  loadConf(): Record<string, unknown> | null {
    const text = this.#read(this.confPath);
    if (text === null) return null;
    try {
      const obj = JSON.parse(text) as unknown;
      if (typeof obj === "object" && obj !== null && !Array.isArray(obj))
        return obj as Record<string, unknown>;
    } catch {}
    throw new CniError(CNI_ERR.IO_FAILURE, `stored delegate config ${this.confPath} is corrupt`);
  }

  saveEndpoint(ep: Endpoint): void {
    this.#write(this.endpointPath, JSON.stringify(ep));
  }

  loadEndpoint(): Endpoint | null {
    const text = this.#read(this.endpointPath);
    if (text === null) return null;
    try {
      return JSON.parse(text) as Endpoint;
    } catch {
      return null;
    }
  }

  /** Removes both files; missing files are fine (DEL is idempotent). */
  remove(): void {
    rmSync(this.confPath, { force: true });
    rmSync(this.endpointPath, { force: true });
  }

  #write(path: string, text: string): void {
    try {
      mkdirSync(join(this.dataDir, ENDPOINTS_DIR), { recursive: true, mode: 0o700 });
      writeFileAtomic(path, text, 0o600);
    } catch (e) {
      throw new CniError(CNI_ERR.IO_FAILURE, `cannot write ${path}: ${(e as Error).message}`, undefined, {
        cause: e,
      });
    }
  }

  #read(path: string): string | null {
    try {
      return readFileSync(path, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw new CniError(CNI_ERR.IO_FAILURE, `cannot read ${path}: ${(e as Error).message}`);
    }
  }
}
