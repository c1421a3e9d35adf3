'use strict';
// The peer make bench compares against: Klaviyo's node-integration-example rebuilt in plain JS
// (Express 4 + klaviyo-api 17 OAuthApi / OAuthSession / ProfilesApi / Pkce, SQLite storage).
//
// Env, as in the original: PORT, DATABASE_URL (file:./dev.db), CLIENT_ID, CLIENT_SECRET, KEY (64 hex chars).
// Added for the bench, to point the SDK's hard-coded Klaviyo URLs at a fake upstream at run time
// (node_modules is not edited):
//   KLAVIYO_AUTHORIZE_URL  default https://klaviyo.com/oauth/authorize  (the SDK's own default)
//   KLAVIYO_BASE_URL       default https://a.klaviyo.com               (token, revoke and API host)
//   REDIRECT_HOST          default 127.0.0.1  (redirect URL is http://REDIRECT_HOST:PORT/authorize)

const express = require('express');
const { OAuthApi, OAuthSession, ProfilesApi, Pkce } = require('klaviyo-api');
const { openDatabase, SqliteTokenStorage, SqlitePkceStorage } = require('./storage');

const port = process.env.PORT || 8000;
const clientId = process.env.CLIENT_ID || '';
const clientSecret = process.env.CLIENT_SECRET || '';
const key = process.env.KEY || '';
if (!clientId || !clientSecret) throw new Error('Set client_id and client_secret in .env file');
if (!key) throw new Error('Generate a key and set it in the .env file');

const baseUrl = (process.env.KLAVIYO_BASE_URL || 'https://a.klaviyo.com').replace(/\/+$/, '');
const authorizeUrl = process.env.KLAVIYO_AUTHORIZE_URL || 'https://klaviyo.com/oauth/authorize';
const redirectUrl = `http://${process.env.REDIRECT_HOST || '127.0.0.1'}:${port}/authorize`;

// The 29 scopes the original requests, in its order (including its `template:write`).
const scopes = [
  'accounts:read', 'campaigns:read', 'campaigns:write', 'catalogs:read', 'catalogs:write',
  'coupon-codes:read', 'coupon-codes:write', 'coupons:read', 'coupons:write', 'data-privacy:write',
  'events:read', 'events:write', 'flows:read', 'flows:write', 'images:read', 'images:write',
  'lists:read', 'lists:write', 'metrics:read', 'profiles:read', 'profiles:write', 'push-tokens:write',
  'segments:read', 'segments:write', 'subscriptions:write', 'tags:read', 'tags:write',
  'template:write', 'templates:read',
].join(' ');

const db = openDatabase(process.env.DATABASE_URL);
const tokenStorage = new SqliteTokenStorage(db, key);
const pkceStorage = new SqlitePkceStorage(db);

const oauthApi = new OAuthApi(clientId, clientSecret, tokenStorage);
// klaviyo-api 17.0.0 keeps both URLs as plain instance fields set in the constructor.
oauthApi.authorizeUrl = authorizeUrl;
oauthApi.tokenUrl = `${baseUrl}/oauth/token`;

// The original lets async errors escape (an unhandled rejection ends the process on Node >= 15).
// Here they become a 500, so one failed request cannot kill the peer mid-run.
const safe = (handler) => (req, res) => {
  Promise.resolve(handler(req, res)).catch((err) => {
    console.error(`${req.method} ${req.path}: ${err && err.name}: ${err && err.message}`);
    if (!res.headersSent) res.status(500).json({ error: err && err.name, message: err && err.message });
  });
};

const app = express();

app.get('/start/:customerIdentifier', safe(async (req, res) => {
  const customerIdentifier = req.params.customerIdentifier;
  const { codeVerifier, codeChallenge } = Pkce.generateCodes();
  await pkceStorage.save(customerIdentifier, codeVerifier);
  // The customer identifier is the OAuth state, as in the original.
  res.redirect(oauthApi.generateAuthorizeUrl(customerIdentifier, scopes, codeChallenge, redirectUrl));
}));

app.get('/authorize', safe(async (req, res) => {
  const { code, state } = req.query;
  if (code && state) {
    let codeVerifier;
    try {
      codeVerifier = await pkceStorage.retrieve(state);
    } catch (e) {
      return res.sendStatus(404);
    }
    await oauthApi.createTokens(state, codeVerifier, code, redirectUrl);
    await pkceStorage.remove(state);
    return res.send(`Customer ${state} is registered`);
  }
  // The original set 404 without sending anything here, leaving the request hanging.
  res.status(404).send('Not Found');
}));

app.get('/profiles/:customerIdentifier', safe(async (req, res) => {
  const session = new OAuthSession(req.params.customerIdentifier, oauthApi);
  const profilesApi = new ProfilesApi(session);
  profilesApi.basePath = baseUrl;
  const result = await profilesApi.getProfiles();
  res.send(result.body);
}));

app.get('/uninstall/:customerIdentifier', safe(async (req, res) => {
  let tokens;
  try {
    tokens = await tokenStorage.retrieve(req.params.customerIdentifier);
  } catch (e) {
    return res.sendStatus(404);
  }
  const response = await fetch(`${baseUrl}/oauth/revoke`, {
    method: 'POST',
    headers: {
      Authorization: `Basic ${Buffer.from(`${clientId}:${clientSecret}`).toString('base64')}`,
      'Content-Type': 'application/x-www-form-urlencoded',
    },
    body: new URLSearchParams({ token_type_hint: 'refresh_token', token: tokens.refreshToken }).toString(),
  });
  await response.json();
  if (!response.ok) return res.status(502).send('Revoke failed');
  res.send('You have successfully uninstalled your app.');
}));

// Bound to loopback for the bench (the original listens on all interfaces).
app.listen(port, process.env.HOST || '127.0.0.1', () => {
  console.log(`Example app listening on port ${port}`);
});
