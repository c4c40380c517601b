import type { DataPathService } from '../core/datapath-service.ts';
import type { ApiDeps } from '../http/types.ts';

/** The data path service; a deployable that mounts data routes without one is misbuilt (500). */
export function datapathService(deps: ApiDeps): DataPathService {
  if (!deps.datapath) throw new TypeError('the composition root did not provide ApiDeps.datapath');
  return deps.datapath;
}
