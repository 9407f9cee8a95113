// The dispatcher dashboard: a client of the dispatcher's WebSocket protocol (docs/protocol.md), like any other.
// Plain ES module, no build step. State comes from list/history/queues replies and is kept current by events.

const TOKEN_KEY = 'dispatcher-dashboard.token';
const USER_KEY = 'dispatcher-dashboard.user';
const KEEPALIVE_MS = 60_000;           // a request a minute renews the token (5 min after last use) and the idle timeout (10 min)
const SHOWN_OUTPUT_CHARS = 200_000;    // per running job in the page; the whole log is one click away
const HISTORY_ROWS = 500;              // newest finished jobs kept and shown
const HISTORY_PAGE = 200;              // jobs per history request (the reply stays small; the server sends oldest first)
const OUTCOMES = ['succeeded', 'failed', 'killed', 'timed_out', 'interrupted', 'skipped'];
const PENDING_CARDS = 100;             // pending jobs shown as cards (a queue of thousands stays cheap to draw)
const LOG_PAGE = 65536;
const LOG_MAX_PAGES = 1024;            // 64 MiB, the server's default MaxLogBytes

const $ = (id) => document.getElementById(id);
const el = (tag, props = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'role' || k === 'tabindex') e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
};

// ---- formatting (the viewer's own time zone and locale) ----
const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'short', timeStyle: 'medium' });
const parseTime = (s) => { const t = s ? Date.parse(s) : NaN; return Number.isNaN(t) ? null : t; };
function timeElement(ms) {
  if (ms == null) return document.createTextNode('—');
  return el('time', { dateTime: new Date(ms).toISOString(), text: timeFormat.format(ms) });
}
function duration(ms) {
  if (ms == null || ms < 0) return '—';
  if (ms < 1000) return `${ms} ms`;
  let s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (h) return `${h} h ${String(m).padStart(2, '0')} min`;
  if (m) return `${m} min ${String(s).padStart(2, '0')} s`;
  return `${(ms / 1000).toFixed(1)} s`;
}
const outcomeLabel = (o) => (o || 'unknown').replace(/_/g, ' ');

// ---- state ----
const state = {
  access: null,             // 'full' | 'read' | null (logged out)
  user: null,
  jobs: new Map(),          // pending and running: id -> job
  finished: new Map(),      // id -> job (from history and finished events)
  queues: new Map(),        // name -> { name, limit, paused, draining, drained, running, pending } (the queues action)
  queuesSupported: null,    // null = not asked yet
  logSupported: null,
  order: 0,
};

function newJob(id) {
  return { id, queue: null, state: 'pending', commands: [], position: null, started: null, finishedAt: null, outcome: null,
    output: new Map(), codes: new Map(), current: null, extra: {}, seen: ++state.order, shownChars: 0,
    attempt: null, previousAttempts: [], labels: {} };
}

const KNOWN = new Set(['process_id', 'state', 'cmd_list', 'time_started', 'time_finished', 'current_cmd', 'outcome', 'queue',
  'attempt', 'previous_attempts', 'labels']);

function setLabels(job, labels) {
  if (labels && typeof labels === 'object' && !Array.isArray(labels)) job.labels = Object.fromEntries(Object.entries(labels).map(([k, v]) => [k, String(v)]));
}

/** Merges process_details (events, history) into a job. `delta`: output members are additions, not the whole output. */
function mergeDetails(job, d, delta) {
  if (Array.isArray(d.cmd_list)) job.commands = d.cmd_list.map(String);
  if (typeof d.queue === 'string') job.queue = d.queue;
  if (d.time_started) job.started = parseTime(d.time_started) ?? job.started;
  if (d.time_finished) job.finishedAt = parseTime(d.time_finished);
  if (typeof d.outcome === 'string') job.outcome = d.outcome;
  if (d.attempt != null) job.attempt = num(d.attempt);
  if (Array.isArray(d.previous_attempts)) job.previousAttempts = d.previous_attempts.filter((a) => a && typeof a === 'object');
  setLabels(job, d.labels);
  job.current = typeof d.current_cmd === 'string' ? d.current_cmd : null;
  const commands = new Set(job.commands);
  for (const [k, v] of Object.entries(d)) {
    if (KNOWN.has(k)) continue;
    if (k.startsWith('return_codes/')) { job.codes.set(k.slice(13), String(v)); continue; }
    if (commands.has(k) && typeof v === 'string') {
      job.output.set(k, delta ? (job.output.get(k) ?? '') + v : v);
      continue;
    }
    job.extra[k] = v;
  }
}

