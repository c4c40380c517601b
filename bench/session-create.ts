/**
 * Session creation over HTTP against the embedded stack, next to two baselines measured in the
 * same run: `GET /api/tee/health` (a bare handler behind the same router and node:http adapter)
 * and a raw node:http server answering the health route's exact bytes (the adapter's own cost).
 *
 * `npm run bench:sessions -- [--duration 10] [--warmup 3] [--rate 200] [--connections 10] [--data-dir DIR] [--profile DIR]`
 *
 * The server runs in a child process and the load generator in this one, so the two do not share
 * an event loop (on a 2-core machine each gets a core). Loopback only; stops by itself.
 *
 * - Open loop: requests are sent on a fixed schedule (`rate` per second) whatever the server
 *   does, and latency counts from the time a request was due, so a stalled server cannot hide
 *   its stall (no coordinated omission). Not autocannon: its `overallRate` releases each
 *   connection's quota in a burst at the start of every second and waits for responses.
 * - Closed loop: autocannon with `connections` keep-alive connections, each sending its next
 *   request when the previous one is answered: the maximum throughput.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, createServer, request as httpRequest } from 'node:http';
import type { Profiler } from 'node:inspector';
import { Session } from 'node:inspector/promises';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { availableParallelism, cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startLocalStack } from '../functions/local/stack.ts';

const SERVER_FLAG = '--bench-server';
const CREATE_BODY = JSON.stringify({ name: 'bench session', participant_emails: ['b@example.com'] });
const OWNER = 'bench-owner@example.com';
const REQUEST_TIMEOUT_MS = 10_000;

/** What the server child tells the load generator once it listens. */
interface Ready {
  type: 'ready';
  apiUrl: string;
  rawUrl: string;
  token: string;
  dataDir: string;
}

/** The server's own cost over one phase. */
interface ServerUsage {
  /** CPU time (user + system) of the server process, all threads, in microseconds. */
  cpuMicros: number;
  /** Time the server's event loop was not idle, in milliseconds: CPU work and synchronous waits (fsync). */
  busyMs: number;
}

/** What the whole machine did over one phase. */
interface MachineUsage {
  /** CPU time of the load generator (this process), in microseconds. */
  generatorMicros: number;
  /** Share of all cores' time used by processes other than the server and the load generator. */
  others: number | undefined;
}

/** One thing to load: a fixed request and the status that counts as success. */
interface Target {
  label: string;
  url: URL;
  method: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: string;
  expect: number;
}

/** The figures of one run against one target. */
interface RunResult {
  label: string;
  sent: number;
  ok: number;
  /** Counts of every other outcome, by status (or `error`/`timeout`). */
  failures: Map<string, number>;
  seconds: number;
  /** Latencies of successful requests, ascending, in milliseconds. */
  latencies: Float64Array;
  server: ServerUsage;
  machine: MachineUsage;
  /** Open loop only: the largest delay between a request's due time and its send. */
  maxSendLagMs?: number;
  /** Open loop only: latencies counted from the actual send instead of the due time, ascending. */
  fromSend?: Float64Array;
}

// ---------------------------------------------------------------------------------------------
// The server child
// ---------------------------------------------------------------------------------------------

