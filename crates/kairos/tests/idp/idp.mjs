// A real OpenID Connect provider (panva's oidc-provider) for the console's single sign-on
// tests. Started by the test harness:
//
//   node idp.mjs '<config JSON>'
//
// config: { "clients": [{ "client_id", "client_secret" }], "accounts": { "<login>": { claims } } }
// It listens on a free loopback port, prints `issuer <URL>`, then reads one line from
// stdin: the redirect URI every client registers (the broker's /ui/sso/callback, known
// only once the broker listens); then it prints `ready`.
//
// Sign-in uses the provider's development interactions: a login form that takes any
// login name (with any password) and a "cancel" link that answers access_denied. A login
// not listed in `accounts` signs in with preferred_username = the login and no groups.
// Consent is given for every client (they are first-party here).
import http from 'node:http';
import readline from 'node:readline';
import Provider from 'oidc-provider';

const config = JSON.parse(process.argv[2] ?? '{}');
const accounts = config.accounts ?? {};

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;
console.log(`issuer ${issuer}`);

const lines = readline.createInterface({ input: process.stdin });
const redirectUri = await new Promise((resolve) => lines.once('line', (l) => resolve(l.trim())));

const provider = new Provider(issuer, {
  clients: (config.clients ?? []).map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  })),
  // Claims in the ID token itself, not only at userinfo.
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name', 'groups'],
    email: ['email'],
  },
  pkce: { required: () => true },
  cookies: { keys: ['kairos-test-idp-cookie-key'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const claims = accounts[id] ?? { preferred_username: id, groups: [] };
    return {
      accountId: id,
      async claims() {
        return { sub: id, ...claims };
      },
    };
  },
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid profile email');
    grant.addOIDCClaims(['preferred_username', 'name', 'groups', 'email']);
    await grant.save();
    return grant;
  },
});

server.on('request', provider.callback());
console.log('ready');
lines.on('close', () => process.exit(0));