// ---- connection ----
let socket = null;
let nextId = 1;
const waiting = new Map();
let reconnectDelay = 1000;
let reconnectTimer = null;
let keepaliveTimer = null;
let everConnected = false;
let lostAt = null;

function socketUrl() {
  const configured = document.querySelector('meta[name="dispatcher-websocket"]')?.content || '/';
  if (/^wss?:\/\//i.test(configured)) return configured;
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}${configured}`;
}

class ProtocolError extends Error {
  constructor(code, message) { super(message); this.code = String(code); }
}

function call(namespace, name, args) {
  return new Promise((resolve, reject) => {
    if (!socket || socket.readyState !== WebSocket.OPEN) { reject(new ProtocolError(0, 'Not connected to the server.')); return; }
    const id = `d${nextId++}`;
    waiting.set(id, { resolve, reject });
    socket.send(JSON.stringify({ namespace, name, id, args }));
  });
}
const dispatcher = (args) => call('rpc', 'dispatcher', args);

function connect() {
  clearTimeout(reconnectTimer);
  setConnection('connecting', everConnected ? 'Reconnecting…' : 'Connecting…');
  let ws;
  try { ws = new WebSocket(socketUrl()); } catch (e) { scheduleReconnect(); return; }
  socket = ws;
  ws.onopen = () => onOpen(ws);
  ws.onmessage = (m) => onMessage(m.data);
  ws.onclose = (e) => onClose(ws, e);
}

async function onOpen(ws) {
  if (ws !== socket) return;
  try {
    await call('rpc', 'identify', '');
  } catch { /* any reply means the server is there */ }
  reconnectDelay = 1000;
  setConnection('open', 'Connected');
  if (lostAt != null) { toast('Connected to the server again.'); lostAt = null; }
  everConnected = true;
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) {
    try {
      await call('rpc', 'auth_token', { token });
      await startSession(sessionStorage.getItem(USER_KEY));
      return;
    } catch (e) {
      // Lost again before the session was back: keep the token for the next attempt.
      if (ws !== socket || e.code === '0') return;
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(e.code === '401' ? 'Your session has ended (the server restarted or the token expired). Log in again.' : e.message);
      return;
    }
  }
  showLogin('');
}

function onClose(ws, e) {
  if (ws !== socket) return;
  socket = null;
  clearInterval(keepaliveTimer);
  for (const w of waiting.values()) w.reject(new ProtocolError(0, 'The connection to the server was lost.'));
  waiting.clear();
  if (e.code === 1008 && e.reason) toast(`The server closed the connection: ${e.reason}`, true);
  scheduleReconnect();
}

function scheduleReconnect() {
  const wait = reconnectDelay;
  reconnectDelay = Math.min(reconnectDelay * 2, 10_000);
  if (lostAt == null) lostAt = Date.now();
  const until = Date.now() + wait;
  const tick = () => {
    const s = Math.max(0, Math.ceil((until - Date.now()) / 1000));
    const text = `Connection to the server lost. Reconnecting${s ? ` in ${s} s` : ''}…`;
    setConnection('closed', 'Disconnected');
    toast(text, true, true);
    if (s > 0) reconnectTimer = setTimeout(tick, 1000 - ((until - Date.now()) % 1000 || 0));
    else connect();
  };
  tick();
}

function onMessage(data) {
  let m;
  try { m = JSON.parse(data); } catch { return; }
  if (m.namespace === 'events' && m.id === '') { if (m.name === 'dispatcher') onEvent(m.args); return; }
  const w = m.id != null ? waiting.get(m.id) : null;
  if (!w) return;
  waiting.delete(m.id);
  if (m.namespace === 'error' || m.name === 'error') w.reject(new ProtocolError(m.args?.code ?? 500, m.args?.message ?? 'The server answered with an error.'));
  else w.resolve(m.args);
}

// ---- session ----
async function login(username, password) {
  const reply = await call('rpc', 'auth', { username, password });
  const token = Array.isArray(reply) ? reply[0] : null;
  if (typeof token !== 'string') throw new ProtocolError(500, 'The server did not return a token.');
  sessionStorage.setItem(TOKEN_KEY, token);
  sessionStorage.setItem(USER_KEY, username);
  await startSession(username);
}

async function startSession(user) {
  const q = await call('rpc', 'query', {});
  const access = String(q?.['rpc/dispatcher'] ?? '');
  state.user = user;
  state.access = access.includes('write') ? 'full' : 'read';
  // The nested shape: every job's pending, running and finished events with their output (the server's default, the sysadm
  // shape, gives most jobs only a start marker and a flat log). A server from before the object form refuses it (400).
  try {
    await call('events', 'subscribe', { channels: ['dispatcher'], shape: 'nested' });
  } catch (e) {
    if (!(e instanceof ProtocolError) || String(e.code) !== '400') throw e;
    await call('events', 'subscribe', ['dispatcher']);
  }
  clearInterval(keepaliveTimer);
  keepaliveTimer = setInterval(() => call('rpc', 'query', {}).catch(() => {}), KEEPALIVE_MS);
  showApp();
  await reload();
}

async function logout() {
  try { await call('events', 'unsubscribe', ['dispatcher']); } catch { /* the connection may be gone */ }
  try { await call('rpc', 'auth_clear', {}); } catch { /* the token is forgotten here either way */ }
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(USER_KEY);
  clearInterval(keepaliveTimer);
  state.access = null; state.user = null;
  state.jobs.clear(); state.finished.clear(); state.queues.clear();
  showLogin('You have logged out.');
}

// ---- loading ----
async function reload() {
  listAsked = state.order;
  const [list] = await Promise.all([dispatcher({ action: 'list' }), loadHistory()]);
  // After the history: an id that finished once and runs again is shown running.
  applyList(list, true);
  await refreshQueues();
  render();
}

/** Applies a list reply. The list is the truth about what is pending and running; events may have run ahead of it. */
function applyList(reply, authoritative) {
  const seen = new Set();
  for (const [queue, jobs] of Object.entries(reply?.jobs ?? {})) {
    for (const [id, info] of Object.entries(jobs)) {
      seen.add(id);
      if (state.finished.has(id)) {
        if (!authoritative) continue;
        state.finished.delete(id);
      }
      let job = state.jobs.get(id);
      if (!job) { job = newJob(id); state.jobs.set(id, job); }
      job.queue = queue;
      if (Array.isArray(info.commands)) job.commands = info.commands.map(String);
      if (info.state === 'running' || info.state === 'pending') job.state = info.state;
      job.position = info.queue_position != null ? Number(info.queue_position) : null;
      job.attempt = info.attempt != null ? num(info.attempt) : null;
      setLabels(job, info.labels);
    }
  }
  for (const [id, job] of state.jobs) {
    // A job the list no longer has has finished; its finished event (or history) says how. Keep jobs newer than the request.
    if (!seen.has(id) && job.seen <= listAsked) state.jobs.delete(id);
  }
}

let listAsked = 0;
let refreshTimer = null;
let refreshing = false;
let refreshAgain = false;
const historyWanted = new Set();

/** Asks list (and queues, and history for jobs whose queue is unknown) once after a burst of events; never on a timer. */
function scheduleRefresh() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(async () => {
    refreshTimer = null;
    if (refreshing) { refreshAgain = true; return; }
    refreshing = true;
    try {
      listAsked = state.order;
      const ids = [...historyWanted]; historyWanted.clear();
      const [list, history] = await Promise.all([
        dispatcher({ action: 'list' }),
        ids.length ? dispatcher({ action: 'history', job_id: ids }).catch(() => null) : null,
      ]);
      applyList(list, false);
      for (const d of history?.history ?? []) {
        const job = state.finished.get(d.process_id);
        if (job && typeof d.queue === 'string') job.queue = d.queue;
      }
      await refreshQueues();
      render();
    } catch { /* a lost connection reloads everything when it comes back */ }
    refreshing = false;
    if (refreshAgain) { refreshAgain = false; scheduleRefresh(); }
  }, 150);
}

async function refreshQueues() {
  if (state.queuesSupported === false) return;
  try {
    const reply = await dispatcher({ action: 'queues' });
    state.queuesSupported = true;
    state.queues.clear();
    for (const q of readQueues(reply)) state.queues.set(q.name, q);
  } catch (e) {
    // A server without queue control answers 400 (unknown action): the counts then come from the list.
    if (e.code === '400') state.queuesSupported = false;
  }
}

function num(v) { const n = Number(v); return v == null || v === '' || Number.isNaN(n) ? null : n; }
/** {"queues": {NAME: {"limit", "paused", "draining", "drained", "running", "pending"}}}, queues in their configured order. */
function readQueues(reply) {
  const out = [];
  for (const [name, q] of Object.entries(reply?.queues ?? {})) {
    if (typeof q !== 'object' || q == null) continue;
    out.push({ name, limit: num(q.limit), paused: q.paused === true, draining: q.draining === true, drained: q.drained === true,
      running: num(q.running), pending: num(q.pending) });
  }
  return out;
}

/**
 * Loads the newest finished jobs that match the filters, a page (`limit`, `after`, `next`) at a time. The server sends the
 * oldest first and offers no newest-first order, so every page is read but only the newest HISTORY_ROWS are kept.
 */
let historyGeneration = 0;
async function loadHistory(keepActive = false) {
  const generation = ++historyGeneration;
  const filters = {};
  const outcome = $('filter-outcome').value;
  const queue = $('filter-queue').value;
  if (outcome) filters.outcome = outcome;
  if (queue) filters.queue = queue;
  const kept = [];
  let after = null;
  for (;;) {
    let reply;
    try {
      reply = await dispatcher({ action: 'history', limit: HISTORY_PAGE, ...filters, ...(after ? { after } : {}) });
    } catch (e) {
      if (e.code === '0') throw e;
      return;   // no history on this server: finished events still fill the table
    }
    if (generation !== historyGeneration) return;   // the filters changed meanwhile: a newer load is running
    for (const d of reply?.history ?? []) kept.push(d);
    if (kept.length > HISTORY_ROWS) kept.splice(0, kept.length - HISTORY_ROWS);
    if (typeof reply?.next !== 'string' || !reply.next || !(reply.history?.length)) break;
    after = reply.next;
  }
  state.finished.clear();
  // keepActive: no list follows, so an id that runs again stays shown running.
  for (const d of kept) if (!(keepActive && state.jobs.has(d.process_id))) addFinished(d);
}

function addFinished(d) {
  const id = d.process_id;
  if (typeof id !== 'string') return;
  const job = state.jobs.get(id) ?? state.finished.get(id) ?? newJob(id);
  mergeDetails(job, d, false);
  job.state = 'finished';
  job.current = null;
  state.jobs.delete(id);
  state.finished.set(id, job);
  return job;
}

// ---- events ----
function onEvent(a) {
  if (!a || typeof a.process_id !== 'string' || state.access == null) return;
  const id = a.process_id;
  if (a.state === 'pending') {
    if (!state.jobs.has(id)) state.jobs.set(id, newJob(id));
    state.finished.delete(id);
    scheduleRefresh();
  } else if (a.state === 'running') {
    let job = state.jobs.get(id);
    const isNew = !job || job.state !== 'running';
    if (!job) { job = newJob(id); state.jobs.set(id, job); }
    job.state = 'running';
    if (a.process_details) mergeDetails(job, a.process_details, true);
    if (isNew) scheduleRefresh();
    markOutput(job);
  } else if (a.state === 'finished') {
    const job = addFinished({ ...(a.process_details ?? {}), process_id: id });
    if (job && !job.queue) historyWanted.add(id);
    scheduleRefresh();
  }
  render();
}

// ---- rendering (batched per frame; existing job cards are updated in place so nothing jumps) ----
let renderQueued = false;
const dirtyOutput = new Set();
function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; renderAll(); });
}
function markOutput(job) { dirtyOutput.add(job.id); }

function renderAll() {
  renderQueues();
  renderActive();
  renderHistory();
}

function queueRows() {
  const rows = new Map();
  for (const q of state.queues.values()) rows.set(q.name, { ...q });
  if (!state.queuesSupported) {
    // Without the queues action the counts come from the jobs the list shows.
    for (const r of rows.values()) { r.running = 0; r.pending = 0; }
    for (const job of state.jobs.values()) {
      if (!job.queue) continue;
      const r = rows.get(job.queue) ?? { name: job.queue, limit: null, paused: false, running: 0, pending: 0 };
      r[job.state === 'running' ? 'running' : 'pending']++;
      rows.set(job.queue, r);
    }
    for (const job of state.finished.values()) if (job.queue && !rows.has(job.queue)) rows.set(job.queue, { name: job.queue, limit: null, paused: false, running: 0, pending: 0 });
  }
  return [...rows.values()];
}

function renderQueues() {
  const body = $('queues-body');
  const rows = queueRows();
  const control = state.access === 'full' && state.queuesSupported === true;
  $('queues-table').classList.toggle('detailed', state.queuesSupported === true);
  body.replaceChildren(...rows.map((q) => {
    const stateText = q.paused ? 'Paused' : q.drained ? 'Drained' : q.draining ? 'Draining' : 'Active';
    const actions = el('td', { 'data-label': '' });
    if (control) {
      // resume ends a pause and a drain alike
      const verb = q.paused || q.draining ? 'Resume' : 'Pause';
      const b = el('button', { type: 'button', class: 'secondary', text: verb, 'aria-label': `${verb} ${q.name}` });
      b.addEventListener('click', () => pauseOrResume(q.name, verb.toLowerCase(), b));
      actions.append(b);
    }
    return el('tr', { 'data-queue': q.name },
      el('th', { scope: 'row', class: 'mono', text: q.name }),
      el('td', { class: 'num detail', 'data-label': 'Limit', text: q.limit == null ? '—' : q.limit === 0 ? 'no limit' : String(q.limit) }),
      el('td', { class: 'num', 'data-label': 'Running', text: q.running == null ? '—' : String(q.running) }),
      el('td', { class: 'num', 'data-label': 'Pending', text: q.pending == null ? '—' : String(q.pending) }),
      el('td', { class: 'detail', 'data-label': 'State' }, el('span', { class: `badge ${stateText.toLowerCase()}`, text: stateText })),
      actions);
  }));
  if (!rows.length) body.append(el('tr', {}, el('td', { colSpan: 6, class: 'empty', text: 'No queue has had a job yet.' })));
  const names = $('queue-names');
  names.replaceChildren(...rows.map((q) => el('option', { value: q.name })));
  const filter = $('filter-queue');
  syncOptions(filter, rows.map((q) => q.name), 'All queues');
}

function syncOptions(select, values, allText) {
  const current = select.value;
  const wanted = ['', ...[...new Set(values)].sort()];
  if ([...select.options].map((o) => o.value).join('\n') === wanted.join('\n')) return;
  select.replaceChildren(...wanted.map((v) => el('option', { value: v, text: v === '' ? allText : v.replace(/_/g, ' ') })));
  select.value = wanted.includes(current) ? current : '';
}

const cards = new Map();   // id -> { li, ... }
function renderActive() {
  const list = $('active-list');
  // Running jobs in the order they were seen (a new one goes to the end of them), then pending ones by queue position.
  const jobs = [...state.jobs.values()].sort((a, b) =>
    (a.state === b.state ? 0 : a.state === 'running' ? -1 : 1)
    || (a.state === 'pending' ? (a.position ?? Infinity) - (b.position ?? Infinity) : 0) || a.seen - b.seen);
  const all = jobs.length;
  const running = jobs.filter((j) => j.state === 'running').length;
  jobs.length = Math.min(all, running + PENDING_CARDS);
  const shown = new Set(jobs.map((j) => j.id));
  for (const [id, card] of cards) if (!shown.has(id)) { card.li.remove(); cards.delete(id); }
  jobs.forEach((job, i) => {
    let card = cards.get(job.id);
    if (!card) { card = createCard(job); cards.set(job.id, card); }
    updateCard(card, job);
    if (list.children[i] !== card.li) list.insertBefore(card.li, list.children[i] ?? null);
  });
  $('active-empty').hidden = all > 0;
  $('active-count').textContent = all ? `(${running} running, ${all - running} pending)` : '';
  $('active-more').hidden = all === jobs.length;
  $('active-more').textContent = `${all - jobs.length} more pending jobs are not shown; they appear as the queue moves.`;
  dirtyOutput.clear();
}

function createCard(job) {
  const c = {};
  c.title = el('h3', { text: job.id });
  c.badge = el('span', { class: 'badge' });
  c.meta = el('span', { class: 'meta' });
  c.elapsed = el('span', { class: 'meta elapsed' });
  c.actions = el('div', { class: 'actions' });
  c.commands = el('ol', { class: 'commands', 'aria-label': `Commands of ${job.id}` });
  c.output = el('pre', { class: 'output', tabindex: '0', role: 'log', 'aria-live': 'off', 'aria-label': `Output of ${job.id}` });
  c.li = el('li', { class: 'job', 'data-job': job.id },
    el('div', { class: 'job-head' }, c.title, c.badge, c.meta, c.elapsed, c.actions), c.commands, c.output);
  c.key = '';
  c.outputKey = '';
  return c;
}

function updateCard(c, job) {
  const full = state.access === 'full';
  c.li.className = `job ${job.state}`;
  c.badge.className = `badge ${job.state}`;
  c.badge.textContent = job.state;
  const where = job.queue ? `in ${job.queue}` : '';
  const pos = job.position != null && job.state === 'pending' ? `, position ${job.position}` : '';
  const attempt = job.attempt > 1 ? `, attempt ${job.attempt}` : '';
  const labels = labelText(job);
  c.meta.textContent = `${where}${pos}${attempt}${labels ? ` · ${labels}` : ''}`;
  const since = job.started != null ? ` since ${timeFormat.format(job.started)}` : '';
  c.elapsed.dataset.started = job.started ?? '';
  c.elapsed.title = since.trim();
  updateElapsed(c.elapsed, job);
  const key = `${full}|${job.commands.join('\n')}|${job.current}|${[...job.codes].join(',')}`;
  if (key !== c.key) {
    c.key = key;
    c.commands.replaceChildren(...job.commands.map((cmd) => {
      const code = job.codes.get(cmd);
      return el('li', { class: cmd === job.current ? 'current' : '', text: code != null ? `${cmd}  → exit ${code}` : cmd });
    }));
    const log = el('button', { type: 'button', class: 'secondary', text: 'Log', 'aria-label': `Show log of ${job.id}` });
    log.addEventListener('click', () => showLog(job.id));
    c.actions.replaceChildren(log);
    if (full) {
      const kill = el('button', { type: 'button', class: 'danger', text: 'Kill', 'aria-label': `Kill ${job.id}` });
      kill.addEventListener('click', () => killJob(job.id, kill));
      c.actions.append(kill);
    }
  }
  if (dirtyOutput.has(job.id) || c.outputKey === '') {
    c.outputKey = 'x';
    const pre = c.output;
    const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
    let text = outputText(job, true);
    if (text.length > SHOWN_OUTPUT_CHARS) text = `[earlier output not shown here: open the job's log]\n${text.slice(-SHOWN_OUTPUT_CHARS)}`;
    pre.textContent = text || (job.state === 'pending' ? 'Waiting to start.' : '');
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }
}

