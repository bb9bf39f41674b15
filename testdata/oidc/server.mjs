// A real OAuth 2.0 / OpenID Connect server (npm oidc-provider, pinned in
// package.json) laid out on Panopto's paths, plus a protected API stand-in,
// for cmd/panopto-sidecar's TestAgainstOIDCProvider.
//
// README
//   Install once: `bash .ci/oidc.sh` (runs `npm ci` here when node_modules is
//   missing; npm's cache lives under $HOME/.cache/npm). Run by hand:
//     OIDC_PORT=9300 OIDC_REDIRECT_URI=http://127.0.0.1:9127/redirect \
//       node testdata/oidc/server.mjs
//   Everything listens on 127.0.0.1 only. oidc-provider 9 prints "Unsupported
//   runtime" on Node.js 20 (it asks for 22 LTS); it works on 20.19+ all the same.
//
//   Environment (all optional except OIDC_PORT):
//     OIDC_PORT           port on 127.0.0.1 (0: any; the chosen one is printed)
//     OIDC_ISSUER         default http://127.0.0.1:PORT/Panopto/oauth2
//     OIDC_AT_TTL         access token lifetime, seconds (default 20)
//     OIDC_RT_TTL         refresh token lifetime, seconds (default 3600)
//     OIDC_CLIENT_ID      the sidecar's client (default ontrack-sidecar)
//     OIDC_CLIENT_SECRET  its secret, client_secret_basic
//     OIDC_REDIRECT_URI   its one registered redirect URI (the sidecar's /redirect)
//     OIDC_ACCOUNT        the account the interaction logs in when the authorize
//                         request names none (default ontrack-service)
//     OIDC_USERS          comma-separated login names a login_hint may name
//                         (default alice,bob,mallory); id_tokens carry sub = the name
//
//   Served on the issuer's path (Panopto's layout):
//     /Panopto/oauth2/.well-known/openid-configuration   discovery
//     /Panopto/oauth2/connect/authorize                  code flow, PKCE S256 required
//     /Panopto/oauth2/connect/token                      authorization_code, refresh_token
//     /Panopto/oauth2/connect/revocation, /connect/introspect, /connect/userinfo, /jwks
//     /Panopto/oauth2/interaction/:uid                   no human: logs in the user the
//                                                        login_hint names (one of OIDC_USERS),
//                                                        else OIDC_ACCOUNT; consents to what
//                                                        was asked
//   and beside it:
//     /Panopto/api/v1/...  protected API stand-in: introspects the bearer at
//                          /connect/introspect as resource server client
//                          "panopto-api"; 200 JSON if active with scope api and
//                          audience the API, else 401
//     GET /_stats          counts: API requests, inactive bearers, token calls
//                          by grant type, refresh tokens consumed, reuse
//                          detections, grants revoked, errors
//     GET /_issued         every access token, refresh token and id_token issued
//                          (a test peer only: lets a test look for leaks of any cycle)
//     POST /_next_login?user=NAME   the next login logs NAME in, whatever the
//                          login_hint says (a student using someone else's link)
//
//   Token policy: opaque access tokens for the API resource (scope "api",
//   aud = {origin}/Panopto/api) whatever the client asks (resource
//   indicators with a default resource), refresh tokens only with
//   offline_access (which oidc-provider grants only with prompt=consent),
//   rotated on every use; presenting a rotated refresh token again revokes
//   the whole grant (oidc-provider's reuse detection), and is counted.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const env = process.env;
const port = Number(env.OIDC_PORT ?? '0');
const atTTL = Number(env.OIDC_AT_TTL || '20');
const rtTTL = Number(env.OIDC_RT_TTL || '3600');
const clientID = env.OIDC_CLIENT_ID || 'ontrack-sidecar';
const clientSecret = env.OIDC_CLIENT_SECRET || 'client-secret-4f9a2c71e0';
const redirectURI = env.OIDC_REDIRECT_URI || 'http://127.0.0.1:9127/redirect';
const account = env.OIDC_ACCOUNT || 'ontrack-service';
const users = new Set((env.OIDC_USERS || 'alice,bob,mallory').split(',').filter(Boolean));
let nextLogin = ''; // one-shot override of the next login's user
const apiClientID = 'panopto-api';
const apiClientSecret = randomBytes(24).toString('base64url');

