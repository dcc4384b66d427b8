/*
 * Atende visitor widget. A tenant embeds it on any page:
 *   <script src="https://acme.example.com/widget.js" defer></script>
 * The API base is derived from this script's own src (so it works cross-origin); a
 * data-api="https://..." attribute on the script tag overrides it.
 *
 * Everything lives in an open shadow root (window.AtendeWidget.root) so the host page's CSS cannot
 * reach it. The visitor's token, id and open chat are kept in localStorage, keyed by API base.
 * Message text is untrusted: it only ever reaches the DOM through textContent.
 */
(function () {
  'use strict';

  if (window.AtendeWidget) { return; } // loaded twice

  var ACK_TIMEOUT_MS = 5000;
  var PING_INTERVAL_MS = 20000;
  var PONG_TIMEOUT_MS = 10000;
  var TYPING_IDLE_MS = 3000;
  var TYPING_SHOW_MS = 8000;

  var script = document.currentScript || findScript();
  var apiBase = computeBase(script);
  var STORE_KEY = 'atende.widget:' + apiBase;

  function findScript() {
    var list = document.getElementsByTagName('script');
    for (var i = list.length - 1; i >= 0; i -= 1) {
      if (/\/widget\.js(?:[?#].*)?$/.test(list[i].src || '')) { return list[i]; }
    }
    return null;
  }

  function computeBase(s) {
    var attr = s && s.getAttribute('data-api');
    try {
      if (attr) {
        var a = new URL(attr, location.href);
        return (a.origin + a.pathname).replace(/\/+$/, '');
      }
      if (s && s.src) {
        var u = new URL(s.src, location.href);
        return (u.origin + u.pathname.replace(/\/widget\.js$/, '')).replace(/\/+$/, '');
      }
    } catch (e) { /* fall through */ }
    return location.origin;
  }

  // ---------------------------------------------------------------- helpers

  function uuid() {
    if (window.crypto && typeof window.crypto.randomUUID === 'function') {
      return window.crypto.randomUUID();
    }
    var b = new Uint8Array(16);
    window.crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join('');
    return h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) + '-' + h.slice(20);
  }

  function node(tag, className, text) {
    var e = document.createElement(tag);
    if (className) { e.className = className; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  function testid(e, id) { e.setAttribute('data-testid', id); return e; }

  function timeOf(iso) {
    var d = iso ? new Date(iso) : new Date();
    if (isNaN(d.getTime())) { return ''; }
    return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  function humanSize(n) {
    n = Number(n) || 0;
    if (n < 1024) { return n + ' B'; }
    if (n < 1024 * 1024) { return (n / 1024).toFixed(1) + ' KB'; }
    return (n / 1024 / 1024).toFixed(1) + ' MB';
  }

  // ---------------------------------------------------------------- storage and API

  var memoryStore = {};
  function loadStore() {
    try {
      var s = JSON.parse(window.localStorage.getItem(STORE_KEY) || '{}');
      return s && typeof s === 'object' ? s : {};
    } catch (e) {
      return memoryStore;
    }
  }
  function saveStore() {
    memoryStore = store;
    try { window.localStorage.setItem(STORE_KEY, JSON.stringify(store)); } catch (e) { /* memory only */ }
  }
  var store = loadStore(); // {visitorToken, visitorId, expiresAt, chatId}

  function WidgetError(status, code, message) {
    this.name = 'WidgetError';
    this.status = status;
    this.code = code || 'internal';
    this.message = message || 'Request failed';
  }
  WidgetError.prototype = Object.create(Error.prototype);

  async function api(method, path, body, opts) {
    opts = opts || {};
    var headers = { 'Accept': 'application/json' };
    if (body !== undefined && body !== null) { headers['Content-Type'] = 'application/json'; }
    if (!opts.anonymous && store.visitorToken) { headers['Authorization'] = 'Bearer ' + store.visitorToken; }
    var res;
    try {
      res = await fetch(apiBase + path, {
        method: method,
        headers: headers,
        body: body !== undefined && body !== null ? JSON.stringify(body) : undefined,
        mode: 'cors',
        credentials: 'omit',
        cache: 'no-store'
      });
    } catch (e) {
      throw new WidgetError(0, 'network', 'The chat service could not be reached');
    }
    var text = await res.text().catch(function () { return ''; });
    var data = null;
    if (text) { try { data = JSON.parse(text); } catch (e) { data = null; } }
    if (!res.ok) {
      var err = data && data.error ? data.error : {};
      throw new WidgetError(res.status, err.code, err.message || ('HTTP ' + res.status));
    }
    return data;
  }

  function sessionValid() {
    return !!store.visitorToken && (!store.expiresAt || store.expiresAt - Date.now() > 60000);
  }

  async function ensureSession() {
    if (sessionValid()) { return; }
    var name = ui.name.value.trim();
    var r = await api('POST', '/api/visitor/session', name ? { name: name } : {}, { anonymous: true });
    if (!r || !r.visitorToken) { throw new WidgetError(500, 'internal', 'No visitor session'); }
    store = {
      visitorToken: r.visitorToken,
      visitorId: r.visitorId,
      expiresAt: r.expiresIn ? Date.now() + Number(r.expiresIn) : 0
    };
    saveStore();
  }

  function dropSession() {
    store = {};
    saveStore();
  }

  // ---------------------------------------------------------------- realtime socket

  /*
   * createSocket keeps one WebSocket alive: a fresh ticket per attempt, exponential backoff with
   * jitter (0.25 s .. 30 s), ping every 20 s and a reconnect when no pong comes back in 10 s.
   * request() sends a frame with a fresh ref and resolves with the reply carrying that ref.
   */
  function createSocket(opts) {
    var ws = null;
    var stopped = true;
    var attempt = 0;
    var generation = 0;
    var retryTimer = null;
    var pingTimer = null;
    var pongTimer = null;
    var refSeq = 0;
    var waiters = new Map();

    function nextRef() { refSeq += 1; return 'w' + refSeq; }

    function failWaiters(why) {
      waiters.forEach(function (w) { clearTimeout(w.timer); w.reject(new Error(why)); });
      waiters.clear();
    }

    function scheduleRetry() {
      if (stopped || retryTimer) { return; }
      var base = Math.min(30000, 500 * Math.pow(2, attempt));
      attempt += 1;
      retryTimer = setTimeout(function () { retryTimer = null; connect(); }, Math.round(base * (0.5 + Math.random() / 2)));
    }

    function stopPing() {
      clearInterval(pingTimer);
      clearTimeout(pongTimer);
      pingTimer = null;
      pongTimer = null;
    }

    function drop(sock) {
      if (ws !== sock) { return; }
      ws = null;
      stopPing();
      failWaiters('socket closed');
      try { sock.close(); } catch (e) { /* already closed */ }
      opts.onStatus('offline');
      scheduleRetry();
    }

    async function connect() {
      if (stopped || ws) { return; }
      var ticket;
      try {
        ticket = await opts.getTicket();
      } catch (e) {
        if (e && e.status === 401) { opts.onUnauthorized(); return; }
        scheduleRetry();
        return;
      }
      if (stopped || ws) { return; }
      var sock;
      try { sock = new WebSocket(opts.url(ticket)); } catch (e) { scheduleRetry(); return; }
      ws = sock;
      generation += 1;
      sock.onopen = function () {
        if (ws !== sock) { return; }
        attempt = 0;
        opts.onStatus('online');
        pingTimer = setInterval(function () {
          if (ws !== sock || pongTimer) { return; }
          send({ type: 'ping' });
          pongTimer = setTimeout(function () { drop(sock); }, PONG_TIMEOUT_MS);
        }, PING_INTERVAL_MS);
        opts.onOpen();
      };
      sock.onmessage = function (ev) {
        if (ws !== sock) { return; }
        var f;
        try { f = JSON.parse(ev.data); } catch (e) { return; }
        if (!f || typeof f !== 'object') { return; }
        if (f.type === 'pong') { clearTimeout(pongTimer); pongTimer = null; return; }
        if (f.ref && waiters.has(f.ref) && f.type !== 'message') {
          var w = waiters.get(f.ref);
          waiters.delete(f.ref);
          clearTimeout(w.timer);
          if (f.type === 'error') {
            var err = new Error(f.message || 'error');
            err.code = f.code;
            w.reject(err);
          } else {
            w.resolve(f);
          }
        }
        opts.onFrame(f);
      };
      sock.onclose = function () { drop(sock); };
      sock.onerror = function () { /* onclose follows */ };
    }

    function send(frame) {
      if (!ws || ws.readyState !== 1) { return false; }
      try { ws.send(JSON.stringify(frame)); return true; } catch (e) { return false; }
    }

    function request(frame, timeoutMs) {
      return new Promise(function (resolve, reject) {
        frame.ref = nextRef();
        if (!send(frame)) { reject(new Error('offline')); return; }
        var sock = ws;
        var timer = setTimeout(function () {
          waiters.delete(frame.ref);
          reject(new Error('timeout'));
          drop(sock);
        }, timeoutMs || 15000);
        waiters.set(frame.ref, { resolve: resolve, reject: reject, timer: timer });
      });
    }

    window.addEventListener('online', function () {
      if (!stopped && !ws) {
        clearTimeout(retryTimer);
        retryTimer = null;
        attempt = 0;
        connect();
      }
    });

    return {
      start: function () { if (stopped) { stopped = false; attempt = 0; connect(); } },
      stop: function () {
        stopped = true;
        clearTimeout(retryTimer);
        retryTimer = null;
        var sock = ws;
        ws = null;
        stopPing();
        failWaiters('stopped');
        if (sock) { try { sock.close(); } catch (e) { /* ignore */ } }
      },
      reconnect: function (gen) { if (ws && (gen === undefined || gen === generation)) { drop(ws); } },
      send: send,
      request: request,
      nextRef: nextRef,
      isOpen: function () { return !!ws && ws.readyState === 1; },
      isStarted: function () { return !stopped; },
      generation: function () { return generation; }
    };
  }

  // ---------------------------------------------------------------- DOM

  var STYLES = [
    ':host { all: initial; }',
    '.aw { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; font-size: 14px; line-height: 1.4; color: #1d2330; text-align: left; letter-spacing: normal; text-transform: none; }',
    '.aw *, .aw *::before, .aw *::after { box-sizing: border-box; }',
    '[hidden] { display: none !important; }',
    '.aw-launcher { position: fixed; right: 20px; bottom: 20px; width: 56px; height: 56px; border-radius: 50%; border: none; margin: 0; padding: 0; cursor: pointer; background: var(--aw-primary, #2f6feb); color: #fff; font: inherit; display: flex; align-items: center; justify-content: center; box-shadow: 0 4px 14px rgba(0,0,0,.25); }',
    '.aw-launcher:focus-visible { outline: 3px solid #fff; outline-offset: -6px; }',
    '.aw-badge { position: absolute; top: -4px; right: -4px; min-width: 20px; height: 20px; padding: 0 5px; border-radius: 10px; background: #c62828; color: #fff; font-size: 12px; line-height: 20px; }',
    '.aw-panel { position: fixed; right: 20px; bottom: 88px; width: 360px; height: 540px; max-width: calc(100vw - 40px); max-height: calc(100vh - 108px); display: flex; flex-direction: column; background: #fff; border-radius: 12px; overflow: hidden; box-shadow: 0 8px 30px rgba(0,0,0,.25); }',
    '.aw-head { display: flex; align-items: flex-start; justify-content: space-between; gap: 8px; padding: 12px 14px; background: var(--aw-primary, #2f6feb); color: #fff; }',
    '.aw-title { font-weight: 700; font-size: 15px; }',
    '.aw-status { font-size: 12px; opacity: .92; margin-top: 2px; }',
    '.aw-head-actions { display: flex; gap: 4px; }',
    '.aw-iconbtn { background: transparent; border: none; color: #fff; font: inherit; font-size: 13px; cursor: pointer; padding: 2px 6px; border-radius: 4px; }',
    '.aw-iconbtn:hover { background: rgba(255,255,255,.18); }',
    '.aw-close { line-height: 0; padding: 2px; }',
    '.aw-launcher-icon { display: flex; line-height: 0; }',
    '.aw-launcher svg { width: 26px; height: 26px; }',
    '.aw-welcome { padding: 10px 14px; background: #f5f6f8; border-bottom: 1px solid #e5e7ec; white-space: pre-wrap; }',
    '.aw-messages { flex: 1; overflow-y: auto; padding: 12px; display: flex; flex-direction: column; gap: 8px; background: #fff; }',
    '.aw-msg { max-width: 80%; padding: 7px 10px; border-radius: 12px; background: #f0f2f5; align-self: flex-start; overflow-wrap: anywhere; }',
    '.aw-msg-mine { align-self: flex-end; background: var(--aw-primary, #2f6feb); color: #fff; }',
    '.aw-msg-pending { opacity: .65; }',
    '.aw-msg-failed { outline: 2px solid #c62828; }',
    '.aw-meta { font-size: 11px; opacity: .75; margin-bottom: 2px; }',
    '.aw-body { white-space: pre-wrap; }',
    '.aw-att { margin-top: 4px; }',
    '.aw-att button, .aw-retry { font: inherit; font-size: 12px; cursor: pointer; border: 1px solid rgba(0,0,0,.15); background: #fff; color: #1d2330; border-radius: 6px; padding: 3px 8px; margin: 0; }',
    '.aw-att img { display: block; max-width: 220px; max-height: 160px; margin-top: 4px; border-radius: 6px; cursor: pointer; }',
    '.aw-typing { padding: 0 14px 4px; font-size: 12px; font-style: italic; color: #687085; }',
    '.aw-error { padding: 6px 14px; font-size: 12px; color: #c62828; background: #fdeaea; }',
    '.aw-ended { padding: 10px 14px; text-align: center; border-top: 1px solid #e5e7ec; }',
    '.aw-form { border-top: 1px solid #e5e7ec; padding: 10px; display: flex; flex-direction: column; gap: 8px; margin: 0; }',
    '.aw-row { display: flex; gap: 6px; align-items: flex-end; }',
    '.aw-input, .aw-name { font: inherit; color: #1d2330; background: #fff; width: 100%; border: 1px solid #d5d9e0; border-radius: 8px; padding: 7px 9px; margin: 0; }',
    '.aw-input { resize: none; height: 40px; max-height: 120px; }',
    '.aw-input:focus, .aw-name:focus { outline: 2px solid var(--aw-primary, #2f6feb); outline-offset: 0; }',
    '.aw-send, .aw-new { font: inherit; cursor: pointer; border: none; border-radius: 8px; padding: 0 14px; height: 40px; margin: 0; background: var(--aw-primary, #2f6feb); color: #fff; text-transform: none; }',
    '.aw-send:disabled, .aw-input:disabled, .aw-attach.aw-disabled { opacity: .5; cursor: not-allowed; }',
    '.aw-attach { position: relative; flex: none; width: 40px; height: 40px; border: 1px solid #d5d9e0; border-radius: 8px; display: flex; align-items: center; justify-content: center; cursor: pointer; color: #687085; margin: 0; }',
    '.aw-attach input { position: absolute; inset: 0; width: 100%; height: 100%; opacity: 0; cursor: pointer; margin: 0; }',
    '.aw-sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }'
  ].join('\n');

  var ui = {};
  var root = null;

  /* icon returns a 20px SVG icon built with DOM calls (no markup parsing); d is a path. */
  function icon(d) {
    var NS = 'http://www.w3.org/2000/svg';
    var svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('width', '22');
    svg.setAttribute('height', '22');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    var path = document.createElementNS(NS, 'path');
    path.setAttribute('d', d);
    path.setAttribute('fill', 'none');
    path.setAttribute('stroke', 'currentColor');
    path.setAttribute('stroke-width', '2');
    path.setAttribute('stroke-linecap', 'round');
    path.setAttribute('stroke-linejoin', 'round');
    svg.appendChild(path);
    return svg;
  }
  var ICON_CHAT = 'M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z';
  var ICON_CLOSE = 'M6 6l12 12M18 6L6 18';
  var ICON_CLIP = 'M21 11.5l-8.6 8.6a5 5 0 0 1-7.1-7.1l8.6-8.6a3.3 3.3 0 0 1 4.7 4.7l-8.6 8.6a1.7 1.7 0 0 1-2.4-2.4l7.9-7.9';

  function build() {
    var host = document.createElement('atende-widget');
    var hs = host.style;
    hs.setProperty('all', 'initial', 'important');
    hs.setProperty('position', 'fixed', 'important');
    hs.setProperty('right', '0', 'important');
    hs.setProperty('bottom', '0', 'important');
    hs.setProperty('width', '0', 'important');
    hs.setProperty('height', '0', 'important');
    hs.setProperty('z-index', '2147483000', 'important');
    hs.setProperty('display', 'block', 'important');
    root = host.attachShadow({ mode: 'open' });
    if (root.adoptedStyleSheets !== undefined && typeof CSSStyleSheet === 'function' && 'replaceSync' in CSSStyleSheet.prototype) {
      var sheet = new CSSStyleSheet();
      sheet.replaceSync(STYLES);
      root.adoptedStyleSheets = [sheet];
    } else {
      root.appendChild(node('style', '', STYLES));
    }

    var wrap = node('div', 'aw');
    ui.host = host;

    ui.panel = node('section', 'aw-panel');
    ui.panel.hidden = true;
    ui.panel.setAttribute('role', 'dialog');
    ui.panel.setAttribute('aria-label', 'Chat');
    testid(ui.panel, 'widget-panel');

    var head = node('header', 'aw-head');
    var titles = node('div');
    ui.title = node('div', 'aw-title', 'Chat with us');
    ui.status = testid(node('div', 'aw-status', ''), 'widget-status');
    ui.status.setAttribute('role', 'status');
    titles.appendChild(ui.title);
    titles.appendChild(ui.status);
    var actions = node('div', 'aw-head-actions');
    ui.end = testid(node('button', 'aw-iconbtn', 'End chat'), 'widget-end');
    ui.end.type = 'button';
    ui.end.hidden = true;
    ui.close = node('button', 'aw-iconbtn aw-close');
    ui.close.appendChild(icon(ICON_CLOSE));
    ui.close.type = 'button';
    ui.close.setAttribute('aria-label', 'Close chat');
    testid(ui.close, 'widget-close');
    actions.appendChild(ui.end);
    actions.appendChild(ui.close);
    head.appendChild(titles);
    head.appendChild(actions);

    ui.welcome = node('div', 'aw-welcome', 'Hi! How can we help you today?');
    ui.messages = testid(node('div', 'aw-messages'), 'widget-messages');
    ui.messages.setAttribute('aria-live', 'polite');
    ui.typing = node('div', 'aw-typing');
    ui.typing.hidden = true;
    ui.error = testid(node('div', 'aw-error'), 'widget-error');
    ui.error.hidden = true;
    ui.error.setAttribute('role', 'alert');

    ui.ended = node('div', 'aw-ended');
    ui.ended.hidden = true;
    ui.newChat = testid(node('button', 'aw-new', 'Start a new chat'), 'widget-new-chat');
    ui.newChat.type = 'button';
    ui.ended.appendChild(ui.newChat);

    ui.form = node('form', 'aw-form');
    ui.name = testid(node('input', 'aw-name'), 'widget-name');
    ui.name.type = 'text';
    ui.name.placeholder = 'Your name (optional)';
    ui.name.autocomplete = 'name';
    ui.name.maxLength = 100;
    var row = node('div', 'aw-row');
    ui.attach = node('label', 'aw-attach');
    ui.attach.title = 'Attach a file';
    ui.attach.appendChild(icon(ICON_CLIP));
    ui.attach.appendChild(node('span', 'aw-sr', 'Attach a file'));
    ui.file = testid(node('input'), 'widget-file');
    ui.file.type = 'file';
    ui.attach.appendChild(ui.file);
    ui.input = testid(node('textarea', 'aw-input'), 'widget-input');
    ui.input.rows = 1;
    ui.input.placeholder = 'Type your message…';
    ui.input.setAttribute('aria-label', 'Message');
    ui.send = testid(node('button', 'aw-send', 'Send'), 'widget-send');
    ui.send.type = 'submit';
    row.appendChild(ui.attach);
    row.appendChild(ui.input);
    row.appendChild(ui.send);
    ui.form.appendChild(ui.name);
    ui.form.appendChild(row);

    ui.panel.appendChild(head);
    ui.panel.appendChild(ui.welcome);
    ui.panel.appendChild(ui.messages);
    ui.panel.appendChild(ui.typing);
    ui.panel.appendChild(ui.error);
    ui.panel.appendChild(ui.ended);
    ui.panel.appendChild(ui.form);

    ui.launcher = testid(node('button', 'aw-launcher'), 'widget-launcher');
    ui.launcher.type = 'button';
    ui.launcher.setAttribute('aria-label', 'Open chat');
    ui.launcherIcon = node('span', 'aw-launcher-icon');
    ui.launcherIcon.appendChild(icon(ICON_CHAT));
    ui.launcher.appendChild(ui.launcherIcon);
    ui.badge = testid(node('span', 'aw-badge', ''), 'widget-unread');
    ui.badge.hidden = true;
    ui.launcher.appendChild(ui.badge);

    wrap.appendChild(ui.panel);
    wrap.appendChild(ui.launcher);
    root.appendChild(wrap);
    document.body.appendChild(host);
  }

  // ---------------------------------------------------------------- state

  var phase = 'idle'; // idle | starting | queued | active | resolved
  var chat = null;
  var agentName = '';
  var messages = new Map(); // seq -> message
  var maxSeq = 0;
  var lastRead = 0;
  var pending = new Map(); // clientMsgId -> pending send
  var joinedGen = -1;
  var isOpen = false;
  var unread = 0;
  var typingOut = { on: false, timer: null };
  var typingInTimer = null;
  var readTimer = null;
  var retryStart = null; // {body, clientMsgId} of a first message whose chat could not be started
  var sock = null;

  function contiguousSeq() {
    var n = 0;
    while (messages.has(n + 1)) { n += 1; }
    return n;
  }

  function showError(text) {
    ui.error.textContent = text || '';
    ui.error.hidden = !text;
  }

  function render() {
    var text;
    switch (phase) {
      case 'starting': text = 'Starting chat…'; break;
      case 'queued': text = 'Waiting for an agent…'; break;
      case 'active': text = 'Chatting with ' + (agentName || 'an agent'); break;
      case 'resolved': text = 'Chat ended'; break;
      default: text = 'Send us a message';
    }
    ui.status.textContent = text;
    ui.input.placeholder = phase === 'resolved' ? 'Type to start a new chat…' : 'Type your message…';
    ui.name.hidden = !(phase === 'idle' && !sessionValid());
    ui.ended.hidden = phase !== 'resolved';
    ui.end.hidden = !(phase === 'queued' || phase === 'active');
    var busy = phase === 'starting';
    ui.send.disabled = busy;
    ui.file.disabled = busy;
    ui.attach.classList.toggle('aw-disabled', busy);
    ui.badge.textContent = unread > 9 ? '9+' : String(unread);
    ui.badge.hidden = isOpen || unread === 0;
  }

  function setPhase(p) {
    if (p !== phase) {
      phase = p;
      if (p === 'resolved' || p === 'idle') { stopTyping(); hideTyping(); }
    }
    render();
  }

  function adoptChat(c) {
    if (!c || !c.id) { return; }
    if (chat && chat.id !== c.id) { return; } // an event about another chat
    var previousAgent = chat && chat.agentId;
    chat = Object.assign({}, chat || {}, c);
    if (chat.agent && chat.agent.name) {
      agentName = chat.agent.name;
    } else if (chat.agentName) {
      agentName = chat.agentName;
    } else if (previousAgent && chat.agentId && previousAgent !== chat.agentId) {
      agentName = ''; // transferred: learn the new name from the next agent message
    }
    if (chat.status === 'resolved') {
      if (store.chatId === chat.id) { delete store.chatId; saveStore(); }
      sock.stop();
      pending.forEach(function (p) { failPending(p, 'The chat has ended'); });
      setPhase('resolved');
      return;
    }
    if (store.chatId !== chat.id) { store.chatId = chat.id; saveStore(); }
    setPhase(chat.status === 'active' ? 'active' : 'queued');
  }

  // ---------------------------------------------------------------- messages

  function addMessage(m) {
    if (!m || typeof m.seq !== 'number' || m.seq < 1) { return; }
    if (chat && m.chatId && m.chatId !== chat.id) { return; }
    var had = messages.get(m.seq);
    if (had && !had.synthetic) { return; }
    messages.set(m.seq, m);
    if (m.seq > maxSeq) { maxSeq = m.seq; }
    if (m.clientMsgId && pending.has(m.clientMsgId)) { settle(pending.get(m.clientMsgId), null); }
    if (m.from && m.from.role === 'agent') {
      hideTyping();
      if (m.from.name && (!agentName || (chat && chat.agentId && m.from.id === chat.agentId))) {
        agentName = m.from.name;
      }
      if (!had && m.seq > lastRead && (!isOpen || document.visibilityState !== 'visible')) {
        unread += 1;
      }
    }
    place(m, !!had);
    render();
    scheduleRead();
  }

  function messageEl(m) {
    var mine = m.from && m.from.role === 'visitor';
    var d = testid(node('div', 'aw-msg ' + (mine ? 'aw-msg-mine' : 'aw-msg-theirs')), 'message');
    d.setAttribute('data-seq', String(m.seq));
    d.setAttribute('data-role', (m.from && m.from.role) || '');
    var who = mine ? 'You' : ((m.from && m.from.name) || 'Agent');
    d.appendChild(node('div', 'aw-meta', who + ' · ' + timeOf(m.createdAt)));
    d.appendChild(testid(node('div', 'aw-body', m.body || ''), 'message-body'));
    if (m.attachment) { d.appendChild(attachmentEl(m.attachment)); }
    return d;
  }

  function nearBottom() {
    return ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 80;
  }

  function place(m, replace) {
    var stick = nearBottom() || (m.from && m.from.role === 'visitor');
    var el = messageEl(m);
    var kids = ui.messages.children;
    if (replace) {
      for (var j = 0; j < kids.length; j += 1) {
        if (kids[j].getAttribute('data-seq') === String(m.seq)) {
          ui.messages.replaceChild(el, kids[j]);
          return;
        }
      }
    }
    var before = null;
    for (var i = 0; i < kids.length; i += 1) {
      var s = kids[i].getAttribute('data-seq');
      if (s === null || Number(s) > m.seq) { before = kids[i]; break; }
    }
    ui.messages.insertBefore(el, before);
    if (stick) { ui.messages.scrollTop = ui.messages.scrollHeight; }
  }

  function attachmentEl(att) {
    var wrap = node('div', 'aw-att');
    var btn = testid(node('button', '', 'Attachment: ' + (att.filename || 'attachment') + ' (' + humanSize(att.size) + ')'), 'attachment');
    btn.type = 'button';
    btn.setAttribute('data-attachment-id', att.id);
    btn.addEventListener('click', function () { openAttachment(att); });
    wrap.appendChild(btn);
    if (/^image\//.test(att.contentType || '')) {
      attachmentURL(att.id).then(function (url) {
        var img = document.createElement('img');
        img.alt = att.filename || 'image';
        img.src = url;
        testid(img, 'attachment-thumbnail');
        img.addEventListener('click', function () { openAttachment(att); });
        wrap.appendChild(img);
      }, function () { /* the button still works */ });
    }
    return wrap;
  }

  async function attachmentURL(id) {
    var info = await api('GET', '/api/attachments/' + encodeURIComponent(id));
    var url = info && info.url;
    if (typeof url !== 'string' || !/^https?:\/\//i.test(url)) { throw new Error('no usable link'); }
    return url;
  }

  async function openAttachment(att) {
    var win = window.open('', '_blank');
    try {
      var url = await attachmentURL(att.id);
      if (win) {
        win.opener = null;
        win.location.href = url;
      } else {
        var a = document.createElement('a');
        a.href = url;
        a.target = '_blank';
        a.rel = 'noopener noreferrer';
        a.click();
      }
    } catch (err) {
      if (win) { win.close(); }
      showError('Could not open the file: ' + err.message);
    }
  }

  // ---------------------------------------------------------------- sending

  function newPending(body, attachment, clientMsgId) {
    var p = {
      clientMsgId: clientMsgId || uuid(),
      chatId: chat ? chat.id : null,
      body: body,
      attachment: attachment || null,
      ref: null,
      timer: null,
      gen: 0,
      state: 'sending',
      error: '',
      el: null,
      metaEl: null
    };
    pending.set(p.clientMsgId, p);
    var d = testid(node('div', 'aw-msg aw-msg-mine aw-msg-pending'), 'message-pending');
    d.setAttribute('data-client-msg-id', p.clientMsgId);
    p.metaEl = node('div', 'aw-meta', 'Sending…');
    d.appendChild(p.metaEl);
    d.appendChild(node('div', 'aw-body', body));
    if (attachment) { d.appendChild(node('div', 'aw-att', 'Attachment: ' + attachment.filename)); }
    p.el = d;
    ui.messages.appendChild(d);
    ui.messages.scrollTop = ui.messages.scrollHeight;
    return p;
  }

  function markPending(p) {
    var text = { sending: 'Sending…', waiting: 'Waiting for connection…', failed: 'Not sent' }[p.state] || '';
    p.metaEl.textContent = p.state === 'failed' && p.error ? 'Not sent: ' + p.error : text;
    p.el.classList.toggle('aw-msg-failed', p.state === 'failed');
    var retry = p.el.querySelector('.aw-retry');
    if (p.state === 'failed' && !retry && phase !== 'resolved') {
      retry = node('button', 'aw-retry', 'Retry');
      retry.type = 'button';
      retry.addEventListener('click', function () {
        retry.remove();
        p.state = 'sending';
        p.error = '';
        markPending(p);
        transmit(p);
      });
      p.el.appendChild(retry);
    }
  }

  function failPending(p, why) {
    clearTimeout(p.timer);
    p.state = 'failed';
    p.error = why;
    markPending(p);
  }

  function transmit(p) {
    if (p.state === 'failed' || !chat || p.chatId !== chat.id) { return; }
    clearTimeout(p.timer);
    if (sock.isOpen() && joinedGen === sock.generation()) {
      p.ref = sock.nextRef();
      var frame = { type: 'send-message', chatId: p.chatId, body: p.body, clientMsgId: p.clientMsgId, ref: p.ref };
      if (p.attachment) { frame.attachmentId = p.attachment.id; }
      if (sock.send(frame)) {
        p.state = 'sending';
        p.gen = sock.generation();
        markPending(p);
        p.timer = setTimeout(function () {
          if (pending.has(p.clientMsgId)) {
            p.state = 'waiting';
            markPending(p);
            sock.reconnect(p.gen); // no ack in 5 s: reconnect, then resend the same clientMsgId
          }
        }, ACK_TIMEOUT_MS);
        return;
      }
    }
    p.state = 'waiting';
    markPending(p);
  }

  function settle(p, ack) {
    if (!pending.has(p.clientMsgId)) { return; }
    pending.delete(p.clientMsgId);
    clearTimeout(p.timer);
    if (p.el && p.el.parentNode) { p.el.parentNode.removeChild(p.el); }
    if (ack && typeof ack.seq === 'number' && !messages.has(ack.seq)) {
      addMessage({
        id: ack.messageId, chatId: p.chatId, seq: ack.seq, clientMsgId: p.clientMsgId,
        from: { role: 'visitor', id: store.visitorId || '', name: 'You' }, body: p.body,
        attachment: p.attachment ? { id: p.attachment.id, filename: p.attachment.filename, contentType: p.attachment.contentType, size: p.attachment.size } : undefined,
        createdAt: new Date().toISOString(), synthetic: true
      });
    }
  }

  function flushPending() {
    pending.forEach(function (p) {
      if (p.state !== 'failed') { transmit(p); }
    });
  }

  function queueSend(body, attachment) {
    transmit(newPending(body, attachment));
  }

  /* startChat creates the visitor session (once) and the chat, with the first message if any. */
  async function startChat(firstBody) {
    showError('');
    setPhase('starting');
    var reuse = retryStart && firstBody && retryStart.body === firstBody ? retryStart.clientMsgId : null;
    var p = firstBody ? newPending(firstBody, null, reuse) : null;
    var payload = p ? { message: p.body, clientMsgId: p.clientMsgId } : {};
    try {
      await ensureSession();
      var c;
      try {
        c = await api('POST', '/api/chats', payload);
      } catch (err) {
        if (err.status !== 401) { throw err; }
        dropSession();
        await ensureSession();
        c = await api('POST', '/api/chats', payload);
      }
      retryStart = null;
      if (!chat || chat.id !== c.id) {
        chat = null;
        clearMessages();
      }
      adoptChat(c);
      pending.forEach(function (q) { if (!q.chatId) { q.chatId = c.id; } });
      connectChat();
      return true;
    } catch (err) {
      if (p) {
        pending.delete(p.clientMsgId);
        if (p.el.parentNode) { p.el.parentNode.removeChild(p.el); }
        retryStart = { body: p.body, clientMsgId: p.clientMsgId };
        if (!ui.input.value) { ui.input.value = p.body; }
      }
      setPhase('idle');
      showError(err.status === 429 ? 'Too many requests. Please wait a moment and try again.' :
        'Could not start the chat: ' + err.message);
      return false;
    }
  }

  function connectChat() {
    if (sock.isStarted()) {
      if (sock.isOpen()) { onOpen(); }
    } else {
      sock.start();
    }
  }

  async function joinAndResume() {
    if (!chat) { return; }
    var id = chat.id;
    try {
      await sock.request({ type: 'join-chat', chatId: id });
      if (!chat || chat.id !== id) { return; }
      joinedGen = sock.generation();
      var since = contiguousSeq();
      for (var i = 0; i < 100; i += 1) {
        var r = await sock.request({ type: 'resume', chatId: id, since: since }, 20000);
        if (r.complete !== false || maxSeq <= since) { break; }
        since = maxSeq;
      }
    } catch (err) {
      if (err.code === 'not_found' || err.code === 'forbidden') {
        forgetChat();
        showError('This chat is no longer available. Send a message to start a new one.');
      }
    }
  }

  /* clearMessages forgets the shown messages (pending sends stay). */
  function clearMessages() {
    messages.clear();
    maxSeq = 0;
    lastRead = 0;
    Array.prototype.slice.call(ui.messages.querySelectorAll('[data-seq]')).forEach(function (e) { e.remove(); });
  }

  /* forgetChat clears the current chat (not the visitor session) and goes back to idle. */
  function forgetChat() {
    sock.stop();
    pending.forEach(function (p) { clearTimeout(p.timer); });
    pending.clear();
    chat = null;
    agentName = '';
    messages.clear();
    maxSeq = 0;
    lastRead = 0;
    unread = 0;
    joinedGen = -1;
    delete store.chatId;
    saveStore();
    ui.messages.replaceChildren();
    setPhase('idle');
  }

  // ---------------------------------------------------------------- typing and read

  function stopTyping() {
    clearTimeout(typingOut.timer);
    if (typingOut.on && chat) { sock.send({ type: 'typing', chatId: chat.id, state: 'off' }); }
    typingOut.on = false;
  }

  function onInput() {
    if (!chat || (phase !== 'queued' && phase !== 'active')) { return; }
    if (!ui.input.value.trim()) { stopTyping(); return; }
    if (!typingOut.on) {
      typingOut.on = sock.send({ type: 'typing', chatId: chat.id, state: 'on' });
    }
    clearTimeout(typingOut.timer);
    typingOut.timer = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function showTyping(name) {
    ui.typing.textContent = (name || 'The agent') + ' is typing…';
    ui.typing.hidden = false;
    clearTimeout(typingInTimer);
    typingInTimer = setTimeout(hideTyping, TYPING_SHOW_MS);
  }

  function hideTyping() {
    clearTimeout(typingInTimer);
    ui.typing.hidden = true;
  }

  function scheduleRead() {
    clearTimeout(readTimer);
    readTimer = setTimeout(function () {
      if (!chat || !isOpen || document.visibilityState !== 'visible' || !sock.isOpen()) { return; }
      if (maxSeq > lastRead) {
        lastRead = maxSeq;
        sock.send({ type: 'read', chatId: chat.id, seq: maxSeq });
      }
    }, 500);
  }

  // ---------------------------------------------------------------- socket frames

  function onFrame(f) {
    var p = null;
    switch (f.type) {
      case 'message':
        addMessage(f);
        break;
      case 'ack':
        p = f.clientMsgId ? pending.get(f.clientMsgId) : null;
        if (!p && f.ref) { pending.forEach(function (q) { if (q.ref === f.ref) { p = q; } }); }
        if (p) { settle(p, f); }
        break;
      case 'error':
        if (f.ref) {
          pending.forEach(function (q) { if (q.ref === f.ref) { failPending(q, f.message || f.code || 'error'); } });
        }
        break;
      case 'typing':
        if (chat && f.chatId === chat.id && f.from && f.from.role !== 'visitor') {
          if (f.state === 'on') { showTyping(f.from.name); } else { hideTyping(); }
        }
        break;
      case 'chat.queued':
      case 'chat.accepted':
      case 'chat.transferred':
      case 'chat.resolved':
        if (f.chat && chat && f.chat.id === chat.id) { adoptChat(f.chat); }
        break;
      default:
        break;
    }
  }

  function onOpen() {
    if (!chat) { return; }
    var id = chat.id;
    // Catch up on status changes missed while offline, then join and resume from our last seq.
    api('GET', '/api/chats/' + encodeURIComponent(id)).then(function (c) {
      if (chat && chat.id === id) { adoptChat(c); }
    }, function () { /* the events will tell */ });
    joinAndResume().then(function () {
      if (chat && chat.id === id) { flushPending(); scheduleRead(); }
    });
  }

  function onStatus(s) {
    if (s !== 'online') {
      pending.forEach(function (p) {
        if (p.state === 'sending') { clearTimeout(p.timer); p.state = 'waiting'; markPending(p); }
      });
    }
  }

  // ---------------------------------------------------------------- attachments

  async function uploadAndSend(file) {
    if (!file) { return; }
    showError('');
    if (phase === 'resolved') { forgetChat(); }
    if (!chat) {
      if (!(await startChat(null))) { return; }
    }
    var chatId = chat.id;
    var caption = ui.input.value.trim();
    ui.status.textContent = 'Uploading ' + file.name + '…';
    try {
      var contentType = file.type || 'application/octet-stream';
      var meta = await api('POST', '/api/attachments', {
        chatId: chatId, filename: file.name, contentType: contentType, size: file.size
      });
      var res;
      try {
        res = await fetch(meta.uploadUrl, {
          method: meta.uploadMethod || 'PUT',
          headers: meta.uploadHeaders || { 'Content-Type': contentType },
          body: file,
          mode: 'cors',
          credentials: 'omit'
        });
      } catch (e) {
        throw new Error('the file store could not be reached');
      }
      if (!res.ok) { throw new Error('the upload was refused (HTTP ' + res.status + ')'); }
      if (!chat || chat.id !== chatId) { return; }
      if (caption && ui.input.value.trim() === caption) { ui.input.value = ''; }
      queueSend(caption, { id: meta.attachmentId, filename: file.name, contentType: contentType, size: file.size });
    } catch (err) {
      showError('Could not send ' + file.name + ': ' + err.message);
    } finally {
      render();
    }
  }

  // ---------------------------------------------------------------- open / close

  /* The panel's open/closed state survives navigation within the tab (sessionStorage). */
  function rememberOpen(v) {
    try {
      if (v) { window.sessionStorage.setItem(STORE_KEY + ':open', '1'); } else { window.sessionStorage.removeItem(STORE_KEY + ':open'); }
    } catch (e) { /* not remembered */ }
  }

  function wasOpen() {
    try { return window.sessionStorage.getItem(STORE_KEY + ':open') === '1'; } catch (e) { return false; }
  }

  function open(noFocus) {
    isOpen = true;
    rememberOpen(true);
    unread = 0;
    ui.panel.hidden = false;
    ui.launcher.setAttribute('aria-label', 'Close chat');
    ui.launcherIcon.replaceChildren(icon(ICON_CLOSE));
    render();
    ui.messages.scrollTop = ui.messages.scrollHeight;
    scheduleRead();
    if (!noFocus) { (ui.name.hidden ? ui.input : ui.name).focus(); }
  }

  function close() {
    isOpen = false;
    rememberOpen(false);
    ui.panel.hidden = true;
    ui.launcher.setAttribute('aria-label', 'Open chat');
    ui.launcherIcon.replaceChildren(icon(ICON_CHAT));
    stopTyping();
    render();
  }

  function applySettings(s) {
    if (!s) { return; }
    if (s.name) { ui.title.textContent = s.name; }
    var b = s.branding || {};
    if (b.welcomeText) { ui.welcome.textContent = b.welcomeText; }
    var color = String(b.primaryColor || '').trim();
    if (color && window.CSS && CSS.supports && CSS.supports('color', color)) {
      ui.host.style.setProperty('--aw-primary', color);
    }
  }

  // ---------------------------------------------------------------- start

  function wire() {
    ui.launcher.addEventListener('click', function () { if (isOpen) { close(); } else { open(false); } });
    ui.close.addEventListener('click', close);
    ui.form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var body = ui.input.value.trim();
      if (!body || phase === 'starting') { return; }
      ui.input.value = '';
      stopTyping();
      if (phase === 'resolved') { forgetChat(); }
      if (!chat) {
        startChat(body);
      } else {
        queueSend(body, null);
      }
    });
    ui.input.addEventListener('keydown', function (ev) {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        if (ui.form.requestSubmit) { ui.form.requestSubmit(); } else { ui.send.click(); }
      }
    });
    ui.input.addEventListener('input', onInput);
    ui.input.addEventListener('blur', stopTyping);
    ui.file.addEventListener('change', function () {
      var files = Array.from(ui.file.files || []);
      ui.file.value = '';
      files.reduce(function (prev, f) { return prev.then(function () { return uploadAndSend(f); }); }, Promise.resolve());
    });
    ui.newChat.addEventListener('click', function () {
      forgetChat();
      showError('');
      ui.input.focus();
    });
    ui.end.addEventListener('click', async function () {
      if (!chat) { return; }
      ui.end.disabled = true;
      try {
        adoptChat(await api('POST', '/api/chat/' + encodeURIComponent(chat.id) + '/resolve'));
      } catch (err) {
        showError('Could not end the chat: ' + err.message);
      } finally {
        ui.end.disabled = false;
      }
    });
    document.addEventListener('visibilitychange', scheduleRead);
  }

  async function restore() {
    if (!store.chatId || !sessionValid()) {
      if (store.visitorToken && !sessionValid()) { dropSession(); }
      render();
      return;
    }
    try {
      var c = await api('GET', '/api/chats/' + encodeURIComponent(store.chatId));
      if (!c || c.status === 'resolved') {
        delete store.chatId;
        saveStore();
        render();
        return;
      }
      adoptChat(c);
      connectChat();
    } catch (err) {
      if (err.status === 401) {
        dropSession();
      } else if (err.status === 404 || err.status === 403) {
        delete store.chatId;
        saveStore();
      }
      render();
    }
  }

  function init() {
    build();
    sock = createSocket({
      getTicket: async function () {
        var r = await api('POST', '/api/ws-ticket');
        if (!r || !r.ticket) { throw new WidgetError(500, 'internal', 'no ticket'); }
        return r.ticket;
      },
      url: function (ticket) {
        return apiBase.replace(/^http/i, 'ws') + '/ws?ticket=' + encodeURIComponent(ticket);
      },
      onOpen: onOpen,
      onFrame: onFrame,
      onStatus: onStatus,
      onUnauthorized: function () {
        dropSession();
        forgetChat();
        showError('Your chat session expired. Send a message to start a new chat.');
      }
    });
    wire();
    render();
    api('GET', '/api/settings/public', null, { anonymous: true }).then(applySettings, function () { /* defaults */ });
    restore();
    window.AtendeWidget.root = root;
    if (wasOpen()) { open(true); }
  }

  window.AtendeWidget = {
    /* The widget's open shadow root (null until the page body exists). */
    root: null,
    /* The API base derived from the script's src, e.g. "http://acme.localhost:8080". */
    apiBase: apiBase,
    open: function () { if (root) { open(false); } },
    close: function () { if (root) { close(); } },
    toggle: function () { if (root) { if (isOpen) { close(); } else { open(false); } } }
  };

  if (document.body) {
    init();
  } else {
    document.addEventListener('DOMContentLoaded', init);
  }
})();