function outputText(job, withHeaders) {
  let text = '';
  const names = job.commands.length ? job.commands : [...job.output.keys()];
  for (const cmd of names) {
    const out = job.output.get(cmd);
    if (out == null && !job.codes.has(cmd) && cmd !== job.current) continue;
    if (withHeaders && names.length > 1) text += `$ ${cmd}\n`;
    text += out ?? '';
    if (withHeaders && names.length > 1 && text && !text.endsWith('\n')) text += '\n';
  }
  return text;
}

function updateElapsed(span, job) {
  if (job.state !== 'running') { span.textContent = ''; return; }
  span.textContent = job.started != null ? `running for ${duration(Date.now() - job.started)}` : 'running';
}
setInterval(() => {
  for (const [id, c] of cards) { const job = state.jobs.get(id); if (job) updateElapsed(c.elapsed, job); }
}, 1000);

let historyKey = '';
function renderHistory() {
  const outcome = $('filter-outcome').value;
  const queue = $('filter-queue').value;
  const all = [...state.finished.values()];
  syncOptions($('filter-outcome'), [...OUTCOMES, ...all.map((j) => j.outcome ?? 'unknown')], 'All outcomes');
  const rows = all
    .filter((j) => (!outcome || (j.outcome ?? 'unknown') === outcome) && (!queue || j.queue === queue))
    .sort((a, b) => (b.finishedAt ?? 0) - (a.finishedAt ?? 0) || b.seen - a.seen);
  const shown = rows.slice(0, HISTORY_ROWS);
  const key = `${outcome}|${queue}|${state.access}|${shown.map((j) => `${j.id}:${j.seen}:${j.queue}:${j.outcome}:${j.attempt}`).join(',')}`;
  const counted = rows.length === all.length ? `${all.length}` : `${rows.length} of ${all.length}`;
  $('history-count').textContent = all.length ? `(${counted}${rows.length > shown.length ? `, newest ${shown.length} shown` : ''})` : '';
  $('history-empty').hidden = rows.length > 0;
  if (key === historyKey) return;
  historyKey = key;
  $('history-body').replaceChildren(...shown.map(historyRow));
}

