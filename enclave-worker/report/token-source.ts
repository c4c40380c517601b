import { decodeJwt } from 'jose';

/**
 * The worker's own ID token for its calls to the control plane, cached until a minute before it
 * expires. Locally it comes from the embedded stack's dev identity provider (WARNING: which
 * issues tokens to anyone); in GCP from the metadata server, for the VM's service account.
 */
export function cachedTokenSource(fetchToken: () => Promise<string>, now: () => number = Date.now): () => Promise<string> {
  let cached: { token: string; exp: number } | undefined;
  return async () => {
    if (cached && cached.exp * 1000 - now() > 60_000) return cached.token;
    const token = await fetchToken();
    const exp = decodeJwt(token).exp;
    cached = { token, exp: typeof exp === 'number' ? exp : 0 };
    return token;
  };
}

/** Locally: `POST {controlPlane}/dev-idp/token {email}`. */
export function devIdpToken(controlPlaneUrl: string, email: string, doFetch: typeof fetch = fetch): () => Promise<string> {
  return async () => {
    const res = await doFetch(`${controlPlaneUrl}/dev-idp/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email }),
      signal: AbortSignal.timeout(5000),
    });
    if (!res.ok) throw new Error(`dev identity provider answered ${res.status}`);
    return ((await res.json()) as { id_token: string }).id_token;
  };
}

/** In GCP: the metadata server's identity token for `audience`. */
export function metadataServerToken(audience: string, doFetch: typeof fetch = fetch): () => Promise<string> {
  return async () => {
    const url = `http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity?audience=${encodeURIComponent(audience)}&format=full`;
    const res = await doFetch(url, { headers: { 'metadata-flavor': 'Google' }, signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`metadata server answered ${res.status}`);
    return (await res.text()).trim();
  };
}
