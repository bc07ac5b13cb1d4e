/**
 * The one structured logger: logfmt or JSON lines on stderr, filtered by level.
 * Every line has a time, a level, a message and key=value context.
 */

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ["logfmt", "json"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  with(fields: LogFields): Logger;
}

export interface LoggerOptions {
  level?: LogLevel;
  format?: LogFormat;
  /** Where lines go; stderr by default. */
  write?: (line: string) => void;
  now?: () => Date;
}

function fmtValue(v: unknown): string {
  let s: string;
  if (v instanceof Error) s = errorText(v);
  else if (typeof v === "string") s = v;
  else if (v === undefined) s = "";
  else s = typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
  return /[\s"=]/.test(s) || s === "" ? JSON.stringify(s) : s;
}

/** An error's message with its causes, one line. */
export function errorText(e: unknown): string {
  const parts: string[] = [];
  let cur: unknown = e;
  for (let depth = 0; cur !== undefined && cur !== null && depth < 5; depth++) {
    if (cur instanceof Error) {
      if (!parts.includes(cur.message)) parts.push(cur.message);
      cur = cur.cause;
    } else {
      parts.push(String(cur));
      break;
    }
  }
  return parts.join(": ");
}

export function createLogger(opts: LoggerOptions = {}, base: LogFields = {}): Logger {
  const min = LOG_LEVELS.indexOf(opts.level ?? "info");
  const format = opts.format ?? "logfmt";
  const write = opts.write ?? ((line: string) => process.stderr.write(`${line}\n`));
  const now = opts.now ?? (() => new Date());
  const emit = (level: LogLevel, msg: string, fields?: LogFields) => {
    if (LOG_LEVELS.indexOf(level) < min) return;
    const all: LogFields = { ...base, ...fields };
    const ts = now().toISOString();
    if (format === "json") {
      const obj: LogFields = { time: ts, level, msg };
      for (const [k, v] of Object.entries(all)) obj[k] = v instanceof Error ? errorText(v) : v;
      write(JSON.stringify(obj));
    } else {
      let line = `time=${ts} level=${level} msg=${fmtValue(msg)}`;
      for (const [k, v] of Object.entries(all)) line += ` ${k}=${fmtValue(v)}`;
      write(line);
    }
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
    with: (fields) => createLogger(opts, { ...base, ...fields }),
  };
}

/** A logger that drops everything (tests). */
export const silentLogger: Logger = createLogger({ write: () => {} });