const stats = {
  api_requests: 0, // requests to /Panopto/api/
  api_ok: 0, // answered 200
  missing_bearers: 0, // no Authorization: Bearer
  inactive_bearers: 0, // a bearer that introspection did not accept
  introspection_failures: 0, // introspection call itself failed
  logins: 0, // interactions that logged the account in
  consents: 0, // interactions that granted consent
  token_calls: {}, // successful token endpoint calls by grant_type
  token_errors: {}, // failed token endpoint calls by error
  access_tokens_issued: 0,
  refresh_tokens_consumed: 0, // rotations
  reuse_detected: 0, // a rotated refresh token presented again
  grants_revoked: 0,
  server_errors: 0,
  last_token_error: '',
};

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server.address().port));
  });
}

const server = http.createServer();
const boundPort = await listen(server);
const origin = `http://127.0.0.1:${boundPort}`;
const issuer = env.OIDC_ISSUER || `${origin}/Panopto/oauth2`;
const prefix = new URL(issuer).pathname.replace(/\/$/, '');
const apiResource = `${new URL(issuer).origin}/Panopto/api`;

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientID,
      client_secret: clientSecret,
      redirect_uris: [redirectURI],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      // The API stand-in, a resource server that only introspects.
      client_id: apiClientID,
      client_secret: apiClientSecret,
      redirect_uris: [],
      grant_types: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  routes: {
    authorization: '/connect/authorize',
    token: '/connect/token',
    revocation: '/connect/revocation',
    introspection: '/connect/introspect',
    userinfo: '/connect/userinfo',
    end_session: '/connect/endsession',
    jwks: '/jwks',
  },
  scopes: ['openid', 'offline_access'],
  pkce: { required: () => true },
  rotateRefreshToken: true,
  ttl: {
    AccessToken: atTTL,
    AuthorizationCode: 60,
    IdToken: 3600,
    RefreshToken: rtTTL,
    Grant: rtTTL,
    Session: 3600,
    Interaction: 600,
  },
  features: {
    devInteractions: { enabled: false },
    introspection: {
      enabled: true,
      // Only the API stand-in (the resource server) may introspect.
      allowedPolicy: (_ctx, client) => client.clientId === apiClientID,
    },
    revocation: {
      enabled: true,
      allowedPolicy: (_ctx, client, token) => token.clientId === client.clientId,
    },
    userinfo: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // The sidecar sends no resource parameter: every token is for the API.
      defaultResource: () => apiResource,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => {
        if (resource !== apiResource) throw new errors.InvalidTarget();
        return { scope: 'api', audience: apiResource, accessTokenTTL: atTTL, accessTokenFormat: 'opaque' };
      },
    },
  },
  interactions: {
    url: (_ctx, interaction) => `${prefix}/interaction/${interaction.uid}`,
  },
  findAccount: async (_ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub }),
  }),
});

// Counters from oidc-provider's own events.
provider.on('grant.success', (ctx) => {
  const gty = ctx.oidc.params?.grant_type ?? 'unknown';
  stats.token_calls[gty] = (stats.token_calls[gty] ?? 0) + 1;
});
provider.on('grant.error', (_ctx, err) => {
  const key = err.error ?? 'unknown';
  stats.token_errors[key] = (stats.token_errors[key] ?? 0) + 1;
  const detail = err.error_detail ?? err.error_description ?? err.message;
  stats.last_token_error = `${err.error}: ${detail}`;
  if (detail === 'refresh token already used') stats.reuse_detected++;
  console.error(`token endpoint error: ${stats.last_token_error}`);
});
// Every token value handed out (opaque: the value is the jti), so a test can
// look for any of them, from any refresh cycle, where none may appear.
const issued = { access_tokens: [], refresh_tokens: [], id_tokens: [] };
provider.on('grant.success', (ctx) => {
  if (typeof ctx.body?.id_token === 'string') issued.id_tokens.push(ctx.body.id_token);
});
provider.on('access_token.saved', (token) => {
  stats.access_tokens_issued++;
  issued.access_tokens.push(token.jti);
});
provider.on('refresh_token.saved', (token) => { issued.refresh_tokens.push(token.jti); });
provider.on('refresh_token.consumed', () => { stats.refresh_tokens_consumed++; });
provider.on('grant.revoked', () => { stats.grants_revoked++; });
provider.on('server_error', (_ctx, err) => {
  stats.server_errors++;
  console.error('server_error:', err);
});
for (const ev of ['authorization.error', 'discovery.error', 'introspection.error', 'revocation.error', 'userinfo.error']) {
  provider.on(ev, (_ctx, err) => console.error(`${ev}: ${err.error}: ${err.error_description ?? err.message}`));
}

