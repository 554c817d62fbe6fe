import { resolve } from 'node:path';
import { defineConfig } from 'vitest/config';

// Workspace packages resolve to their TypeScript sources, so tests never run stale dist/ output.
// The native addon itself must be built (npm ci does it).
export default defineConfig({
  resolve: {
    alias: {
      '@novacron/native': resolve(__dirname, 'native/napi/ts/index.ts'),
      '@novacron/observability': resolve(__dirname, 'libs/observability/src/index.ts'),
      '@novacron/hde': resolve(__dirname, 'libs/hde/src/index.ts'),
      '@novacron/transport': resolve(__dirname, 'libs/transport/src/index.ts'),
      // The subpath comes first: an alias also matches `<key>/…`, so the bare key would swallow it.
      '@novacron/cluster-state/testing': resolve(__dirname, 'libs/cluster-state/src/testing/index.ts'),
      '@novacron/cluster-state': resolve(__dirname, 'libs/cluster-state/src/index.ts'),
      '@novacron/consensus': resolve(__dirname, 'libs/consensus/src/index.ts'),
      '@novacron/hypervisor': resolve(__dirname, 'libs/hypervisor/src/index.ts'),
      '@novacron/host': resolve(__dirname, 'libs/host/src/index.ts'),
      '@novacron/bandwidth': resolve(__dirname, 'libs/bandwidth/src/index.ts'),
      '@novacron/migration': resolve(__dirname, 'libs/migration/src/index.ts'),
      '@novacron/node': resolve(__dirname, 'apps/node/src/index.ts'),
      '@novacron/local-cluster': resolve(__dirname, 'libs/local-cluster/src/index.ts'),
    },
  },
  test: {
    include: ['libs/**/*.spec.ts', 'apps/**/*.spec.ts', 'native/napi/ts/**/*.spec.ts', 'test/**/*.spec.ts'],
    testTimeout: 60_000,
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
  },
});
