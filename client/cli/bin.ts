#!/usr/bin/env node
// The `cleanroom` executable: the process edge. Everything else lives in main.ts.
import { main } from './main.ts';

// A reader that stops early (`cleanroom session list | head`) ends the output, not with a stack.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error;
  process.exit(process.exitCode ?? 0);
});

process.exitCode = await main(process.argv.slice(2), process.env);