/** Runs in the child: the embedded stack plus the raw baseline server, driven over IPC. */
async function serve(parentDir: string): Promise<void> {
  const dataDir = mkdtempSync(join(parentDir, 'cleanroom-bench-'));
  const stack = await startLocalStack({ dataDir, apiPort: 0 });

  // The raw baseline answers exactly what the health route answers: same status, headers, body.
  const health = await fetch(`${stack.apiUrl}/api/tee/health`);
  const healthBody = Buffer.from(await health.arrayBuffer());
  const healthHeaders: Record<string, string> = {};
  health.headers.forEach((value, name) => (healthHeaders[name] = value));
  delete healthHeaders.date;
  delete healthHeaders.connection;
  delete healthHeaders['keep-alive'];
  const bare = createServer((req, res) => {
    req.resume();
    res.writeHead(health.status, healthHeaders);
    res.end(healthBody);
  });
  bare.keepAliveTimeout = 5000;
  await new Promise<void>((resolve) => bare.listen(0, '127.0.0.1', resolve));
  const rawUrl = `http://127.0.0.1:${(bare.address() as AddressInfo).port}`;

  const { token } = await stack.devIdp.issue(OWNER, { ttlSeconds: 3600 });
  let mark = { cpu: process.cpuUsage(), elu: performance.eventLoopUtilization() };
  let profiler: Session | undefined;

  process.on('message', async (raw: unknown) => {
    const message = raw as { type: string; profile?: string };
    if (message.type === 'phase-start') {
      if (message.profile) {
        profiler = new Session();
        profiler.connect();
        await profiler.post('Profiler.enable');
        await profiler.post('Profiler.setSamplingInterval', { interval: 100 });
        await profiler.post('Profiler.start');
      }
      mark = { cpu: process.cpuUsage(), elu: performance.eventLoopUtilization() };
      process.send!({ type: 'phase-started' });
    } else if (message.type === 'phase-end') {
      const cpu = process.cpuUsage(mark.cpu);
      const { active } = performance.eventLoopUtilization(mark.elu);
      if (profiler && message.profile) {
        const { profile } = await profiler.post('Profiler.stop');
        writeFileSync(message.profile, JSON.stringify(profile));
        profiler.disconnect();
        profiler = undefined;
      }
      process.send!({ type: 'phase-ended', usage: { cpuMicros: cpu.user + cpu.system, busyMs: active } satisfies ServerUsage });
    } else if (message.type === 'stop') {
      await stop();
    }
  });
  // The load generator died (Ctrl-C, a crash): no server and no temp dir may outlive it.
  process.on('disconnect', () => void stop());
  let stopping = false;
  async function stop(): Promise<void> {
    if (stopping) return;
    stopping = true;
    await new Promise<void>((resolve) => {
      bare.close(() => resolve());
      bare.closeAllConnections();
    });
    await stack.close();
    rmSync(dataDir, { recursive: true, force: true });
    process.exit(0);
  }
  process.send!({ type: 'ready', apiUrl: stack.apiUrl, rawUrl, token, dataDir } satisfies Ready);
}

// ---------------------------------------------------------------------------------------------
// The load generator (parent)
// ---------------------------------------------------------------------------------------------

/** Talks to the server child: one outstanding request at a time, answered in order. */
class ServerChild {
  readonly #child: ChildProcess;
  readonly #waiting: Array<(message: any) => void> = [];
  readonly exited: Promise<number | null>;

