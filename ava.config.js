// Node 24 strips TypeScript types itself: ava loads .ts test files as ES modules, no build step.
export default {
  files: ['test/**/*.test.ts'],
  extensions: ['ts'],
  timeout: '60s',
  workerThreads: false,
};
