import { CleanroomError } from '../protocol/errors.ts';

/**
 * A request's (or a response's) body as bytes, refusing (without reading on) anything over
 * `maxBytes` with `PAYLOAD_TOO_LARGE`, whatever `Content-Length` claimed. Shared by the control
 * plane and the worker; each decodes the bytes with its own error code.
 */
export async function readCappedBytes(request: Pick<Request, 'headers' | 'body'>, maxBytes: number): Promise<Uint8Array> {
  const tooLarge = () => new CleanroomError('PAYLOAD_TOO_LARGE', `the body is larger than ${maxBytes} bytes`);
  if (Number(request.headers.get('content-length') ?? '0') > maxBytes) throw tooLarge();
  if (!request.body) return new Uint8Array();
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      throw tooLarge();
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

/** Strict UTF-8 decoding; `undefined` for bytes that are not UTF-8. */
export function utf8OrUndefined(bytes: Uint8Array): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}
