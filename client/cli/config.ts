import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { CliError } from './errors.ts';

/** The CLI's settings, parsed once from the environment by the composition root. */
export interface CliConfig {
  /** The API's base URL without a trailing slash. */
  api: string;
  /** Where credentials live. */
  home: string;
}

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * Reads `CLEANROOM_API` (default `http://localhost:3000`) and `CLEANROOM_HOME` (default
 * `~/.cleanroom`). Plain http is refused for anything but loopback: bearer tokens would cross
 * the network in clear.
 */
export function loadCliConfig(env: Record<string, string | undefined>): CliConfig {
  const rawApi = env.CLEANROOM_API || 'http://localhost:3000';
  let url: URL;
  try {
    url = new URL(rawApi);
  } catch {
    throw invalid(`CLEANROOM_API is not a URL: ${rawApi}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw invalid('CLEANROOM_API must be an http(s) URL');
  if (url.protocol === 'http:' && !LOOPBACK.has(url.hostname)) {
    throw invalid('CLEANROOM_API must use https unless it is a loopback address (tokens would travel in clear)');
  }
  if (url.username || url.password || url.search || url.hash) {
    throw invalid('CLEANROOM_API must not carry credentials, a query or a fragment');
  }
  const home = env.CLEANROOM_HOME ? resolve(env.CLEANROOM_HOME) : join(homedir(), '.cleanroom');
  return { api: url.href.replace(/\/+$/, ''), home };
}

function invalid(message: string): CliError {
  return new CliError('CONFIG_INVALID', message, { exitCode: 2 });
}
