// Plain JavaScript on purpose: an older Node, which cannot load TypeScript, must still be able to
// load this file to say why the CLI does not run on it. Keep the syntax old (no types, no `??`).

/** The oldest Node the CLI runs on: it runs TypeScript itself (package.json `engines`). */
export const MINIMUM_NODE = '24.12';

/**
 * Why Node `version` (as `process.version` spells it, e.g. `v20.20.2`) cannot run the CLI, as
 * one line for the user, or null when it can. `bundledNodeDir`, when given, is the directory of
 * the Node 24 that `npm ci` installed next to the CLI: the line says to put it on PATH.
 * @param {string} version
 * @param {string | null} [bundledNodeDir]
 * @returns {string | null}
 */
export function nodeVersionProblem(version, bundledNodeDir) {
  const match = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version);
  const major = match ? Number(match[1]) : 0;
  const minor = match ? Number(match[2]) : 0;
  if (major > 24 || (major === 24 && minor >= 12)) return null;
  const fix = bundledNodeDir
    ? 'put ' + bundledNodeDir + ' (the Node 24 that `npm ci` installed) first on your PATH, or install Node 24 (https://nodejs.org/)'
    : 'install Node 24 (https://nodejs.org/), or run `npx cleanroom` inside the repository after `npm ci`';
  return 'error: NODE_TOO_OLD: cleanroom needs Node ' + MINIMUM_NODE + ' or newer and this is Node ' + version + ': ' + fix;
}