function historyRow(job) {
  const codes = job.commands.filter((c) => job.codes.has(c)).map((c) => job.codes.get(c));
  const log = el('button', { type: 'button', class: 'secondary', text: 'Log', 'aria-label': `Show log of ${job.id}` });
  log.addEventListener('click', () => showLog(job.id));
  const labels = labelText(job);
  const attempts = job.attempt > 1
    ? el('span', { class: 'attempts', text: ` attempt ${job.attempt}`,
      title: job.previousAttempts.map((a) => `attempt ${a.attempt}: ${outcomeLabel(a.outcome)}${a.exit_code != null ? `, exit ${a.exit_code}` : ''}`).join('\n') })
    : null;
  return el('tr', { 'data-job': job.id },
    el('th', { scope: 'row', class: 'mono' }, job.id, labels ? el('span', { class: 'labels', text: labels }) : null),
    el('td', { 'data-label': 'Queue', class: 'mono', text: job.queue ?? '—' }),
    el('td', { 'data-label': 'Outcome' }, el('span', { class: `badge ${job.outcome ?? ''}`, text: outcomeLabel(job.outcome) }), attempts),
    el('td', { 'data-label': 'Exit codes', class: 'codes', text: codes.length ? codes.join(', ') : '—', title: job.commands.map((c) => `${c}: ${job.codes.get(c) ?? 'did not run'}`).join('\n') }),
    el('td', { 'data-label': 'Started' }, timeElement(job.started)),
    el('td', { 'data-label': 'Finished' }, timeElement(job.finishedAt)),
    el('td', { 'data-label': 'Duration', class: 'num', text: job.started != null && job.finishedAt != null ? duration(job.finishedAt - job.started) : '—' }),
    el('td', { 'data-label': 'Usage', class: 'usage', text: usageText(job.extra) }),
    el('td', { 'data-label': '' }, log));
}

