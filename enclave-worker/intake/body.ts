import { CleanroomError } from '../../protocol/errors.ts';
import { readCappedBytes, utf8OrUndefined } from '../../runtime/read-body.ts';

/** The task body as text: `PAYLOAD_TOO_LARGE` over `maxBytes`, `TASK_MALFORMED` if not UTF-8. */
export async function readCappedText(request: Request, maxBytes: number): Promise<string> {
  const text = utf8OrUndefined(await readCappedBytes(request, maxBytes));
  if (text === undefined) throw new CleanroomError('TASK_MALFORMED', 'the body is not UTF-8 text');
  return text;
}
