import { CleanroomError } from '../../protocol/errors.ts';

/** The body as text, refusing (without reading on) anything over `maxBytes` with `PAYLOAD_TOO_LARGE`. */
export async function readCappedText(request: Request, maxBytes: number): Promise<string> {
  const tooLarge = () => new CleanroomError('PAYLOAD_TOO_LARGE', `the body is larger than ${maxBytes} bytes`);
  if (Number(request.headers.get('content-length') ?? '0') > maxBytes) throw tooLarge();
  if (!request.body) return '';
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
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new CleanroomError('TASK_MALFORMED', 'the body is not UTF-8 text');
  }
}
