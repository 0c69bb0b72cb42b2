import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          // Real servers and real processes: each file in its own process so a server
          // started by one file dies with it (parent-death signal), never shared state.
          pool: 'forks',
          testTimeout: 120_000,
          hookTimeout: 120_000,
          globalSetup: ['test/harness/global-setup.ts'],
          setupFiles: ['test/harness/quiet-log.ts'],
        },
      },
    ],
  },
});