  constructor(child: ChildProcess) {
    this.#child = child;
    child.on('message', (message) => this.#waiting.shift()?.(message));
    this.exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  }

  /** Sends `message` (if any) and waits for the child's next message, or its death. */
  ask<T>(message?: object): Promise<T> {
    const answer = new Promise<T>((resolve) => this.#waiting.push(resolve));
    if (message) this.#child.send(message);
    return Promise.race([answer, this.exited.then((code) => Promise.reject(new Error(`the server process exited (${code})`)))]);
  }

  /** Runs one measured phase, with the server's and the machine's usage over it. */
  async phase<T>(run: () => Promise<T>, profile?: string): Promise<{ result: T; server: ServerUsage; machine: MachineUsage }> {
    await this.ask({ type: 'phase-start', profile });
    const cpu = process.cpuUsage();
    const before = readProcStat();
    const result = await run();
    const after = readProcStat();
    const generator = process.cpuUsage(cpu);
    const { usage } = await this.ask<{ usage: ServerUsage }>({ type: 'phase-end', profile });
    const generatorMicros = generator.user + generator.system;
    let others: number | undefined;
    if (before && after && after.total > before.total) {
      // /proc/stat counts in clock ticks (USER_HZ, 100 per second on Linux).
      const oursTicks = (usage.cpuMicros + generatorMicros) / 10_000;
      others = Math.max(0, (after.busy - before.busy - oursTicks) / (after.total - before.total));
    }
    return { result, server: usage, machine: { generatorMicros, others } };
  }

  async stop(): Promise<void> {
    if (this.#child.connected) this.#child.send({ type: 'stop' });
    await this.exited;
  }
}

/** Busy and total CPU ticks of the whole machine (Linux), to tell whether something else ran. */
function readProcStat(): { busy: number; total: number } | undefined {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = fields.reduce((a, b) => a + b, 0);
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

/** One request over a keep-alive agent; resolves when the whole response has been read. */
function send(target: Target, agent: Agent): Promise<{ outcome: string; end: number }> {
  return new Promise((resolve) => {
    const req = httpRequest(
      {
        host: target.url.hostname,
        port: target.url.port,
        path: target.url.pathname,
        method: target.method,
        headers: target.headers,
        agent,
        timeout: REQUEST_TIMEOUT_MS,
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ outcome: String(res.statusCode), end: performance.now() }));
        res.on('error', () => resolve({ outcome: 'error', end: performance.now() }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (error) => resolve({ outcome: error.message === 'timeout' ? 'timeout' : 'error', end: performance.now() }));
    req.end(target.body);
  });
}

/** Sends `rate` requests per second for `seconds` on a fixed schedule; latency counts from the due time. */
async function openLoop(target: Target, rate: number, seconds: number, agent: Agent): Promise<Omit<RunResult, 'server' | 'machine'>> {
  const total = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const latencies: number[] = [];
  const fromSend: number[] = [];
  const failures = new Map<string, number>();
  const inFlight: Array<Promise<void>> = [];
  let next = 0;
  let maxSendLagMs = 0;
  let lastEnd = 0;
  const start = performance.now() + 1;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      // Everything that is due goes out now, even if the timer fired late.
      while (next < total && start + next * interval <= now) {
        const due = start + next * interval;
        maxSendLagMs = Math.max(maxSendLagMs, now - due);
        const sentAt = performance.now();
        inFlight.push(
          send(target, agent).then(({ outcome, end }) => {
            lastEnd = Math.max(lastEnd, end);
            if (outcome === String(target.expect)) {
              latencies.push(end - due);
              fromSend.push(end - sentAt);
            } else failures.set(outcome, (failures.get(outcome) ?? 0) + 1);
          }),
        );
        next++;
      }
      if (next < total) setTimeout(tick, Math.max(0, start + next * interval - performance.now()));
      else resolve();
    };
    tick();
  });
  await Promise.all(inFlight);
  return {
    label: target.label,
    sent: total,
    ok: latencies.length,
    failures,
    seconds: (lastEnd - start) / 1000,
    latencies: Float64Array.from(latencies).sort(),
    maxSendLagMs,
    fromSend: Float64Array.from(fromSend).sort(),
  };
}

type Autocannon = (
  options: Record<string, unknown>,
  done: (error: Error | null, result: { requests: { sent: number }; errors: number; timeouts: number; non2xx: number; duration: number }) => void,
) => { on(event: 'response', listener: (client: unknown, status: number, bytes: number, ms: number) => void): void };

/** `connections` connections, each sending its next request as soon as the last is answered. */
async function closedLoop(target: Target, connections: number, seconds: number): Promise<Omit<RunResult, 'server' | 'machine'>> {
  const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;
  const latencies: number[] = [];
  const failures = new Map<string, number>();
  // autocannon adds its own Content-Length; a second one makes node:http refuse the request, and
  // autocannon then counts neither a response nor an error.
  const { 'content-length': _length, ...headers } = target.headers;
  const result = await new Promise<Parameters<Parameters<Autocannon>[1]>[1]>((resolve, reject) => {
    const run = autocannon(
      {
        url: target.url.href,
        method: target.method,
        headers,
        body: target.body,
        connections,
        duration: seconds,
        timeout: REQUEST_TIMEOUT_MS / 1000,
      },
      (error, done) => (error ? reject(error) : resolve(done)),
    );
    // autocannon's own histogram holds whole milliseconds; keep the exact figures instead.
    run.on('response', (_client, status, _bytes, ms) => {
      if (status === target.expect) latencies.push(ms);
      else failures.set(String(status), (failures.get(String(status)) ?? 0) + 1);
    });
  });
  if (result.errors - result.timeouts > 0) failures.set('error', result.errors - result.timeouts);
  if (result.timeouts > 0) failures.set('timeout', result.timeouts);
  // At most one request per connection may still be in flight when the run stops.
  const unanswered = result.requests.sent - latencies.length - [...failures.values()].reduce((a, b) => a + b, 0);
  if (unanswered > connections) failures.set('unanswered', unanswered);
  return {
    label: target.label,
    sent: result.requests.sent,
    ok: latencies.length,
    failures,
    seconds: result.duration,
    latencies: Float64Array.from(latencies).sort(),
  };
}

/** Nearest-rank percentile of ascending `sorted`. */
function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ')).join('\n');
}

