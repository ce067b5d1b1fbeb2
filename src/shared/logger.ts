/**
 * Logger is the structured logging interface every component receives. Library code never writes
 * to the console itself. Lines carry a component name and fields; callers must never pass secrets
 * (master secret, private keys, disk keys) as messages or fields.
 */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** child returns a logger whose lines carry `component` (nested as parent/child). */
  child(component: string): Logger;
}

/** LogFields are extra key/value pairs of one log line. */
export type LogFields = Record<string, string | number | boolean | undefined>;

/** LogLevel orders the levels; lines below the logger's level are dropped. */
export type LogLevel = "debug" | "info" | "warn" | "error";

const levelRank: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** LogFormat: one JSON object per line (for shipping), or text for a person at a terminal. */
export type LogFormat = "json" | "text";

/**
 * textLine renders a line as `TIME LEVEL component: msg key=value …`; values with spaces, quotes or
 * control characters are JSON-quoted, so a line stays one line and parseable.
 */
function textLine(line: { time: string; level: LogLevel; component: string; msg: string; [field: string]: unknown }): string {
  const { time, level, component, msg, ...rest } = line;
  const value = (v: unknown): string => (typeof v === "string" && /^[^\s"=\\\x00-\x1f]+$/.test(v) ? v : JSON.stringify(v));
  const fields = Object.entries(rest).map(([k, v]) => `${k}=${value(v)}`);
  return [time, level.toUpperCase().padEnd(5), `${component ? `${component}: ` : ""}${JSON.stringify(msg).slice(1, -1)}`, ...fields].join(" ");
}

/** LineSink receives one finished log line (without newline). */
export type LineSink = (line: string) => void;

/**
 * createLogger returns a Logger that writes one JSON object per line to `sink`.
 * Safe to call concurrently; it keeps no state besides its level and component.
 */
export function createLogger(sink: LineSink, options?: { level?: LogLevel; component?: string; format?: LogFormat }): Logger {
  const min = levelRank[options?.level ?? "info"];
  const text = options?.format === "text";
  const make = (component: string): Logger => {
    const emit = (level: LogLevel, msg: string, fields?: LogFields): void => {
      if (levelRank[level] < min) return;
      const line: { time: string; level: LogLevel; component: string; msg: string; [field: string]: unknown } = { time: new Date().toISOString(), level, component, msg };
      if (fields) for (const [k, v] of Object.entries(fields)) if (v !== undefined) line[k] = v;
      sink(text ? textLine(line) : JSON.stringify(line));
    };
    return {
      debug: (m, f) => emit("debug", m, f),
      info: (m, f) => emit("info", m, f),
      warn: (m, f) => emit("warn", m, f),
      error: (m, f) => emit("error", m, f),
      child: (c) => make(component ? `${component}/${c}` : c),
    };
  };
  return make(options?.component ?? "");
}

/** nullLogger drops every line. */
export const nullLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => nullLogger,
};
