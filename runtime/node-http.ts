import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';

type WebHandler = (request: Request) => Promise<Response>;

/**
 * Adapts a web-standard handler to node:http (and to the Functions Framework, whose Express
 * request has already read the body into `rawBody`). The request's `signal` aborts when the
 * client goes away before the answer is written, so long work (a query) can be stopped.
 * Shared by the control plane and the worker, which may not import each other.
 */
export function toNodeListener(handler: WebHandler): (req: IncomingMessage & { rawBody?: Buffer }, res: ServerResponse) => void {
  return (req, res) => {
    // Writing the answer can only fail when the connection broke: then there is no one to tell.
    serve(handler, req, res).catch(() => res.destroy());
  };
}

async function serve(handler: WebHandler, req: IncomingMessage & { rawBody?: Buffer }, res: ServerResponse): Promise<void> {
  const closed = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) closed.abort();
  });
  let response: Response;
  try {
    response = await handler(toRequest(req, closed.signal));
  } catch {
    // Only a malformed request line or Host header gets here; the app maps everything else.
    response = new Response(JSON.stringify({ error: { code: 'VALIDATION_FAILED', message: 'malformed request' } }), {
      status: 400,
      headers: { 'content-type': 'application/json; charset=utf-8' },
    });
  }
  await writeResponse(response, res);
}

function toRequest(req: IncomingMessage & { rawBody?: Buffer }, signal: AbortSignal): Request {
  const host = req.headers.host ?? 'localhost';
  const url = new URL(req.url ?? '/', `http://${host}`);
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
  }
  const method = req.method ?? 'GET';
  const init: RequestInit & { duplex?: 'half' } = { method, headers, signal };
  if (method !== 'GET' && method !== 'HEAD') {
    if (req.rawBody) init.body = new Uint8Array(req.rawBody);
    else if (!req.readableEnded) {
      init.body = Readable.toWeb(req) as ReadableStream<Uint8Array>;
      init.duplex = 'half';
    }
  }
  return new Request(url, init);
}

async function writeResponse(response: Response, res: ServerResponse): Promise<void> {
  const body = Buffer.from(await response.arrayBuffer());
  const headers: Record<string, string> = {};
  response.headers.forEach((value, name) => (headers[name] = value));
  headers['content-length'] = String(body.byteLength);
  res.writeHead(response.status, headers);
  res.end(body);
}
