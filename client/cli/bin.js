#!/usr/bin/env node
// The `cleanroom` executable. Plain JavaScript, so that an older Node gets one clear line and
// exit code 2 instead of a loader error about `.ts` files; everything else is TypeScript.
import { existsSync, realpathSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { nodeVersionProblem } from './node-check.js';

// The Node 24 that `npm ci` put next to the CLI (a dev dependency), if this is a checkout.
const bundled = join(dirname(realpathSync(fileURLToPath(import.meta.url))), '..', '..', 'node_modules', 'node', 'bin');
const problem = nodeVersionProblem(process.version, existsSync(join(bundled, 'node')) ? bundled : null);
if (problem !== null) {
  process.stderr.write(problem + '\n');
  process.exitCode = 2;
} else {
  await import('./bin.ts');
}
