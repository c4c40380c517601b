import * as v from 'valibot';
import { CleanroomError } from '../../protocol/errors.ts';
import { EmailSchema } from '../../protocol/session.ts';
import { DEV_AUDIENCE, DEV_ISSUER } from '../adapters/identity/dev-idp.ts';
import { readJson } from '../http/body.ts';
import { json } from '../http/responses.ts';
import type { Handler, HandlerContext } from '../http/types.ts';

const TokenRequestSchema = v.strictObject({
  email: EmailSchema,
  nonce: v.optional(v.pipe(v.string(), v.minLength(1), v.maxLength(256))),
});

function devIdp(ctx: HandlerContext) {
  if (!ctx.deps.devIdp) throw new CleanroomError('ROUTE_NOT_FOUND', 'no dev identity provider here');
  return ctx.deps.devIdp;
}

/** `POST /dev-idp/token {email, nonce?}`: an ID token for anyone. Local mode only. */
export const devIdpToken: Handler = async (ctx) => {
  const { email, nonce } = await readJson(ctx.request, TokenRequestSchema);
  const issued = await devIdp(ctx).issue(email, nonce === undefined ? {} : { nonce });
  return json({ id_token: issued.token, expires_at: issued.expires_at, token_type: 'Bearer' });
};

/** `GET /dev-idp/jwks.json`. */
export const devIdpJwks: Handler = async (ctx) => json(devIdp(ctx).jwks(), 200, { 'cache-control': 'max-age=60' });

/** `GET /dev-idp/.well-known/openid-configuration`. */
export const devIdpConfiguration: Handler = async (ctx) => {
  devIdp(ctx);
  const base = `${ctx.url.origin}/dev-idp`;
  return json({
    issuer: DEV_ISSUER,
    jwks_uri: `${base}/jwks.json`,
    token_endpoint: `${base}/token`,
    id_token_signing_alg_values_supported: ['ES256'],
    audience: DEV_AUDIENCE,
  });
};