// The interaction without a human: log the fixed account in, then consent to
// exactly what the client asked for.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, session, grantId } = details;
  if (prompt.name === 'login') {
    stats.logins++;
    let who = users.has(params.login_hint) ? params.login_hint : account;
    if (nextLogin) {
      who = nextLogin;
      nextLogin = '';
    }
    await provider.interactionFinished(req, res, { login: { accountId: who } }, { mergeWithLastSubmission: false });
    return;
  }
  if (prompt.name === 'consent') {
    stats.consents++;
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const d = prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
    if (d.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(d.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    const id = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId: id } }, { mergeWithLastSubmission: true });
    return;
  }
  throw new Error(`unexpected prompt ${prompt.name}`);
}

// introspect asks the provider's own introspection endpoint about token, as
// a resource server would.
async function introspect(token) {
  const resp = await fetch(`${issuer}/connect/introspect`, {
    method: 'POST',
    headers: {
      authorization: `Basic ${Buffer.from(`${encodeURIComponent(apiClientID)}:${encodeURIComponent(apiClientSecret)}`).toString('base64')}`,
      'content-type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ token, token_type_hint: 'access_token' }),
  });
  if (resp.status !== 200) throw new Error(`introspection answered ${resp.status}`);
  return resp.json();
}

function json(res, status, body, headers = {}) {
  const b = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(b), ...headers });
  res.end(b);
}

async function api(req, res) {
  stats.api_requests++;
  const m = /^Bearer ([^\s]+)$/.exec(req.headers.authorization ?? '');
  if (!m) {
    stats.missing_bearers++;
    json(res, 401, { Message: 'Authorization has been denied for this request.' }, { 'www-authenticate': 'Bearer' });
    return;
  }
  let info;
  try {
    info = await introspect(m[1]);
  } catch (err) {
    stats.introspection_failures++;
    console.error('introspection failed:', err.message);
    json(res, 500, { Message: 'introspection failed' });
    return;
  }
  const aud = [].concat(info.aud ?? []);
  const scopes = (info.scope ?? '').split(' ');
  if (!info.active || !scopes.includes('api') || !aud.includes(apiResource) || info.client_id !== clientID) {
    stats.inactive_bearers++;
    console.error(`inactive bearer on ${req.method} ${req.url.split('?')[0]}: active=${info.active} scope=${info.scope} aud=${aud}`);
    json(res, 401, { Message: 'Authorization has been denied for this request.' }, { 'www-authenticate': 'Bearer error="invalid_token"' });
    return;
  }
  stats.api_ok++;
  req.resume();
  json(res, 200, { Results: [], Path: req.url.split('?')[0], User: info.sub });
}

const callback = provider.callback();

server.on('request', (req, res) => {
  const path = req.url.split('?')[0];
  const fail = (err) => {
    console.error(`${req.method} ${path}:`, err);
    if (!res.headersSent) json(res, 500, { error: 'server_error' });
    else res.destroy();
  };
  if (req.method === 'GET' && path === '/_stats') {
    json(res, 200, stats);
  } else if (req.method === 'GET' && path === '/_issued') {
    json(res, 200, issued);
  } else if (req.method === 'POST' && path === '/_next_login') {
    nextLogin = new URL(req.url, origin).searchParams.get('user') ?? '';
    json(res, 200, { next_login: nextLogin });
  } else if (path.startsWith('/Panopto/api/')) {
    api(req, res).catch(fail);
  } else if (path.startsWith(`${prefix}/interaction/`)) {
    interaction(req, res).catch(fail);
  } else if (path === prefix || path.startsWith(`${prefix}/`)) {
    // Mounted on the issuer's path, as Express's app.use(prefix, ...) does.
    req.originalUrl = req.url;
    req.url = req.url.slice(prefix.length) || '/';
    callback(req, res);
  } else {
    json(res, 404, { error: 'not_found' });
  }
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

console.log(JSON.stringify({ ready: true, port: boundPort, issuer, api_resource: apiResource, access_token_ttl: atTTL }));
