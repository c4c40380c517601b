import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request the endpoint received. */
export interface Arrival {
  /** Harness time when the request (with its whole body) arrived. */
  at: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** True once the caller closed the connection before an answer was sent. */
  closedEarly: boolean;
}

/** What the endpoint does with arrival number `index` (0-based). */
export type Reply = { status: number; headers?: Record<string, string> } | 'hold';

/**
 * A real node:http server standing in for the worker's intake: it records every arrival and
 * answers as `script` says; `hold` keeps the request open until `release()`.
 */
export class TestEndpoint {
  readonly arrivals: Arrival[] = [];
  /** Highest number of requests open at once. */
  maxOpen = 0;
  #open = 0;
  #held: Array<(reply: { status: number; headers?: Record<string, string> }) => void> = [];
  #server: Server | undefined;
  #port = 0;
  script: (index: number, arrival: Arrival) => Reply = () => ({ status: 200 });
  readonly #now: () => number;

  constructor(now: () => number) {
    this.#now = now;
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}/tasks`;
  }

  get port(): number {
    return this.#port;
  }

  /** Starts listening, on `port` when given (to come back up where the queue expects it). */
  async start(port = this.#port): Promise<this> {
    const server = createServer((req, res) => {
      this.#open++;
      this.maxOpen = Math.max(this.maxOpen, this.#open);
      let settled = false;
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const arrival: Arrival = { at: this.#now(), headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), closedEarly: false };
        const index = this.arrivals.push(arrival) - 1;
        res.on('close', () => {
          if (!settled) arrival.closedEarly = true;
          this.#open--;
        });
        const reply = this.script(index, arrival);
        const send = (r: { status: number; headers?: Record<string, string> }) => {
          if (settled || res.destroyed) return;
          settled = true;
          answer(res, r);
        };
        if (reply === 'hold') this.#held.push(send);
        else send(reply);
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.#server = server;
    this.#port = (server.address() as AddressInfo).port;
    return this;
  }

  /** Answers every held request with `reply`. */
  release(reply: { status: number; headers?: Record<string, string> } = { status: 200 }): void {
    for (const send of this.#held.splice(0)) send(reply);
  }

  get openCount(): number {
    return this.#open;
  }

  /** Stops listening and drops every connection (the worker going down). */
  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (!server) return;
    this.#held = [];
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

function answer(res: ServerResponse, reply: { status: number; headers?: Record<string, string> }): void {
  res.writeHead(reply.status, { 'content-type': 'application/json', ...reply.headers });
  res.end(JSON.stringify({ status: reply.status }));
}