function report(results: RunResult[], openLoop: boolean): string {
  const ms = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : '-');
  const header = ['target', 'sent', 'ok', 'failed', 'req/s', 'p50 ms', 'p99 ms', 'max ms', 'srv CPU/req', 'srv loop/req', 'others CPU'];
  if (openLoop) header.push('send lag', 'p99 from send');
  const rows = results.map((r) => {
    const failed = [...r.failures.values()].reduce((a, b) => a + b, 0);
    const answered = Math.max(1, r.ok + failed);
    const row = [
      r.label,
      String(r.sent),
      String(r.ok),
      String(failed),
      (r.ok / r.seconds).toFixed(0),
      ms(percentile(r.latencies, 50)),
      ms(percentile(r.latencies, 99)),
      ms(r.latencies.at(-1) ?? Number.NaN),
      `${(r.server.cpuMicros / answered / 1000).toFixed(3)} ms`,
      `${(r.server.busyMs / answered).toFixed(3)} ms`,
      r.machine.others === undefined ? '-' : `${(r.machine.others * 100).toFixed(0)}%`,
    ];
    if (openLoop) row.push(`${ms(r.maxSendLagMs ?? Number.NaN)} ms`, `${ms(r.fromSend ? percentile(r.fromSend, 99) : Number.NaN)} ms`);
    return row;
  });
  const failures = results.filter((r) => r.failures.size > 0).map((r) => `  FAILURES ${r.label}: ${[...r.failures].map(([k, n]) => `${k}×${n}`).join(', ')}`);
  return [table([header, ...rows]), ...failures].join('\n');
}

/** Where the server's sampled time went, leaf frame first: the first frame a rule claims decides. */
const PROFILE_BUCKETS: Array<[label: string, claims: (url: string) => boolean]> = [
  ['SQLite store (statements, BEGIN/COMMIT incl. fsync)', (u) => u.includes('/adapters/store/')],
  ['token verification (jose, ECDSA P-256)', (u) => u.includes('/jose/') || u.includes('/adapters/identity/')],
  ['audit entry hash (canonical JSON, SHA-256)', (u) => u.includes('/protocol/audit.ts') || u.includes('/protocol/canonical-json.ts')],
  ['body validation (valibot)', (u) => u.includes('/valibot/')],
  ['node adapter (web Request/Response, socket write)', (u) => /\/runtime\/node-http\.ts$|\/functions\/http\/responses\.ts$/.test(u) || u.includes('undici')],
  ['router, handler, service, rules', (u) => u.includes('/functions/') || u.includes('/protocol/') || u.includes('/runtime/')],
];

