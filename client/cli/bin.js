#!/usr/bin/env node
// The `cleanroom` executable. Plain JavaScript, so that an older Node gets one clear line and
// exit code 2 instead of a loader error about `.ts` files; everything else is TypeScript.
import { nodeVersionProblem } from './node-check.js';

const problem = nodeVersionProblem(process.version);
if (problem !== null) {
  process.stderr.write(problem + '\n');
  process.exitCode = 2;
} else {
  await import('./bin.ts');
}
