import { fileURLToPath } from "node:url";

import { defineConfig } from "vitest/config";

// `npm run test:vm`: the VM tier only. Files run one at a time: TCG VMs need every core.
export default defineConfig({
  root: fileURLToPath(new URL("../..", import.meta.url)),
  test: {
    include: ["test/vm/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    teardownTimeout: 60_000,
    pool: "forks",
    fileParallelism: false,
    reporters: ["default"],
  },
});