const labelText = (job) => Object.entries(job.labels).map(([k, v]) => `${k}=${v}`).join(' ');

/** Resource usage and other extension members the server reports (names vary by server version): short scalars only. */
function usageText(extra) {
  const parts = [];
  const add = (k, v) => {
    if (v == null || typeof v === 'object') return;
    const s = String(v);
    if (s.length > 40 || k === 'event_system') return;
    parts.push(`${k.replace(/_/g, ' ')}: ${s}`);
  };
  for (const [k, v] of Object.entries(extra)) {
    if (v && typeof v === 'object' && !Array.isArray(v)) for (const [k2, v2] of Object.entries(v)) add(`${k} ${k2}`, v2);
    else add(k, v);
  }
  return parts.length ? parts.join('; ') : '—';
}

// ---- actions ----
async function killJob(id, button) {
  button.disabled = true;
  try {
    const reply = await dispatcher({ action: 'kill', job_id: id });
    if (!(reply?.killed?.jobs ?? []).includes(id)) toast(`${id} had already finished.`);
  } catch (e) {
    toast(`Could not kill ${id}: ${e.message}`, true);
    button.disabled = false;
  }
}

async function runJob() {
  const message = $('run-message');
  const idInput = $('run-id');
  const commandsInput = $('run-commands');
  const id = idInput.value.trim();
  const queue = $('run-queue').value.trim() || 'no_queue';
  const commands = commandsInput.value.split('\n').map((l) => l.trim()).filter((l) => l);
  message.classList.remove('error');
  if (!id || !commands.length) {
    message.classList.add('error');
    message.textContent = !id ? 'Give the job an id.' : 'Give at least one command.';
    (!id ? idInput : commandsInput).focus();
    return;
  }
  if (id === 'action') { message.classList.add('error'); message.textContent = "'action' cannot be a job id."; return; }
  message.textContent = 'Starting…';
  try {
    const reply = await dispatcher({ action: 'run', [id]: { commands, queue } });
    if (reply?.rejected?.[id]) { message.classList.add('error'); message.textContent = `Not started: ${reply.rejected[id]}`; return; }
    message.textContent = `Started ${id}.`;
    idInput.value = '';
  } catch (e) {
    message.classList.add('error');
    message.textContent = `Not started: ${e.message}`;
  }
}

