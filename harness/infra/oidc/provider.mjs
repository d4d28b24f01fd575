// A real OpenID Connect provider (panva's oidc-provider) for the booking
// service's tests, so that `--auth jwt` is proven against tokens the service
// did not mint. Started by harness/infra/src/oidc.rs; can be run by hand:
//
//   OIDC_CLIENT_SECRET=s3cret node provider.mjs --port 9400 --audience booking-api,account
//
// Options (each flag falls back to its environment variable):
//   --port     OIDC_PORT           required; listens on 127.0.0.1 only
//   --secret   OIDC_CLIENT_SECRET  required; the one secret every client shares
//   --audience OIDC_AUDIENCE       default booking-api; a comma list gives an array `aud`
//   --ttl      OIDC_TOKEN_TTL      access token lifetime in seconds, default 600
//
// Clients are not registered: any client id matching CLIENT_ID below is a
// client, so a test's users are just client ids (`user_alice`,
// `auth0|64f0c2...`) and a token's `sub` is that id. Tokens come from the
// client credentials grant as RS256 JWTs; POST /token with grant_type=
// client_credentials and the id and secret (HTTP Basic or form body).
//
// On Node 20 oidc-provider 9 logs "Unsupported runtime" (it wants 22 LTS);
// what is used here works on 20 (harness/infra/tests/oidc.rs).
import { generateKeyPairSync, createHash } from 'node:crypto';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    secret: { type: 'string' },
    audience: { type: 'string' },
    ttl: { type: 'string' },
  },
});

function fail(message) {
  console.error(`oidc provider: ${message}`);
  process.exit(2);
}

const port = Number(args.port ?? process.env.OIDC_PORT);
if (!Number.isInteger(port) || port < 1 || port > 65535) fail('--port (or OIDC_PORT) must be a port number');
const secret = args.secret ?? process.env.OIDC_CLIENT_SECRET;
if (!secret) fail('--secret (or OIDC_CLIENT_SECRET) is required');
const audiences = (args.audience ?? process.env.OIDC_AUDIENCE ?? 'booking-api')
  .split(',').map((a) => a.trim()).filter(Boolean);
if (audiences.length === 0) fail('--audience (or OIDC_AUDIENCE) names no audience');
const ttl = Number(args.ttl ?? process.env.OIDC_TOKEN_TTL ?? 600);
if (!Number.isInteger(ttl) || ttl < 1) fail('--ttl (or OIDC_TOKEN_TTL) must be a positive number of seconds');

// Exactly this string: the discovery document's `issuer`, the tokens' `iss`,
// and what the service is configured to require.
const issuer = `http://127.0.0.1:${port}`;

// Letters, digits and `_ . : @ - |`: enough for the ids real providers use
// (`auth0|...`, `google-oauth2|...`), nothing that needs escaping in a shell
// word or a log line.
const CLIENT_ID = /^[A-Za-z0-9_.:@|-]{1,64}$/;

// oidc-provider needs a resource indicator (an absolute URI) to issue a JWT
// access token; clients need not send one: every token request defaults to
// this one, whose audience is the configured one.
const RESOURCE = 'urn:booking-test:api';

// A fresh RSA key each start, never one kept in the repository. Rotation is
// a restart on the same port (the Rust handle does it): the old key is NOT
// published any more, so tokens signed with it fail as signed by an unknown
// key, and new ones carry a new `kid`. That is the case a verifier must get
// right; a gentle rotation (both keys published) is, for the verifier, the
// same as no rotation at all.
function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  // The kid is the key's RFC 7638 thumbprint: a new key, a new kid.
  const thumbprint = createHash('sha256')
    .update(JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n }))
    .digest('base64url');
  return { ...jwk, kid: thumbprint, alg: 'RS256', use: 'sig' };
}
console.log('generating the signing key');
const key = signingKey();
console.log(`signing key ${key.kid} ready`);

// One store for everything oidc-provider keeps (in this process only: a
// restart forgets it, as it forgets the key). Client credentials JWTs are
// not stored at all; this holds little.
const store = new Map();
const MAX_ENTRIES = 10000;

function prune() {
  const now = Date.now();
  for (const [k, v] of store) {
    if (v.expiresAt <= now) store.delete(k);
  }
  // Still full: drop the oldest (a Map iterates in insertion order).
  for (const k of store.keys()) {
    if (store.size < MAX_ENTRIES) break;
    store.delete(k);
  }
}

// The adapter: the `Client` model is answered on the fly from the id alone;
// every other model lives in `store`.
class Adapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    if (store.size >= MAX_ENTRIES) prune();
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : Infinity;
    store.set(this.key(id), { payload, expiresAt });
    if (payload.grantId) {
      const grant = `grant:${payload.grantId}`;
      store.set(grant, { payload: [...(store.get(grant)?.payload ?? []), this.key(id)], expiresAt });
    }
    if (payload.uid) store.set(`uid:${payload.uid}`, { payload: id, expiresAt });
    if (payload.userCode) store.set(`userCode:${payload.userCode}`, { payload: id, expiresAt });
  }

  async find(id) {
    if (this.model === 'Client') {
      if (typeof id !== 'string' || !CLIENT_ID.test(id)) return undefined;
      return {
        client_id: id,
        client_secret: secret,
        // A client registered for basic also authenticates with the secret
        // in the form body (client_secret_post): oidc-provider takes either.
        token_endpoint_auth_method: 'client_secret_basic',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
      };
    }
    const entry = store.get(this.key(id));
    if (!entry || entry.expiresAt <= Date.now()) return undefined;
    return entry.payload;
  }

  async findByUid(uid) {
    const id = store.get(`uid:${uid}`)?.payload;
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode(userCode) {
    const id = store.get(`userCode:${userCode}`)?.payload;
    return id === undefined ? undefined : this.find(id);
  }

  async consume(id) {
    const entry = store.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const k of store.get(`grant:${grantId}`)?.payload ?? []) store.delete(k);
    store.delete(`grant:${grantId}`);
  }
}

const provider = new Provider(issuer, {
  adapter: Adapter,
  jwks: { keys: [key] },
  features: {
    clientCredentials: { enabled: true },
    // No login pages: this provider only serves machine clients.
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      getResourceServerInfo: (_ctx, resource) => {
        if (resource !== RESOURCE) {
          throw new errors.InvalidTarget(`unknown resource; omit it or send ${RESOURCE}`);
        }
        return {
          scope: '',
          // oidc-provider takes one string here; an array is set below.
          audience: audiences[0],
          accessTokenTTL: ttl,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  formats: {
    customizers: {
      // Several audiences as one `aud` array, the way Keycloak issues
      // tokens (e.g. ["booking-api","account"]); one stays a plain string.
      jwt: (_ctx, _token, jwt) => {
        if (audiences.length > 1) jwt.payload.aud = [...audiences];
      },
    },
  },
  ttl: {
    ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? ttl,
  },
});

// Why a token request failed goes to the log, for the test that reads it.
provider.on('grant.error', (_ctx, error) => {
  const detail = error.error_detail ? ` (${error.error_detail})` : '';
  console.error(`token request failed: ${error.error ?? error.name}: ${error.error_description ?? error.message}${detail}`);
});

console.log(`binding 127.0.0.1:${port}`);
const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`listening on ${issuer} (kid ${key.kid}, aud ${audiences.join(',')})`);
});
server.on('error', (error) => fail(`cannot listen on 127.0.0.1:${port}: ${error.message}`));

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    // Keep-alive connections would hold close() open; nothing here is worth waiting for.
    process.exit(0);
  });
}
