import { CleanroomError } from '../../protocol/errors.ts';
import { errorResponse } from '../http/responses.ts';
import type { Handler } from '../http/types.ts';

const SUCCESSOR = '/api/tee/sessions';

/**
 * The per-session-VM generation's `/api/tee/environments` routes are gone: 410 with a pointer to
 * the sessions API, as `Deprecation` and `Link` headers too.
 */
export const environmentsMoved: Handler = async ({ url }) => {
  const successor = url.pathname.replace(/^\/api\/tee\/environments/, SUCCESSOR);
  return errorResponse(new CleanroomError('ENDPOINT_MOVED', `/api/tee/environments was replaced by ${SUCCESSOR}; use ${successor}`), {
    deprecation: 'true',
    link: `<${successor}>; rel="successor-version"`,
  });
};
