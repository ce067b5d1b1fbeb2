// typescript-eslint's recommended type-checked rules over src, bench and test (issue 13), run by
// the test command (scripts/test.sh). Rules turned off say why; everything else is as recommended.
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["src/gen/**", "dist/**", "dist-bench/**", "native/build/**", "node_modules/**", "**/*.js", "**/*.mjs", "vitest.config.ts", "test/vm/vitest.config.ts"] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { project: "./tsconfig.test.json", tsconfigRootDir: import.meta.dirname } },
    rules: {
      // Interface methods that return a Promise are async even without an await, on purpose: a
      // synchronous throw (a validation error) then becomes a rejection, as callers expect.
      "@typescript-eslint/require-await": "off",
      // An AbortSignal's reason is the conventional rejection of an aborted wait, whatever its type.
      "@typescript-eslint/prefer-promise-reject-errors": "off",
      // Stored errors are rethrown as they came (`unknown` from a stream's error event).
      "@typescript-eslint/only-throw-error": "off",
      // Unused on purpose when named so (a destructured field left out, an interface parameter).
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", destructuredArrayIgnorePattern: "^_" }],
    },
  },
  {
    // Tests read JSON and poke at values on purpose; the unsafe-any family would only add casts there.
    files: ["test/**/*.ts"],
    rules: {
      "@typescript-eslint/no-unsafe-member-access": "off",
      "@typescript-eslint/no-unsafe-assignment": "off",
      "@typescript-eslint/no-unsafe-argument": "off",
      "@typescript-eslint/no-unsafe-call": "off",
      "@typescript-eslint/no-unsafe-return": "off",
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/unbound-method": "off",
    },
  },
);
