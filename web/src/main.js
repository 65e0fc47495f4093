// The dashboard: log in with an API key (kept in session storage only), then poll
// GET /v1/stats every second and draw the panels its sections call for.
import './style.css';
import { ApiError, call, forgetKey, savedKey, saveKey } from './api.js';
import { el } from './format.js';
import { panels } from './panels/index.js';

const POLL_MS = 1000;
// Polls come just after each second turns (by this browser's clock): the page shows a
// second as soon as it is complete, and shows the server's current second for most of
// the next one. A fixed interval could fall just before the turn for good, and the
// page would then always be a second behind what the API answers.
const POLL_AFTER_SECOND_MS = 50;
const $ = (id) => document.getElementById(id);

const page = { scope: null, refresh: () => poll() };
const mounted = new Map(); // panel name -> {root, title, update}
let timer = null;
let pollChain = 0; // a new chain of polls ends the one before
let polling = false;

function setStatus(text, bad = false) {
  const status = $('status');
  status.textContent = text;
  status.classList.toggle('bad', bad);
}

function showLogin(message = '') {
  clearTimeout(timer);
  timer = null;
  pollChain++;
  page.scope = null;
  for (const m of mounted.values()) m.root.remove();
  mounted.clear();
  $('login').hidden = false;
  $('logout').hidden = true;
  $('who').textContent = '';
  $('login-error').textContent = message;
  setStatus('');
  $('key').focus();
}

function showDashboard() {
  $('login').hidden = true;
  $('logout').hidden = false;
  if (timer === null) pollEachSecond(++pollChain);
}

function pollEachSecond(chain) {
  const wait_ms = POLL_MS - (Date.now() % POLL_MS) + POLL_AFTER_SECOND_MS;
  timer = setTimeout(async () => {
    await poll();
    if (chain === pollChain) pollEachSecond(chain);
  }, wait_ms);
}

function mount(panel, name) {
  const title = el('h2');
  const body = el('div', { class: 'panel-body' });
  const root = el('section', { class: 'panel', id: `panel-${name}` }, title, body);
  const view = panel.create(body, page);
  return { root, title, update: view.update };
}

function render(stats) {
  const order = [];
  for (const panel of panels) {
    const name = panel.name || panel.section;
    let view = mounted.get(name);
    if (stats[panel.section] === undefined) {
      if (view) view.root.remove();
      mounted.delete(name);
      continue;
    }
    if (!view) mounted.set(name, (view = mount(panel, name)));
    view.title.textContent = panel.title(stats);
    view.update(stats);
    order.push(view.root);
  }
  $('panels').append(...order); // keeps the panels in table order
}

async function poll() {
  if (polling) return;
  polling = true;
  try {
    const stats = await call('GET', '/v1/stats');
    page.scope = stats.scope;
    $('who').textContent = `${stats.scope} key`;
    render(stats);
    const status = $('status');
    status.dataset.now = String(stats.now);
    setStatus(`live · ${new Date(stats.now * 1000).toISOString().slice(11, 19)} UTC`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      forgetKey();
      showLogin('The key was refused (revoked or mistyped).');
    } else {
      setStatus(`cannot reach the server: ${error.message}`, true);
    }
  } finally {
    polling = false;
  }
}

async function login(event) {
  event.preventDefault();
  const key = $('key').value.trim();
  if (!key) return;
  saveKey(key);
  $('key').value = '';
  try {
    await call('GET', '/v1/stats?history_s=0');
  } catch (error) {
    forgetKey();
    showLogin(error instanceof ApiError && error.status === 401 ? 'That key was refused.' : error.message);
    return;
  }
  showDashboard();
  poll();
}

function start() {
  $('login').addEventListener('submit', login);
  $('logout').addEventListener('click', () => {
    forgetKey();
    showLogin();
  });
  if (savedKey()) {
    showDashboard();
    poll();
  } else {
    showLogin();
  }
}

start();
