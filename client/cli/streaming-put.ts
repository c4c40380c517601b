import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import type { FetchLike } from '../sdk/transport.ts';

const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);

/**
 * `fetch` for the upload of a streamed body, on node:http: the file is read only as fast as the
 * socket drains. Node's fetch was measured holding the ciphertext of a whole upload (peak RSS
 * 899 MiB for a 512 MiB file, 317 MiB for 64 MiB); with this the CLI's memory does not grow with
 * the file. Anything without a stream body goes to `fallback`.
 */
export function streamingPut(fallback: FetchLike): FetchLike {
  return async (input, init) => {
    if (!(init.body instanceof ReadableStream)) return fallback(input, init);
    const url = new URL(input);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const headers = Object.fromEntries(new Headers(init.headers).entries());
    return new Promise<Response>((resolve, reject) => {
      const req = send(url, { method: init.method ?? 'PUT', headers, ...(init.signal ? { signal: init.signal } : {}) }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const status = res.statusCode ?? 502;
          const answer = new Headers();
          for (const [name, value] of Object.entries(res.headers)) if (typeof value === 'string') answer.set(name, value);
          resolve(new Response(NULL_BODY_STATUSES.has(status) ? null : Buffer.concat(chunks), { status, headers: answer }));
        });
      });
      req.on('error', reject);
      pipeline(Readable.fromWeb(init.body as unknown as NodeReadableStream<Uint8Array>), req).catch(reject);
    });
  };
}
