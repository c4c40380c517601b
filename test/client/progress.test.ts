import test from 'ava';
import { ProgressLine, countingUploads, formatBytes, formatProgress } from '../../client/cli/progress.ts';

const MiB = 1024 * 1024;

test('formatBytes: binary units, whole bytes below 1 KiB', (t) => {
  t.is(formatBytes(0), '0 B');
  t.is(formatBytes(1023), '1023 B');
  t.is(formatBytes(1536), '1.5 KiB');
  t.is(formatBytes(12 * MiB), '12.0 MiB');
  t.is(formatBytes(3 * 1024 * MiB), '3.0 GiB');
});

test('formatProgress: bytes of the total, percent, throughput and time left', (t) => {
  t.is(formatProgress({ sent: 12 * MiB, total: 48 * MiB, elapsedMs: 3000 }), 'uploading 12.0 MiB / 48.0 MiB  25%  4.0 MiB/s  0:09 left');
  t.is(formatProgress({ sent: 48 * MiB, total: 48 * MiB, elapsedMs: 12_000 }), 'uploading 48.0 MiB / 48.0 MiB  100%  4.0 MiB/s  0:00 left');
  // Hours when it takes that long.
  t.is(formatProgress({ sent: MiB, total: 4000 * MiB, elapsedMs: 1000 }), 'uploading 1.0 MiB / 3.9 GiB  0%  1.0 MiB/s  1:06:39 left');
});

test('formatProgress: no rate in the first half second or before a byte; an estimated total never shows more than 100%', (t) => {
  t.is(formatProgress({ sent: 100, total: 1000, elapsedMs: 100 }), 'uploading 100 B / 1000 B  10%  --/s');
  t.is(formatProgress({ sent: 0, total: 1000, elapsedMs: 5000 }), 'uploading 0 B / 1000 B  0%  --/s');
  t.is(formatProgress({ sent: 1010, total: 1000, elapsedMs: 1000 }), 'uploading 1010 B / 1000 B  100%  1010 B/s  0:00 left');
  t.is(formatProgress({ sent: 2 * MiB, total: null, elapsedMs: 1000 }), 'uploading 2.0 MiB  2.0 MiB/s');
});

test('ProgressLine: redraws in place at most once per interval, and done draws the final state and ends the line', (t) => {
  const written: string[] = [];
  let now = 0;
  const line = new ProgressLine({ write: (s) => written.push(s), total: 10 * MiB, now: () => now, intervalMs: 250 });
  for (let i = 0; i < 10; i++) {
    // Ten updates within 200 ms: one redraw.
    now += 20;
    line.add(MiB / 2);
  }
  t.is(written.length, 1);
  now = 1000;
  line.add(MiB / 2);
  t.is(written.length, 2);
  now = 2000;
  line.add(4.5 * MiB);
  line.done();
  line.done();
  t.is(written.length, 5, 'three redraws, the final one and a line break');
  for (const text of written.slice(0, 4)) t.regex(text, /^\ruploading .*\u001b\[K$/);
  t.is(written[3], `\r${formatProgress({ sent: 10 * MiB, total: 10 * MiB, elapsedMs: 2000 })}\u001b[K`);
  t.is(written[4], '\n');
  line.add(MiB);
  t.is(written.length, 5, 'nothing after done');
});

test('countingUploads: counts each chunk of a streamed body as it is pulled and passes the bytes on unchanged', async (t) => {
  const chunks = [new Uint8Array(1000).fill(1), new Uint8Array(24).fill(2), new Uint8Array(5000).fill(3)];
  const counted: number[] = [];
  let received = new Uint8Array(0);
  const inner = async (_input: string, init: RequestInit) => {
    received = new Uint8Array(await new Response(init.body).arrayBuffer());
    return new Response(null, { status: 200 });
  };
  const fetch = countingUploads(inner, (bytes) => counted.push(bytes));
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      controller.close();
    },
  });
  t.is((await fetch('http://upload.test/x', { method: 'PUT', body, duplex: 'half' } as RequestInit)).status, 200);
  t.deepEqual(counted, [1000, 24, 5000]);
  t.is(received.byteLength, 6024);
  t.deepEqual(received.subarray(1000, 1024), new Uint8Array(24).fill(2));
  // A body that is not a stream goes through untouched and uncounted.
  await fetch('http://api.test/y', { method: 'POST', body: '{}' });
  t.deepEqual(counted, [1000, 24, 5000]);
});

test("countingUploads: the source's error reaches the request", async (t) => {
  const failure = new Error('the file changed');
  const inner = async (_input: string, init: RequestInit) => {
    await new Response(init.body).arrayBuffer();
    return new Response(null);
  };
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      controller.error(failure);
    },
  });
  await t.throwsAsync(countingUploads(inner, () => {})('http://upload.test/x', { method: 'PUT', body }), { is: failure });
});
