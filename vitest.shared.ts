import { fileURLToPath } from 'node:url'
import { defaultServerConditions } from 'vite'
import type { ViteUserConfig } from 'vitest/config'

/** Resolve workspace packages to their TypeScript source: tests need no build. */
const conditions = ['@backroom/source', ...defaultServerConditions]

/** Vitest settings every package shares: real PostgreSQL through one global setup. */
export const sharedConfig: ViteUserConfig = {
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    globalSetup: [fileURLToPath(new URL('./packages/queue-core/src/testing/global-setup.ts', import.meta.url))],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
  },
}
