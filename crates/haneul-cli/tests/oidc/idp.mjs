// The identity provider of Haneul's sign-in tests: oidc-provider (a certified OpenID Provider)
// on loopback, with the parts a real institution's provider would put behind a login page
// replaced by a control API the test drives:
//   POST /test/login   {sub, email, email_verified, preferred_username, org, groups}: the
//                      person the next login interaction signs in as (consent is granted at once)
//   POST /test/rotate  a new signing key; the old one is still published (rotation)
//   POST /test/ttl     {id_token: seconds}: the lifetime of ID tokens from now on
// Usage: node idp.mjs PORT REDIRECT_URI PORTAL_SECRET  (prints "idp listening on URL").

import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const [port, redirectUri, portalSecret] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const accounts = new Map();
let next = null;
let idTokenTtl = 3600;

function newKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: crypto.randomUUID(), use: 'sig', alg: 'RS256' };
}
let keys = [newKey()];

function makeProvider() {
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'haneul-portal',
        client_secret: portalSecret,
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
      },
      {
        client_id: 'haneul-cli',
        token_endpoint_auth_method: 'none',
        grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
        response_types: [],
        redirect_uris: [],
      },
    ],
    jwks: { keys },
    cookies: { keys: ['haneul-test-cookie-key'] },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['preferred_username', 'name'],
      org: ['org'],
      groups: ['groups'],
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'org', 'groups'],
    // The claims go in the ID token itself (Haneul maps them from there).
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: false },
      deviceFlow: { enabled: true },
      revocation: { enabled: true },
    },
    pkce: { required: () => false },
    ttl: {
      IdToken: () => idTokenTtl,
      AccessToken: 600,
      AuthorizationCode: 60,
      DeviceCode: 600,
      Grant: 3600,
      Interaction: 600,
      RefreshToken: 86400,
      Session: 3600,
    },
    issueRefreshToken: async (ctx, client, code) =>
      client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
    async findAccount(ctx, id) {
      const claims = accounts.get(id);
      if (!claims) return undefined;
      return { accountId: id, claims: async () => ({ ...claims, sub: id }) };
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  });
  provider.proxy = false;
  return provider;
}

let provider = makeProvider();

async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session } = details;
  if (prompt.name === 'login') {
    if (!next) {
      res.writeHead(409, { 'content-type': 'text/plain' });
      res.end('no login set up: POST /test/login first');
      return;
    }
    accounts.set(next.sub, next);
    const sub = next.sub;
    await provider.interactionFinished(req, res, { login: { accountId: sub } }, { mergeWithLastSubmission: false });
    return;
  }
  // Consent: grant what was asked.
  let grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

function body(req) {
  return new Promise((resolve, reject) => {
    let s = '';
    req.on('data', (c) => { s += c; });
    req.on('end', () => { try { resolve(s ? JSON.parse(s) : {}); } catch (e) { reject(e); } });
  });
}

const server = http.createServer(async (req, res) => {
  try {
    if (req.url.startsWith('/interaction/')) return await interaction(req, res);
    if (req.method === 'POST' && req.url === '/test/login') {
      next = await body(req);
      res.writeHead(204); return res.end();
    }
    if (req.method === 'POST' && req.url === '/test/rotate') {
      keys = [newKey(), keys[0]];
      provider = makeProvider();
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ kid: keys[0].kid }));
    }
    if (req.method === 'POST' && req.url === '/test/ttl') {
      idTokenTtl = (await body(req)).id_token;
      res.writeHead(204); return res.end();
    }
    return provider.callback()(req, res);
  } catch (e) {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(e && e.stack || e));
  }
});
server.listen(Number(port), '127.0.0.1', () => {
  console.log(`idp listening on ${issuer}`);
});
