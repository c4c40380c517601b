import { Writable } from 'node:stream';
import pino from 'pino';
import pretty from 'pino-pretty';

/** Structured log lines. Never pass tokens, keys or row data; pass codes and ids. */
export interface Logger {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export interface LoggerOptions {
  /** The deployable (`api`, `internal`, `worker`, `local`): a Cloud Logging label on every line. */
  service: string;
  /** Readable single lines for a person instead of JSON. Default: when stderr is a terminal. */
  pretty?: boolean;
  /** Where lines go (tests); default stderr. */
  write?: (line: string) => void;
}

/** Cloud Logging's severities by pino level. */
const SEVERITY: Record<string, string> = { trace: 'DEBUG', debug: 'DEBUG', info: 'INFO', warn: 'WARNING', error: 'ERROR', fatal: 'CRITICAL' };

/**
 * The one logger of both deployables (pino): JSON lines that Cloud Logging parses as structured
 * entries (`severity`, `message`, `time`, the `logging.googleapis.com/labels` service label, and
 * a request's `logging.googleapis.com/trace` when the caller adds {@link traceFields}), or, on a
 * terminal, one readable line per entry.
 */
export function createLogger(options: LoggerOptions): Logger {
  const readable = options.pretty ?? process.stderr.isTTY === true;
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const destination = readable
    ? pretty({
        sync: true,
        singleLine: true,
        colorize: false,
        messageKey: 'message',
        translateTime: 'SYS:HH:MM:ss.l',
        ignore: 'pid,hostname,service',
        destination: lineStream(write),
      })
    : { write };
  const logger = pino(
    {
      messageKey: 'message',
      base: readable ? { service: options.service } : { 'logging.googleapis.com/labels': { service: options.service } },
      timestamp: pino.stdTimeFunctions.isoTime,
      // pino-pretty prints pino's own level; Cloud Logging reads `severity`.
      ...(readable ? {} : { formatters: { level: (label: string) => ({ severity: SEVERITY[label] ?? 'DEFAULT' }) } }),
    },
    destination,
  );
  return {
    info: (message, fields) => logger.info(fields ?? {}, message),
    warn: (message, fields) => logger.warn(fields ?? {}, message),
    error: (message, fields) => logger.error(fields ?? {}, message),
  };
}

/**
 * The field that ties a log entry to the request's trace in Cloud Logging, from the
 * `traceparent` (W3C) or `X-Cloud-Trace-Context` header Google's front end adds. Empty without
 * a project id or a well-formed header.
 */
export function traceFields(headers: Headers, projectId: string | undefined): Record<string, string> {
  if (!projectId) return {};
  const traceId = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(headers.get('traceparent') ?? '')?.[1] ?? /^([0-9a-f]{32})(\/|$)/.exec(headers.get('x-cloud-trace-context') ?? '')?.[1];
  return traceId ? { 'logging.googleapis.com/trace': `projects/${projectId}/traces/${traceId}` } : {};
}

function lineStream(write: (line: string) => void): Writable {
  return new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      write(String(chunk));
      done();
    },
  });
}

/** Drops everything; for tests and benchmarks. */
export const silentLogger: Logger = { info() {}, warn() {}, error() {} };
