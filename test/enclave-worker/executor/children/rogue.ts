/**
 * A context that misbehaves, for the worker-side protocol tests: it answers `init` properly, then
 * does what the `parse` frame's SQL names (a compromised context can do anything on its pipe).
 */
import process from 'node:process';

let buffered = '';
process.stdin.on('data', (chunk: Buffer) => {
  buffered += chunk.toString('utf8');
  let newline: number;
  while ((newline = buffered.indexOf('\n')) !== -1) {
    const frame = JSON.parse(buffered.slice(0, newline)) as { t: string; sql?: string };
    buffered = buffered.slice(newline + 1);
    if (frame.t === 'init') process.stdout.write('{"t":"ready"}\n');
    else if (frame.t === 'parse') act(frame.sql ?? '');
  }
});

function act(behaviour: string): void {
  switch (behaviour) {
    case 'flood': {
      // Never a newline: the worker must stop buffering and kill it.
      const block = 'x'.repeat(1 << 20);
      const write = (): void => {
        while (process.stdout.write(block));
        process.stdout.once('drain', write);
      };
      return write();
    }
    case 'garbage':
      process.stdout.write('this is not json\n');
      return;
    case 'wrong-shape':
      process.stdout.write('{"t":"failed","code":"SOMETHING_ELSE","message":"quoted row value"}\n');
      return;
    case 'exit':
      process.exit(3);
      return;
    case 'abort':
      process.kill(process.pid, 'SIGABRT');
      return;
    case 'hang':
      return;
    case 'lie':
      // A plausible tree first, then a result over the row cap with a false count.
      process.stdout.write(
        `${JSON.stringify({ t: 'parsed', tree: JSON.stringify({ error: false, statements: [{ node: { type: 'SELECT_NODE', modifiers: [], cte_map: { map: [] }, select_list: [{ class: 'CONSTANT', type: 'VALUE_CONSTANT', alias: '', query_location: 7, value: 1 }], from_table: { type: 'EMPTY', alias: '', sample: null, query_location: 0 }, where_clause: null, group_expressions: [], group_sets: [], aggregate_handling: 'STANDARD_HANDLING', having: null, sample: null, qualify: null }, named_param_map: [] }] }) })}\n`,
      );
      process.stdin.once('data', () => {
        process.stdout.write(`${JSON.stringify({ t: 'result', columns: [{ name: 'x', type: 'INTEGER' }], rows: Array.from({ length: 50 }, (_, i) => [i]), bytes: 1 })}\n`);
      });
      return;
    default:
      process.stdout.write('{"t":"ready"}\n'); // a frame nobody asked for
  }
}
