import type { DatasetHeader } from '../../protocol/dataset-format.ts';
import type { ErrorCode } from '../../protocol/errors.ts';

/** Messages from the worker to a decryption thread: one job is start, chunks, end. */
export type ThreadRequest = { t: 'start'; key: Uint8Array; expect: { session_id: string; dataset_id: string }; fd: number } | { t: 'chunk'; bytes: Uint8Array } | { t: 'end' };

/** Messages back: an ack per chunk taken (flow control), then done or a fixed code. */
export type ThreadReply = { t: 'ack' } | { t: 'done'; header: DatasetHeader } | { t: 'error'; code: ErrorCode };
