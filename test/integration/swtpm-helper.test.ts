import { afterEach, describe, expect, it } from "vitest";
import { listensOn, startSwtpm, type Swtpm } from "../helpers/swtpm.js";

describe("swtpm test helper", () => {
  const started: Swtpm[] = [];
  afterEach(async () => {
    await Promise.all(started.splice(0).map((s) => s.stop()));
  });

  it("listensOn tells a swtpm's own ports from another swtpm's (how a start that lost its port is caught)", async () => {
    const [a, b] = await Promise.all([startSwtpm({ provision: false }), startSwtpm({ provision: false })]);
    started.push(a, b);
    expect(await listensOn(a.pid, a.port)).toBe(true);
    expect(await listensOn(a.pid, a.ctrlPort)).toBe(true);
    expect(await listensOn(a.pid, b.port)).toBe(false);
    expect(await listensOn(b.pid, a.ctrlPort)).toBe(false);
    expect(await listensOn(undefined, a.port)).toBe(false);
  });

  it("ten swtpm started at once each get their own ports and answer on them", async () => {
    const all = await Promise.all(Array.from({ length: 10 }, () => startSwtpm({ provision: false })));
    started.push(...all);
    expect(new Set(all.flatMap((s) => [s.port, s.ctrlPort])).size).toBe(20);
    for (const s of all) expect(await listensOn(s.pid, s.port)).toBe(true);
  });
});
