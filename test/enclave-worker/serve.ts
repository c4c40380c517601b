import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';

/**
 * Serves a web-standard handler on node:http, with `request.signal` aborted when the client
 * closes the connection before the answer is written (so a query dies with its task request).
 */
export async function serve(handler: (request: Request) => Promise<Response>, port = 0): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const server = createServer((req, res) => void respond(handler, req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/tasks`;
  return {
    server,
    url,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function respond(handler: (request: Request) => Promise<Response>, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const controller = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) controller.abort(new Error('client closed the request'));
  });
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    for (const v of Array.isArray(value) ? value : value === undefined ? [] : [value]) headers.append(name, v);
  }
  const init: RequestInit & { duplex?: 'half' } = { method: req.method ?? 'GET', headers, signal: controller.signal };
  if (init.method !== 'GET' && init.method !== 'HEAD') {
    init.body = Readable.toWeb(req) as ReadableStream<Uint8Array>;
    init.duplex = 'half';
  }
  const response = await handler(new Request(`http://${req.headers.host ?? 'localhost'}${req.url ?? '/'}`, init));
  const body = Buffer.from(await response.arrayBuffer());
  if (res.destroyed) return;
  const out: Record<string, string> = {};
  response.headers.forEach((value, name) => (out[name] = value));
  res.writeHead(response.status, { ...out, 'content-length': String(body.byteLength) });
  res.end(body);
}