async function pauseOrResume(queue, action, button) {
  button.disabled = true;
  const message = $('queues-message');
  message.classList.remove('error');
  try {
    const reply = await dispatcher({ action, queue });
    const done = action === 'pause' ? reply?.paused : reply?.resumed;
    if (!Array.isArray(done) || !done.includes(queue)) throw new ProtocolError(500, 'The server did not confirm it.');
    message.textContent = `${action === 'pause' ? 'Paused' : 'Resumed'} ${queue}.`;
    await refreshQueues();
    render();
  } catch (e) {
    if (e.code !== '0') await refreshQueues().catch(() => {});
    render();
    message.classList.add('error');
    message.textContent = `Could not ${action} ${queue}: ${e.message}`;
    button.disabled = false;
  }
}

async function showLog(id) {
  const dialog = $('log-dialog');
  const text = $('log-text');
  $('log-title').textContent = `Log of ${id}`;
  const job = state.finished.get(id) ?? state.jobs.get(id);
  const meta = job ? `${outcomeLabel(job.outcome ?? job.state)}${job.queue ? ` · ${job.queue}` : ''}` : '';
  $('log-meta').textContent = meta;
  text.textContent = 'Loading…';
  if (!dialog.open) dialog.showModal();
  const shown = ++logShown;
  let log = null;
  if (state.logSupported !== false) {
    try { log = await readLog(id, shown); state.logSupported = true; } catch (e) {
      if (e.code === '400') state.logSupported = false;   // a server without the log action: the retained output below
      else if (e.code === '0' || e.code === '404') { if (shown === logShown) text.textContent = e.code === '404' ? 'This job is no longer retained.' : e.message; return; }
    }
  }
  if (shown !== logShown) return;
  if (log) {
    const notes = [log.trimmed ? `the first ${log.trimmed} bytes were cut off by the server` : '', log.finished ? '' : 'still running: output until now',
      log.partial ? 'longer than the dashboard reads' : ''].filter(Boolean);
    $('log-meta').textContent = [meta, `${log.bytes} bytes`, ...notes].filter(Boolean).join(' · ');
    text.textContent = log.text || '(no output)';
  } else {
    text.textContent = (job ? outputText(job, true) : '') || '(no output)';
  }
}
let logShown = 0;

