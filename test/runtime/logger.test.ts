import test from 'ava';
import { createLogger, traceFields } from '../../runtime/logger.ts';

function capture(pretty: boolean) {
  const lines: string[] = [];
  const log = createLogger({ service: 'worker', pretty, write: (line) => lines.push(line) });
  return { log, lines };
}

test('logger: JSON lines carry Cloud Logging severity, message, time, the service label and the fields', (t) => {
  const { log, lines } = capture(false);
  log.info('task done', { code: 'OK', query_id: 'q1' });
  log.warn('task refused', { code: 'TASK_REPLAYED' });
  log.error('task failed');
  const entries = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  t.deepEqual(
    entries.map((e) => e.severity),
    ['INFO', 'WARNING', 'ERROR'],
  );
  t.is(entries[0]!.message, 'task done');
  t.is(entries[0]!.query_id, 'q1');
  t.deepEqual(entries[0]!['logging.googleapis.com/labels'], { service: 'worker' });
  t.true(!Number.isNaN(Date.parse(String(entries[0]!.time))));
  t.is(entries[0]!.level, undefined, 'pino levels are numbers Cloud Logging would not read');
});

test('logger: on a terminal each entry is one readable line, not JSON', (t) => {
  const { log, lines } = capture(true);
  log.warn('task refused', { code: 'TASK_REPLAYED' });
  t.is(lines.length, 1);
  t.false(lines[0]!.trimStart().startsWith('{'));
  t.regex(lines[0]!, /WARN.*task refused.*TASK_REPLAYED/);
  t.is(lines[0]!.trimEnd().split('\n').length, 1);
});

test('trace fields: traceparent and X-Cloud-Trace-Context name the trace of the project; anything else adds nothing', (t) => {
  const id = '4bf92f3577b34da6a3ce929d0e0e4736';
  t.deepEqual(traceFields(new Headers({ traceparent: `00-${id}-00f067aa0ba902b7-01` }), 'p1'), { 'logging.googleapis.com/trace': `projects/p1/traces/${id}` });
  t.deepEqual(traceFields(new Headers({ 'x-cloud-trace-context': `${id}/1;o=1` }), 'p1'), { 'logging.googleapis.com/trace': `projects/p1/traces/${id}` });
  t.deepEqual(traceFields(new Headers({ traceparent: 'garbage' }), 'p1'), {});
  t.deepEqual(traceFields(new Headers({ traceparent: `00-${id}-00f067aa0ba902b7-01` }), undefined), {});
});
