import { CleanroomError } from '../../protocol/errors.ts';
import { handleLocalUpload } from '../../runtime/object-store/local-upload.ts';
import type { Handler } from '../http/types.ts';

/**
 * `PUT /objects/<key>?expires=&max=&sig=` (embedded stack only): the local twin of a Cloud Storage
 * signed upload. The URL's signature is the authorisation; the body streams into the object store
 * under the URL's size cap (the API's JSON body limit does not apply here).
 */
export const putLocalObject: Handler = async ({ request, deps }) => {
  if (!deps.localUploads) throw new CleanroomError('ROUTE_NOT_FOUND', 'no local object store here');
  const { store, secret, now } = deps.localUploads;
  return handleLocalUpload(request, { store, secret, ...(now ? { now } : {}) });
};
