// A real OpenID Provider for loopgate's single sign-on tests: oidc-provider
// (the certified Node.js implementation) on a loopback port, with one
// confidential client for loopgate, test accounts with a `groups` claim, a
// plain login page, consent granted at once, and hooks a test uses to make
// the provider misbehave (tokens for another audience, expired, tampered,
// with another nonce, signed by a key it does not publish, with `none` or
// HMAC) or rotate its signing key.
//
// Usage: node provider.mjs REDIRECT_BASE [CLIENT_SECRET]
//   REDIRECT_BASE: loopgate's base URL (its callback is REDIRECT_BASE/ui/oidc/callback).
// Prints one line of JSON, {"issuer": "http://127.0.0.1:PORT"}, once it listens.
//
// Test hooks (JSON bodies):
//   POST /__test/mode   {"mode": "aud" | "expired" | "tamper" | "nonce" | "unknown_kid"
//                        | "none" | "hs256" | "rotate" | ""}
//   POST /__test/groups {"account": "alice", "groups": ["lg-reviewers"]}

import http from 'node:http';
import { Buffer } from 'node:buffer';

import Provider from 'oidc-provider';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';

const redirectBase = process.argv[2];
const clientSecret = process.argv[3] ?? 'loopgate-test-secret';
if (!redirectBase) {
  console.error('usage: node provider.mjs REDIRECT_BASE [CLIENT_SECRET]');
  process.exit(2);
}

const accounts = {
  alice: { password: 'alice-pw', email: 'alice@corp.example', groups: ['lg-reviewers', 'fraud'] },
  bob: { password: 'bob-pw', email: 'bob@corp.example', groups: ['lg-admins'] },
  carol: { password: 'carol-pw', email: 'carol@corp.example', groups: ['marketing'] },
};

async function signingKey(kid) {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
  const pub = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  return { privateKey, jwk, pub };
}
const first = await signingKey('k1');
const second = await signingKey('k2');
const unpublished = await signingKey('k3');

let mode = '';
let rotated = false;

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'loopgate',
    client_secret: clientSecret,
    redirect_uris: [`${redirectBase}/ui/oidc/callback`],
    post_logout_redirect_uris: [`${redirectBase}/ui/login`],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [first.jwk] },
  cookies: { keys: ['loopgate-test-idp-cookie-key'] },
  scopes: ['openid', 'profile', 'email', 'groups'],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  // Every claim in the ID token (as Keycloak, Entra ID and Okta can be set to do).
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        ctx.body = `<!doctype html><html><head><title>Test IdP: sign out</title></head><body>
          <h1>Sign out of the test IdP?</h1>${form}
          <button id="idp-logout" type="submit" form="op.logoutForm" value="yes" name="logout">Yes, sign me out</button>
          </body></html>`;
      },
    },
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: `sub-${id}`,
          preferred_username: id,
          name: id,
          email: account.email,
          email_verified: true,
          groups: account.groups,
        };
      },
    };
  },
});
provider.proxy = false;

// The misbehaviours: the token endpoint's ID token is rewritten after
// oidc-provider made it, and the keys endpoint serves the rotated set.
const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path === '/jwks' && rotated && ctx.body) {
    ctx.body = { keys: [first.pub, second.pub] };
  }
  if (ctx.path !== '/token' || !ctx.body || !ctx.body.id_token || !mode) return;
  const [header, payload, signature] = ctx.body.id_token.split('.');
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  const now = Math.floor(Date.now() / 1000);
  const sign = (key, kid, changed) => new SignJWT(changed)
    .setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' })
    .sign(key.privateKey);
  let token;
  switch (mode) {
    case 'aud': token = await sign(first, 'k1', { ...claims, aud: 'another-client' }); break;
    case 'expired': token = await sign(first, 'k1', { ...claims, iat: now - 7200, exp: now - 3600 }); break;
    case 'nonce': token = await sign(first, 'k1', { ...claims, nonce: 'another-sign-in' }); break;
    case 'tamper': token = `${header}.${b64({ ...claims, sub: 'sub-bob', groups: ['lg-admins'] })}.${signature}`; break;
    case 'unknown_kid': token = await sign(unpublished, 'k3', claims); break;
    case 'none': token = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...claims, groups: ['lg-admins'] })}.`; break;
    case 'hs256': {
      token = await new SignJWT({ ...claims, groups: ['lg-admins'] })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .sign(Buffer.from(clientSecret));
      break;
    }
    case 'rotate': rotated = true; token = await sign(second, 'k2', claims); break;
    default: return;
  }
  ctx.body = { ...ctx.body, id_token: token };
});

function readBody(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.on('data', (chunk) => { data += chunk; });
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

const page = (title, body) => `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head><body>${body}</body></html>`;

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (action === 'login' && req.method === 'POST') {
    const form = new URLSearchParams(await readBody(req));
    const account = accounts[form.get('login')];
    if (!account || account.password !== form.get('password')) {
      res.writeHead(401, { 'content-type': 'text/html' });
      res.end(page('Test IdP: sign in', `<p id="idp-error">Wrong username or password.</p>${loginForm(uid)}`));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: form.get('login') } }, { mergeWithLastSubmission: false });
    return;
  }
  if (details.prompt.name === 'login') {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(page('Test IdP: sign in', loginForm(uid)));
    return;
  }
  // Consent: granted at once for what loopgate asks.
  const { prompt: { details: missing }, params, session } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

function loginForm(uid) {
  return `<h1>Test IdP</h1><form method="post" action="/interaction/${uid}/login">
    <label>Username <input id="idp-login" name="login" autofocus></label>
    <label>Password <input id="idp-password" name="password" type="password"></label>
    <button id="idp-submit" type="submit">Sign in</button></form>`;
}

const handle = provider.callback();
server.on('request', async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    const match = url.pathname.match(/^\/interaction\/([^/]+)(?:\/(login))?$/);
    if (match) {
      await interaction(req, res, match[1], match[2]);
      return;
    }
    if (url.pathname === '/__test/mode' && req.method === 'POST') {
      mode = JSON.parse(await readBody(req)).mode ?? '';
      res.writeHead(204).end();
      return;
    }
    if (url.pathname === '/__test/groups' && req.method === 'POST') {
      const body = JSON.parse(await readBody(req));
      accounts[body.account].groups = body.groups;
      res.writeHead(204).end();
      return;
    }
    handle(req, res);
  } catch (error) {
    console.error(error);
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(error));
  }
});

// The one line on stdout; everything else (oidc-provider's notices) goes to
// stderr, so that a test that stopped reading stdout does not break a pipe.
console.log(JSON.stringify({ issuer }));
console.log = console.error;
console.info = console.error;