/** Per-request milliseconds by area, from a CPU profile of `requests` requests. */
function summarizeProfile(file: string, requests: number): string {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profiler.Profile;
  const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
  const parents = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parents.set(c, n.id);
  const totals = new Map<string, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    // A sample's time is the gap to the next sample.
    const micros = deltas[i + 1] ?? 0;
    let bucket: string | undefined;
    const leaf = nodes.get(samples[i]!)!;
    if (['(idle)', '(garbage collector)', '(program)'].includes(leaf.callFrame.functionName)) bucket = leaf.callFrame.functionName;
    for (let id: number | undefined = leaf.id; !bucket && id !== undefined; id = parents.get(id)) {
      bucket = PROFILE_BUCKETS.find(([, claims]) => claims(nodes.get(id!)!.callFrame.url))?.[0];
    }
    bucket ??= 'node internals (HTTP parsing, timers, streams)';
    totals.set(bucket, (totals.get(bucket) ?? 0) + micros);
  }
  const rows = [...totals].sort((a, b) => b[1] - a[1]).map(([label, micros]) => [label, `${(micros / requests / 1000).toFixed(3)} ms`, `${(micros / 1000).toFixed(0)} ms`]);
  return table([['area (server main thread, sampled)', 'per request', 'total'], ...rows]);
}

const LEGEND = [
  'srv CPU/req: server process CPU (all threads) per request; srv loop/req: time its event loop was busy per',
  'request, CPU plus synchronous waits such as SQLite fsync; others CPU: share of all cores used by other',
  "processes during the run (should be ~0%); send lag: the load generator's largest delay behind its schedule;",
  'p99 from send: p99 counted from when each request actually left, not from when it was due.',
].join('\n');

