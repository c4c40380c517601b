/** Structured log lines. Never pass tokens, keys or row data; pass codes and ids. */
export interface Logger {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** JSON lines on a stream (stderr by default), the shape Cloud Logging parses. */
export function jsonLogger(write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const emit =
    (severity: string) =>
    (message: string, fields: Record<string, unknown> = {}) =>
      write(`${JSON.stringify({ severity, message, time: new Date().toISOString(), ...fields })}\n`);
  return { info: emit('INFO'), warn: emit('WARNING'), error: emit('ERROR') };
}

/** Drops everything; for tests and benchmarks. */
export const silentLogger: Logger = { info() {}, warn() {}, error() {} };
