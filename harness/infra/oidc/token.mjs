// Prints one access token, and nothing else, for a client of an OpenID
// Connect provider: the client credentials grant at the token endpoint that
// the issuer's discovery document names. The "token command" of the tests.
//
//   node token.mjs <issuer-url> <client-id> [secret]
//
// The secret defaults to OIDC_CLIENT_SECRET. OIDC_TOKEN_PARAMS, if set, is
// added to the form as is (e.g. `audience=booking-api` for providers that
// want one). Needs no packages: only Node's own fetch.
const [issuer, clientId, secretArg] = process.argv.slice(2);
const secret = secretArg ?? process.env.OIDC_CLIENT_SECRET;

function fail(message) {
  console.error(`token: ${message}`);
  process.exit(1);
}

if (!issuer || !clientId || !secret) {
  fail('usage: node token.mjs <issuer-url> <client-id> [secret] (or OIDC_CLIENT_SECRET)');
}

// A provider that hangs must not hang the test that called us.
const timeout = () => AbortSignal.timeout(10_000);

async function main() {
  const discoveryUrl = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  const discovery = await fetch(discoveryUrl, { signal: timeout() });
  if (!discovery.ok) throw new Error(`${discoveryUrl}: HTTP ${discovery.status}`);
  const { token_endpoint: tokenEndpoint } = await discovery.json();
  if (!tokenEndpoint) throw new Error(`${discoveryUrl} names no token_endpoint`);

  const form = new URLSearchParams(process.env.OIDC_TOKEN_PARAMS ?? '');
  form.set('grant_type', 'client_credentials');
  // client_secret_basic: id and secret form-urlencoded first (RFC 6749, 2.3.1),
  // so an id like `auth0|...` or one with `:` arrives intact.
  const basic = Buffer.from(
    `${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`,
  ).toString('base64');
  const response = await fetch(tokenEndpoint, {
    method: 'POST',
    headers: { authorization: `Basic ${basic}`, accept: 'application/json' },
    body: form,
    signal: timeout(),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${tokenEndpoint}: HTTP ${response.status}: ${text}`);
  const { access_token: token } = JSON.parse(text);
  if (typeof token !== 'string' || !token) throw new Error(`${tokenEndpoint} answered no access_token: ${text}`);
  process.stdout.write(`${token}\n`);
}

main().catch((error) => fail(error.cause ? `${error.message}: ${error.cause.message ?? error.cause}` : error.message));