/**
 * Reads a job's whole log with the log action, a page at a time from `offset` to `next_offset`, until the end the server
 * reports (`end_offset`); for a running job that is the output until now.
 */
async function readLog(id, shown) {
  let offset = 0;
  let text = '';
  let r = null;
  let partial = true;
  for (let page = 0; page < LOG_MAX_PAGES && shown === logShown; page++) {
    r = await dispatcher({ action: 'log', job_id: id, offset, limit: LOG_PAGE });
    text += typeof r?.output === 'string' ? r.output : '';
    const next = num(r?.next_offset);
    const end = num(r?.end_offset);
    if (next == null || next <= offset || (end != null && next >= end)) { partial = false; break; }
    offset = next;
  }
  return { text, trimmed: num(r?.trimmed) ?? 0, finished: r?.finished === true, bytes: num(r?.end_offset) ?? offset, partial };
}

// ---- page state ----
function setConnection(kind, text) {
  $('connection').dataset.state = kind;
  $('connection-text').textContent = text;
}

let toastTimer = null;
function toast(text, error = false, sticky = false) {
  const t = $('toast');
  t.textContent = text;
  t.classList.toggle('error', error);
  t.hidden = false;
  clearTimeout(toastTimer);
  if (!sticky) toastTimer = setTimeout(() => { t.hidden = true; }, 5000);
}