/** Command-line options, validated; `--help` prints {@link USAGE}. */
function parseOptions(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '3' },
      rate: { type: 'string', default: '200' },
      connections: { type: 'string', default: '10' },
      'data-dir': { type: 'string', default: tmpdir() },
      profile: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  const positive = (name: string, text: string) => {
    const n = Number(text);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number, not ${JSON.stringify(text)}`);
    return n;
  };
  return {
    help: values.help,
    duration: positive('duration', values.duration),
    warmup: positive('warmup', values.warmup),
    rate: positive('rate', values.rate),
    connections: Math.round(positive('connections', values.connections)),
    dataDir: values['data-dir'],
    profile: values.profile,
  };
}

const USAGE = `npm run bench:sessions -- [options]
  --duration S      seconds per measured run (default 10)
  --warmup S        seconds of warm-up per target at the open-loop rate (default 3)
  --rate N          open-loop requests per second (default 200)
  --connections N   closed-loop connections (default 10)
  --data-dir DIR    where the fresh SQLite directory is made (default the OS temp dir; /dev/shm takes fsync out)
  --profile DIR     write CPU profiles of the server during both create-session runs to DIR
`;

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  if (options.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (options.profile) mkdirSync(options.profile, { recursive: true });
  const child = new ServerChild(fork(fileURLToPath(import.meta.url), [SERVER_FLAG, options.dataDir], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
  try {
    const ready = await child.ask<Ready>();
    const jsonHeaders = { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(CREATE_BODY)) };
    const targets: Target[] = [
      { label: 'raw node:http, same bytes', url: new URL('/api/tee/health', ready.rawUrl), method: 'GET', headers: {}, expect: 200 },
      { label: 'GET /api/tee/health (bare)', url: new URL('/api/tee/health', ready.apiUrl), method: 'GET', headers: {}, expect: 200 },
      {
        label: 'POST /api/tee/sessions',
        url: new URL('/api/tee/sessions', ready.apiUrl),
        method: 'POST',
        headers: { ...jsonHeaders, authorization: `Bearer ${ready.token}` },
        body: CREATE_BODY,
        expect: 201,
      },
    ];
    const agent = new Agent({ keepAlive: true, maxSockets: 256 });
    const [, health, create] = targets as [Target, Target, Target];
    const profileFile = (name: string) => (options.profile ? join(options.profile, `${name}.cpuprofile`) : undefined);

    process.stdout.write(
      [
        `machine: ${cpus()[0]?.model ?? 'unknown cpu'}, ${availableParallelism()} cores, node ${process.version}, ${process.platform}, load average ${loadavg()
          .map((n) => n.toFixed(2))
          .join(' ')}`,
        `server: embedded stack in a child process (SQLite under ${ready.dataDir}, dev identity); load generator: this process`,
        `open loop: ${options.rate} req/s for ${options.duration} s per target, each after ${options.warmup} s of warm-up...`,
        '',
      ].join('\n'),
    );
    const open: RunResult[] = [];
    for (const target of targets) {
      // Warm up right before the run: an idle gap longer than the server's keep-alive timeout
      // would let it close sockets the agent is about to reuse.
      const warm = await openLoop(target, options.rate, options.warmup, agent);
      if (warm.ok !== warm.sent) throw new Error(`warm-up of ${target.label} failed: ${[...warm.failures].join(' ')}`);
      const profile = target === create ? profileFile('create-open-loop') : undefined;
      const { result, server, machine } = await child.phase(() => openLoop(target, options.rate, options.duration, agent), profile);
      open.push({ ...result, server, machine });
    }
    agent.destroy();

    process.stdout.write(`closed loop: ${options.connections} connections for ${options.duration} s per target...\n`);
    const closed: RunResult[] = [];
    for (const target of targets) {
      const profile = target === create ? profileFile('create-closed-loop') : undefined;
      const { result, server, machine } = await child.phase(() => closedLoop(target, options.connections, options.duration), profile);
      closed.push({ ...result, server, machine });
    }

    const p99 = (label: string) => percentile(open.find((r) => r.label === label)!.latencies, 99);
    const createP99 = p99(create.label);
    const all = [...open, ...closed];
    const failed = all.some((r) => r.failures.size > 0);
    const busiest = Math.max(...all.map((r) => r.machine.others ?? 0));
    process.stdout.write(
      [
        '',
        `Open loop, ${options.rate} req/s, ${options.duration} s per target, after ${options.warmup} s warm-up; latency from each request's due time`,
        report(open, true),
        `  p99 create / p99 bare handler: ${(createP99 / p99(health.label)).toFixed(1)}×`,
        '',
        `Closed loop (max throughput), ${options.connections} connections, ${options.duration} s per target (autocannon)`,
        report(closed, false),
        '',
        LEGEND,
        '',
        `Target: p99 ≤ 10 ms at ${options.rate} req/s for POST /api/tee/sessions: ${createP99 <= 10 ? 'MET' : 'MISSED'} (p99 ${createP99.toFixed(2)} ms)`,
        failed ? 'WARNING: some requests failed (see FAILURES above); their latencies are not in the figures.' : 'Every request succeeded.',
        busiest > 0.1 ? `WARNING: other processes used up to ${(busiest * 100).toFixed(0)}% of the CPU during a run; the figures are not clean.` : '',
        '',
      ].join('\n'),
    );
    if (options.profile) {
      // Profiling slows the server: the create rows above are not clean figures in this mode.
      for (const [name, runs] of [
        ['create-open-loop', open],
        ['create-closed-loop', closed],
      ] as const) {
        const run = runs.find((r) => r.label === create.label)!;
        const answered = run.ok + [...run.failures.values()].reduce((a, b) => a + b, 0);
        process.stdout.write(`\nWhere the time went, ${name} (${profileFile(name)}):\n${summarizeProfile(profileFile(name)!, answered)}\n`);
      }
    }
    if (failed) process.exitCode = 1;
  } finally {
    await child.stop();
  }
}

if (process.argv[2] === SERVER_FLAG) {
  serve(process.argv[3] ?? tmpdir()).catch((error: unknown) => {
    process.stderr.write(`bench server: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  });
} else {
  main().catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
