import { GoogleAuth, type IdTokenClient } from 'google-auth-library';

/** What the token source needs from google-auth-library; `GoogleAuth` satisfies it. */
export interface IdTokenAuth {
  getIdTokenClient(targetAudience: string): Promise<Pick<IdTokenClient, 'getRequestHeaders'>>;
}

/**
 * Google ID tokens of the control plane's service account for an audience (the worker endpoint's
 * URL, which the worker verifies). One client per audience; each caches its token until shortly
 * before it expires. A failure is retried on the next call.
 */
export function googleIdTokenSource(auth: IdTokenAuth = new GoogleAuth()): (audience: string) => Promise<string> {
  const clients = new Map<string, Promise<Pick<IdTokenClient, 'getRequestHeaders'>>>();
  return async (audience) => {
    let client = clients.get(audience);
    if (!client) {
      client = auth.getIdTokenClient(audience);
      clients.set(audience, client);
      client.catch(() => clients.delete(audience));
    }
    const header = (await (await client).getRequestHeaders()).get('authorization') ?? '';
    const match = /^Bearer (\S+)$/.exec(header);
    if (!match) throw new Error('google-auth-library returned no ID token');
    return match[1]!;
  };
}
