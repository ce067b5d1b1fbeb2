// The logger: JSON lines by default; --log-format text renders one parseable line per entry; lines
// below the level are dropped; children nest their component.
import { describe, expect, it } from "vitest";
import { parseMeshdFlags } from "../../src/cmd/flags.js";
import { createLogger } from "../../src/shared/logger.js";

describe("createLogger", () => {
  it("writes one JSON object per line with time, level, component, msg and fields", () => {
    const lines: string[] = [];
    createLogger((l) => lines.push(l), { component: "meshd" }).child("pubapi").info("rpc", { method: "GetState", code: "OK", skipped: undefined });
    const o = JSON.parse(lines[0]) as Record<string, unknown>;
    expect(o).toMatchObject({ level: "info", component: "meshd/pubapi", msg: "rpc", method: "GetState", code: "OK" });
    expect(o).not.toHaveProperty("skipped");
  });

  it("text format: TIME LEVEL component: msg key=value, quoting values that need it, one line per entry", () => {
    const lines: string[] = [];
    const log = createLogger((l) => lines.push(l), { component: "meshd", format: "text", level: "debug" });
    log.warn("rpc refused", { code: "PERMISSION_DENIED", caller: "unauthenticated 127.0.0.1", audit: true, durationMs: 3, refusal: 'a "quoted"\nline' });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT\S+Z WARN  meshd: rpc refused code=PERMISSION_DENIED caller="unauthenticated 127.0.0.1" audit=true durationMs=3 refusal="a \\"quoted\\"\\nline"$/);
  });

  it("drops lines below its level", () => {
    const lines: string[] = [];
    const log = createLogger((l) => lines.push(l), { level: "warn" });
    log.info("no");
    log.debug("no");
    log.error("yes");
    expect(lines).toHaveLength(1);
  });

  it("meshd --log-format takes json (default) or text, nothing else", () => {
    const d = parseMeshdFlags(["--public-ip", "192.0.2.7"]);
    const t = parseMeshdFlags(["--public-ip", "192.0.2.7", "--log-format", "text"]);
    if (d.help || t.help) throw new Error("help");
    expect([d.config.logFormat, t.config.logFormat]).toEqual(["json", "text"]);
    expect(() => parseMeshdFlags(["--public-ip", "192.0.2.7", "--log-format", "xml"])).toThrow(/--log-format: must be json or text/);
  });
});
