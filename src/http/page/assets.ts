/**
 * The live page's script and style sheet, embedded in the binary as text (no CDN,
 * nothing fetched from outside). Their URLs carry a content hash, so a browser may cache
 * them for good and still gets the new ones after an upgrade.
 */
import script from "./live.client.js" with { type: "text" };
import style from "./style.css" with { type: "text" };

export interface Asset {
  readonly path: string;
  readonly type: string;
  readonly body: string;
  /** The path with its content hash, as the page links it. */
  readonly url: string;
}

function asset(path: string, type: string, body: string): Asset {
  return { path, type, body, url: `${path}?v=${Bun.hash(body).toString(36)}` };
}

export const SCRIPT = asset("/assets/live.js", "text/javascript; charset=utf-8", script);
export const STYLE = asset("/assets/style.css", "text/css; charset=utf-8", style);
export const ASSETS: readonly Asset[] = [SCRIPT, STYLE];
