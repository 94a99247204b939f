// The web client's entry: sign-in, then the chat.
//
// Sign-in paths:
//  - development sign-in (GET /v1/dev says {"dev":true}): a user id, and
//    POST /v1/dev/token mints a token for it;
//  - otherwise a token pasted in the form (`messenger token <user>`);
//  - or a token in the URL fragment: /#token=<jwt> (used by the browser
//    tests and handy for scripts); the fragment is removed at once.
// /#conv=<id> opens that conversation (a notification clicked with no tab
// of the client open: sw.js).
// The page URL may add ?transport=poll to use long polling instead of the
// WebSocket.

import { Api } from './api.js';
import { Client } from './client.js';
import { UI } from './ui.js';
import { Notifier } from './notify.js';
import { currentSession, saveSession, clearSession, deviceId } from './store.js';
import { ID_RE, jwtClaims } from './util.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const forcePoll = params.get('transport') === 'poll';
const plainApi = new Api(() => '', null);

let client = null;
let ui = null;
let notifier = null;
let dev = false;

async function devMode() {
  try {
    const r = await plainApi.get('/v1/dev', { auth: false });
    return !!r.dev;
  } catch {
    return false;
  }
}

function tokenFromFragment() {
  const m = /^#token=([^&]+)/.exec(location.hash);
  if (!m) return;
  const token = decodeURIComponent(m[1]);
  history.replaceState(null, '', location.pathname + location.search);
  const claims = jwtClaims(token);
  if (claims && typeof claims.sub === 'string' && ID_RE.test(claims.sub)) saveSession(claims.sub, token);
}

/** The conversation asked for by /#conv=<id>, removed from the URL. */
function convFromFragment() {
  const m = /^#conv=([^&]+)/.exec(location.hash);
  if (!m) return '';
  history.replaceState(null, '', location.pathname + location.search);
  const conv = decodeURIComponent(m[1]);
  return ID_RE.test(conv) ? conv : '';
}

function startApp(session) {
  $('signin').hidden = true;
  $('app').hidden = false;
  client = new Client({
    user: session.user,
    token: session.token,
    device: deviceId(),
    forcePoll,
    dev,
    onSignedOut: (why) => signOut(why),
  });
  notifier = new Notifier({
    api: client.api,
    user: session.user,
    onChange: () => client.store.changed({ notify: true }),
    onOpen: (conv) => { if (client) client.openConversation(conv); },
  });
  client.notifier = notifier;
  ui = new UI(client, { onSignOut: () => signOut(''), notifier });
  client.start();
  notifier.start();
  const conv = convFromFragment();
  if (conv) client.openConversation(conv);
  window.messenger = client; // for the console and the browser tests
}

function signOut(why) {
  if (client) {
    notifier.signOut(); // best effort, while the token is still at hand
    notifier = null;
    clearSession(client.user);
    client.stop();
    ui.destroy();
    client = ui = null;
    delete window.messenger;
  }
  showSignIn(why);
}

async function showSignIn(message) {
  $('app').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message || '';
  $('signin-dev').hidden = !dev;
  $('signin-token').hidden = dev;
  (dev ? $('signin-user') : $('signin-token-input')).focus();
  document.body.dataset.ready = 'signin';
}

async function signInDev(e) {
  e.preventDefault();
  const user = $('signin-user').value.trim();
  if (!ID_RE.test(user)) {
    $('signin-error').textContent = 'A user id is 1-64 characters of A-Z a-z 0-9 _ -';
    return;
  }
  try {
    const r = await plainApi.post('/v1/dev/token', { user }, { auth: false });
    saveSession(r.user, r.token);
    startApp({ user: r.user, token: r.token });
  } catch (x) {
    $('signin-error').textContent = x.message;
  }
}

async function signInToken(e) {
  e.preventDefault();
  const token = $('signin-token-input').value.trim();
  const claims = jwtClaims(token);
  if (!claims || typeof claims.sub !== 'string' || !ID_RE.test(claims.sub)) {
    $('signin-error').textContent = 'That is not a token of a user (a JWT whose sub is a user id).';
    return;
  }
  try {
    await new Api(() => token, null).get('/v1/conversations?limit=1');
  } catch (x) {
    $('signin-error').textContent = 'The server refused the token: ' + x.message;
    return;
  }
  $('signin-token-input').value = '';
  saveSession(claims.sub, token);
  startApp({ user: claims.sub, token });
}

async function main() {
  $('signin-dev').addEventListener('submit', signInDev);
  $('signin-token').addEventListener('submit', signInToken);
  tokenFromFragment();
  dev = await devMode();
  const session = currentSession();
  if (session) startApp(session);
  else showSignIn('');
}

main();
