import { describe, it } from "vitest";
import { MemoryStore } from "../../src/store/store-memory.js";
import { storeCases } from "../helpers/store-cases.js";

// The same table runs against the etcd store in test/integration/store-etcd.test.ts.
describe("memory store: shared store cases", () => {
  for (const tc of storeCases) it(tc.name, async () => tc.run(await MemoryStore.open()));
});
