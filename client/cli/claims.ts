/** The claims the CLI reads from an ID token to label it. */
export interface UnverifiedClaims {
  email: string | null;
  expires_at: string | null;
}

/**
 * Reads `email` and `exp` from a JWT payload WITHOUT verifying it. Only for display and for
 * knowing when to refresh; the API verifies every token it receives.
 */
export function unverifiedClaims(token: string): UnverifiedClaims {
  const payload = token.split('.')[1];
  let claims: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(Buffer.from(payload ?? '', 'base64url').toString('utf8'));
    if (parsed !== null && typeof parsed === 'object') claims = parsed as Record<string, unknown>;
  } catch {
    // Not a JWT: store it anyway, the API will say whether it accepts it.
  }
  const email = typeof claims.email === 'string' ? claims.email.toLowerCase() : null;
  const exp = typeof claims.exp === 'number' && Number.isFinite(claims.exp) ? claims.exp : null;
  const expires = exp === null ? null : new Date(exp * 1000);
  return { email, expires_at: expires && !Number.isNaN(expires.getTime()) ? expires.toISOString() : null };
}
