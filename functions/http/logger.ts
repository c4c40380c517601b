import { createLogger, type Logger } from '../../runtime/logger.ts';

export { silentLogger, type Logger } from '../../runtime/logger.ts';

/** The control plane's logger: JSON lines Cloud Logging reads, readable lines on a terminal. */
export function jsonLogger(service = 'control-plane'): Logger {
  return createLogger({ service });
}