function showLogin(message) {
  $('app').hidden = true;
  $('session').hidden = true;
  $('login').hidden = false;
  const m = $('login-message');
  m.textContent = message;
  m.classList.toggle('error', /ended|failed|invalid|wrong/i.test(message));
  cards.clear(); $('active-list').replaceChildren(); historyKey = '';
}

function showApp() {
  $('login').hidden = true;
  $('app').hidden = false;
  $('session').hidden = false;
  $('session-user').textContent = `${state.user ?? 'Signed in'} · ${state.access === 'full' ? 'full access' : 'read only'}`;
  $('run').hidden = state.access !== 'full';
}

$('login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const form = e.currentTarget;
  const username = $('login-user').value.trim();
  const password = $('login-password').value;
  const m = $('login-message');
  m.classList.add('error');
  if (!username || !password) { m.textContent = 'Enter a user name and a password.'; return; }
  m.classList.remove('error');
  m.textContent = 'Logging in…';
  const button = form.querySelector('button');
  button.disabled = true;
  try {
    await login(username, password);
    $('login-password').value = '';
    $('main').focus();
  } catch (err) {
    m.classList.add('error');
    m.textContent = err.code === '401' ? `Login failed: ${err.message}` : err.message;
  } finally {
    button.disabled = false;
  }
});
$('logout').addEventListener('click', logout);
$('run-form').addEventListener('submit', (e) => { e.preventDefault(); runJob(); });
// The table filters what it has at once, then asks the server for the newest jobs that match.
const onFilter = () => { renderHistory(); loadHistory(true).then(render, () => {}); };
$('filter-outcome').addEventListener('change', onFilter);
$('filter-queue').addEventListener('change', onFilter);
$('log-close').addEventListener('click', () => $('log-dialog').close());

connect();
