/*
 * Atende visitor widget. A tenant embeds it on any page:
 *   <script src="https://acme.example.com/widget.js" defer></script>
 * The API base is derived from this script's own src (so it works cross-origin); a
 * data-api="https://..." attribute on the script tag overrides it.
 *
 * Everything lives in an open shadow root (window.AtendeWidget.root) so the host page's CSS cannot
 * reach it. The visitor's token, id and open chat are kept in localStorage, keyed by API base.
 * Message text is untrusted: it only ever reaches the DOM through textContent.
 *
 * Before a chat starts the widget asks GET /api/availability: while no agent is online (or outside
 * business hours) it shows the offline form (POST /api/offline-messages), and, when the tenant still
 * takes chats, a "start a chat anyway" button. A queued chat shows its place in the queue
 * (GET /api/chats/{id}/queue-position, then "queue.position" frames); a resolved one offers a
 * rating (POST /api/chats/{id}/csat) and the transcript (GET /api/chats/{id}/transcript, saved as
 * a file). Branding comes from GET /api/settings/public.
 *
 * This file is not served on its own: it is a function of the chat core (chat-core.js, shared with
 * the console), and /widget.js is chat-core.js and this file joined inside one more function
 * (templates.WidgetScript), so the only global the widget sets on the host page is AtendeWidget.
 */
(function (Core) {
  'use strict';

  if (window.AtendeWidget) { return; } // loaded twice

  var node = Core.node;
  var testid = Core.testid;

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

  var sessionPending = null;

  /* ensureSession creates the visitor session unless a valid one exists (one request at a time);
     who ({name, email}) defaults to the name typed above the composer. probe marks a session made
     only to ask GET /api/availability: a name typed later replaces it (see startChat). */
  function ensureSession(who, probe) {
    if (sessionValid()) { return Promise.resolve(); }
    if (!sessionPending) {
      sessionPending = newSession(who || { name: ui.name.value.trim() }, probe).finally(function () { sessionPending = null; });
    }
    return sessionPending;
  }

  async function newSession(who, probe) {
    var body = {};
    if (who.name) { body.name = who.name; }
    if (who.email) { body.email = who.email; }
    var r = await api('POST', '/api/visitor/session', body, { anonymous: true });
    if (!r || !r.visitorToken) { throw new WidgetError(500, 'internal', 'No visitor session'); }
    store = {
      visitorToken: r.visitorToken,
      visitorId: r.visitorId,
      expiresAt: r.expiresIn ? Date.now() + Number(r.expiresIn) : 0
    };
    if (probe) { store.probe = true; }
    saveStore();
  }

  function dropSession() {
    store = {};
    saveStore();
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
    '.aw-ended { padding: 10px 14px; text-align: center; border-top: 1px solid #e5e7ec; display: flex; flex-direction: column; gap: 8px; align-items: center; }',
    '.aw-queue { padding: 6px 14px; font-size: 12px; color: #1d2330; background: #eef3fe; border-bottom: 1px solid #e5e7ec; }',
    '.aw-offline { flex: 1; overflow-y: auto; padding: 12px 14px; display: flex; flex-direction: column; gap: 8px; }',
    '.aw-offline p { margin: 0; }',
    '.aw-offline-form { display: flex; flex-direction: column; gap: 8px; margin: 0; }',
    '.aw-offline-form textarea { resize: vertical; min-height: 90px; }',
    '.aw-note { font-size: 12px; color: #c62828; }',
    '.aw-ok { padding: 8px 10px; border-radius: 8px; background: #e3f4e4; color: #1b5e20; }',
    '.aw-link { font: inherit; font-size: 13px; background: none; border: none; padding: 2px 0; margin: 0; color: var(--aw-primary, #2f6feb); text-decoration: underline; cursor: pointer; text-transform: none; }',
    '.aw-link:disabled { opacity: .5; cursor: not-allowed; }',
    '.aw-csat { display: flex; flex-direction: column; gap: 6px; align-items: center; width: 100%; }',
    '.aw-csat p { margin: 0; }',
    '.aw-stars { display: flex; gap: 2px; }',
    '.aw-star { font: inherit; font-size: 24px; line-height: 1; background: none; border: none; padding: 2px 3px; margin: 0; cursor: pointer; color: #c5cad3; text-transform: none; }',
    '.aw-star.aw-on { color: #f5a623; }',
    '.aw-star:focus-visible { outline: 2px solid var(--aw-primary, #2f6feb); border-radius: 4px; }',
    '.aw-csat textarea { resize: none; height: 52px; }',
    '.aw-form { border-top: 1px solid #e5e7ec; padding: 10px; display: flex; flex-direction: column; gap: 8px; margin: 0; }',
    '.aw-row { display: flex; gap: 6px; align-items: flex-end; }',
    '.aw-input, .aw-name, .aw-field { font: inherit; color: #1d2330; background: #fff; width: 100%; border: 1px solid #d5d9e0; border-radius: 8px; padding: 7px 9px; margin: 0; }',
    '.aw-input { resize: none; height: 40px; max-height: 120px; }',
    '.aw-input:focus, .aw-name:focus, .aw-field:focus { outline: 2px solid var(--aw-primary, #2f6feb); outline-offset: 0; }',
    '.aw-send, .aw-new, .aw-primary { font: inherit; cursor: pointer; border: none; border-radius: 8px; padding: 0 14px; height: 40px; margin: 0; background: var(--aw-primary, #2f6feb); color: #fff; text-transform: none; }',
    '.aw-send:disabled, .aw-primary:disabled, .aw-input:disabled, .aw-attach.aw-disabled { opacity: .5; cursor: not-allowed; }',
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
  /* field returns a form control (input type, or 'textarea') labelled by its placeholder. */
  function field(type, placeholder, id) {
    var e = testid(node(type === 'textarea' ? 'textarea' : 'input', 'aw-field'), id);
    if (type !== 'textarea') { e.type = type; }
    e.placeholder = placeholder;
    e.setAttribute('aria-label', placeholder);
    return e;
  }

  /* button returns a type=button button with class cls, text and data-testid id. */
  function button(cls, text, id) {
    var b = testid(node('button', cls, text), id);
    b.type = 'button';
    return b;
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
    ui.queue = testid(node('div', 'aw-queue'), 'widget-queue');
    ui.queue.hidden = true;
    ui.queue.setAttribute('role', 'status');

    // The offline form: shown instead of the chat while nobody can answer.
    ui.offline = testid(node('div', 'aw-offline'), 'widget-offline');
    ui.offline.hidden = true;
    ui.offlineReason = testid(node('p', '', ''), 'widget-offline-reason');
    ui.offlineForm = node('form', 'aw-offline-form');
    ui.offlineForm.noValidate = true;
    ui.offlineName = field('text', 'Your name', 'widget-offline-name');
    ui.offlineName.autocomplete = 'name';
    ui.offlineName.maxLength = 100;
    ui.offlineEmail = field('email', 'Your email (so we can answer)', 'widget-offline-email');
    ui.offlineEmail.autocomplete = 'email';
    ui.offlineEmail.maxLength = 254;
    ui.offlineMessage = field('textarea', 'Your message', 'widget-offline-message');
    ui.offlineMessage.maxLength = 10000;
    ui.offlineError = testid(node('p', 'aw-note'), 'widget-offline-error');
    ui.offlineError.hidden = true;
    ui.offlineError.setAttribute('role', 'alert');
    ui.offlineSend = testid(node('button', 'aw-primary', 'Send message'), 'widget-offline-send');
    ui.offlineSend.type = 'submit';
    [ui.offlineName, ui.offlineEmail, ui.offlineMessage, ui.offlineError, ui.offlineSend].forEach(function (e) { ui.offlineForm.appendChild(e); });
    ui.offlineSent = testid(node('p', 'aw-ok'), 'widget-offline-sent');
    ui.offlineSent.hidden = true;
    ui.offlineSent.setAttribute('role', 'status');
    ui.chatAnyway = button('aw-link', 'Start a chat anyway', 'widget-chat-anyway');
    ui.offline.appendChild(ui.offlineReason);
    ui.offline.appendChild(ui.offlineForm);
    ui.offline.appendChild(ui.offlineSent);
    ui.offline.appendChild(ui.chatAnyway);
    ui.messages = testid(node('div', 'aw-messages'), 'widget-messages');
    ui.messages.setAttribute('aria-live', 'polite');
    ui.typing = node('div', 'aw-typing');
    ui.typing.hidden = true;
    ui.error = testid(node('div', 'aw-error'), 'widget-error');
    ui.error.hidden = true;
    ui.error.setAttribute('role', 'alert');

    ui.ended = node('div', 'aw-ended');
    ui.ended.hidden = true;
    // The rating of a resolved chat: five stars and an optional comment.
    ui.csat = testid(node('div', 'aw-csat'), 'widget-csat');
    ui.csat.appendChild(node('p', '', 'How would you rate this chat?'));
    var stars = node('div', 'aw-stars');
    stars.setAttribute('role', 'group');
    stars.setAttribute('aria-label', 'Rating');
    ui.stars = [];
    for (var n = 1; n <= 5; n += 1) {
      var star = button('aw-star', '★', 'widget-csat-' + n);
      star.setAttribute('aria-label', n + ' out of 5');
      star.setAttribute('aria-pressed', 'false');
      star.setAttribute('data-score', String(n));
      ui.stars.push(star);
      stars.appendChild(star);
    }
    ui.csat.appendChild(stars);
    ui.csatComment = field('textarea', 'Anything to add? (optional)', 'widget-csat-comment');
    ui.csatComment.maxLength = 1000;
    ui.csat.appendChild(ui.csatComment);
    ui.csatSend = button('aw-primary', 'Send rating', 'widget-csat-send');
    ui.csat.appendChild(ui.csatSend);
    ui.csatThanks = testid(node('p', 'aw-ok', 'Thanks for your feedback!'), 'widget-csat-thanks');
    ui.csatThanks.hidden = true;
    ui.csatThanks.setAttribute('role', 'status');
    ui.transcript = button('aw-link', 'Download the transcript', 'widget-transcript');
    ui.newChat = testid(node('button', 'aw-new', 'Start a new chat'), 'widget-new-chat');
    ui.newChat.type = 'button';
    ui.ended.appendChild(ui.csat);
    ui.ended.appendChild(ui.csatThanks);
    ui.ended.appendChild(ui.transcript);
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
    ui.panel.appendChild(ui.queue);
    ui.panel.appendChild(ui.offline);
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
  var log = Core.newLog(); // the current chat's messages
  var joinedGen = -1;
  var isOpen = false;
  var unread = 0;
  var retryStart = null; // {body, clientMsgId} of a first message whose chat could not be started
  var availability = null; // GET /api/availability: {online, reason, acceptsChats, agentsOnline}
  var availabilityAt = 0;
  var chatAnyway = false; // the visitor chose to chat although no agent is online
  var offlineSent = false;
  var queueInfo = null; // the last "queue.position" of the current chat
  var csatScore = 0;
  var csatState = ''; // '' | 'sending' | 'done'
  // Made by init, once the DOM exists: the socket, the outbox of messages being sent, the message
  // view, the typing notifications, the read reporter and the frame handlers (see AtendeCore).
  var sock = null;
  var outbox = null;
  var view = null;
  var typingOut = null;
  var typingIn = null;
  var scheduleRead = null;
  var frames = null;

  function showError(text) {
    ui.error.textContent = text || '';
    ui.error.hidden = !text;
  }

  /* offlineShown tells whether the offline form stands in for the chat: before a chat, while
     nobody can answer, unless the visitor chose to chat anyway (where the tenant allows it). A
     stored chat being restored is not "before a chat". */
  function offlineShown() {
    return phase === 'idle' && !!availability && availability.online === false && !(store.chatId && sessionValid()) &&
      !(chatAnyway && availability.acceptsChats !== false);
  }

  function queueText(q) {
    var t = q.position === 1 ? 'You are next in the queue' : 'You are number ' + q.position + ' in the queue';
    var s = Number(q.estimatedWaitSeconds) || 0;
    if (s > 0) { t += ' · estimated wait ' + (s < 60 ? 'under a minute' : 'about ' + Math.ceil(s / 60) + ' min'); }
    return t;
  }

  function render() {
    var text;
    var offline = offlineShown();
    switch (phase) {
      case 'starting': text = 'Starting chat…'; break;
      case 'queued': text = 'Waiting for an agent…'; break;
      case 'active': text = 'Chatting with ' + (agentName || 'an agent'); break;
      case 'resolved': text = 'Chat ended'; break;
      default: text = offline ? 'We are away right now' : 'Send us a message';
    }
    ui.status.textContent = text;
    ui.offline.hidden = !offline;
    ui.messages.hidden = offline;
    ui.form.hidden = offline;
    if (offline) {
      ui.offlineReason.textContent = availability.reason || 'No agent is online right now. Leave us a message and we will get back to you.';
      ui.offlineForm.hidden = offlineSent;
      ui.offlineSent.hidden = !offlineSent;
      ui.chatAnyway.hidden = availability.acceptsChats === false;
    }
    var queued = phase === 'queued' && !!queueInfo && !!chat && queueInfo.chatId === chat.id && queueInfo.position > 0;
    ui.queue.hidden = !queued;
    if (queued) { ui.queue.textContent = queueText(queueInfo); }
    var ended = phase === 'resolved' && !!chat;
    ui.csat.hidden = !(ended && chat.status === 'resolved' && !chat.csat && csatState !== 'done');
    ui.csatThanks.hidden = !(ended && csatState === 'done');
    ui.csatSend.disabled = !csatScore || csatState === 'sending';
    ui.stars.forEach(function (b, i) {
      b.classList.toggle('aw-on', i < csatScore);
      b.setAttribute('aria-pressed', String(i + 1 === csatScore));
    });
    ui.transcript.hidden = !ended;
    ui.input.placeholder = phase === 'resolved' ? 'Type to start a new chat…' : 'Type your message…';
    ui.name.hidden = !(phase === 'idle' && (!sessionValid() || !!store.probe));
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
      var was = phase;
      phase = p;
      if (p === 'resolved' || p === 'idle') { stopTyping(); typingIn.hide(); }
      if (p !== 'queued') { queueInfo = null; }
      if (p === 'queued' && was !== 'queued') { fetchQueuePosition(); }
    }
    render();
  }

  /* fetchQueuePosition asks for the queued chat's place (the frames only tell changes). */
  function fetchQueuePosition() {
    if (!chat || phase !== 'queued') { return; }
    var id = chat.id;
    api('GET', '/api/chats/' + encodeURIComponent(id) + '/queue-position').then(function (q) {
      if (q && chat && chat.id === id && phase === 'queued') {
        queueInfo = q;
        render();
      }
    }, function () { /* not in the queue any more: the chat events will tell */ });
  }

  var availabilityNeedsToken = false; // the cell answered GET /api/availability 401 without a token

  /* refreshAvailability asks whether anyone can answer (GET /api/availability). The route is meant
     to be public; where the cell answers it only with a token (401), the visitor's session asks,
     made once the visitor opened the panel (not on every page view). */
  function refreshAvailability() {
    var anonymous = !(availabilityNeedsToken && sessionValid());
    return api('GET', '/api/availability', null, { anonymous: anonymous }).catch(function (err) {
      if (err.status !== 401 || !anonymous) { throw err; }
      availabilityNeedsToken = true;
      if (sessionValid()) { return api('GET', '/api/availability'); }
      if (!isOpen) { throw err; }
      return ensureSession({}, true).then(function () { return api('GET', '/api/availability'); });
    }).then(function (a) {
      if (a && typeof a === 'object') {
        availability = a;
        availabilityAt = Date.now();
        render();
      }
    }, function () { /* keep what we know */ });
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
    if (chat.status === 'resolved' || chat.status === 'abandoned') {
      if (store.chatId === chat.id) { delete store.chatId; saveStore(); }
      sock.stop();
      outbox.forEach(function (p) { outbox.fail(p, 'The chat has ended'); });
      setPhase('resolved');
      return;
    }
    if (store.chatId !== chat.id || store.probe) {
      store.chatId = chat.id;
      delete store.probe;
      saveStore();
    }
    setPhase(chat.status === 'active' ? 'active' : 'queued');
  }

  // ---------------------------------------------------------------- messages

  function addMessage(m) {
    if (!m || (chat && m.chatId && m.chatId !== chat.id)) { return; }
    var how = Core.storeMessage(log, m);
    if (!how) { return; }
    var had = how === 'replaced';
    outbox.seen(m);
    if (m.from && m.from.role === 'agent') {
      typingIn.hide();
      if (m.from.name && (!agentName || (chat && chat.agentId && m.from.id === chat.agentId))) {
        agentName = m.from.name;
      }
      if (!had && m.seq > log.lastRead && (!isOpen || document.visibilityState !== 'visible')) {
        unread += 1;
      }
    }
    view.place(m, had, m.from && m.from.role === 'visitor');
    render();
    scheduleRead();
  }

  async function attachmentURL(id) {
    var info = await api('GET', '/api/attachments/' + encodeURIComponent(id));
    var url = info && info.url;
    if (typeof url !== 'string' || !/^https?:\/\//i.test(url)) { throw new Error('no usable link'); }
    return url;
  }

  // ---------------------------------------------------------------- sending

  /* newPending records a message to send in the current chat (if any yet) and shows it. */
  function newPending(body, attachment, clientMsgId) {
    var p = outbox.add(chat ? chat.id : null, body, attachment, clientMsgId);
    view.showPending(p);
    return p;
  }

  function queueSend(body, attachment) {
    outbox.transmit(newPending(body, attachment));
  }

  /* startChat creates the visitor session (once) and the chat, with the first message if any. */
  async function startChat(firstBody) {
    showError('');
    setPhase('starting');
    var reuse = retryStart && firstBody && retryStart.body === firstBody ? retryStart.clientMsgId : null;
    var p = firstBody ? newPending(firstBody, null, reuse) : null;
    var payload = p ? { message: p.body, clientMsgId: p.clientMsgId } : {};
    try {
      if (store.probe && ui.name.value.trim() && !sessionPending) { dropSession(); } // a session with the name
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
      outbox.forEach(function (q) { if (!q.chatId) { q.chatId = c.id; } });
      connectChat();
      return true;
    } catch (err) {
      if (p) {
        outbox.remove(p);
        if (p.el.parentNode) { p.el.parentNode.removeChild(p.el); }
        retryStart = { body: p.body, clientMsgId: p.clientMsgId };
        if (!ui.input.value) { ui.input.value = p.body; }
      }
      if (err.status === 503) {
        // Nobody takes chats now (business hours, or no agent while the tenant requires one).
        availability = { online: false, acceptsChats: false, reason: err.message };
        chatAnyway = false;
        offlineSent = false;
        if (p && !ui.offlineMessage.value) { ui.offlineMessage.value = p.body; }
        setPhase('idle');
        showError('');
        refreshAvailability();
        return false;
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
      await Core.joinAndResume(sock, id, log, function (gen) {
        if (!chat || chat.id !== id) { return false; }
        joinedGen = gen;
      });
    } catch (err) {
      if (err.code === 'not_found' || err.code === 'forbidden') {
        forgetChat();
        showError('This chat is no longer available. Send a message to start a new one.');
      }
    }
  }

  /* clearMessages forgets the shown messages (pending sends stay). */
  function clearMessages() {
    Core.resetLog(log);
    Array.prototype.slice.call(ui.messages.querySelectorAll('[data-seq]')).forEach(function (e) { e.remove(); });
  }

  /* forgetChat clears the current chat (not the visitor session) and goes back to idle. */
  function forgetChat() {
    sock.stop();
    outbox.clear();
    chat = null;
    agentName = '';
    Core.resetLog(log);
    unread = 0;
    joinedGen = -1;
    delete store.chatId;
    saveStore();
    ui.messages.replaceChildren();
    queueInfo = null;
    csatScore = 0;
    csatState = '';
    ui.csatComment.value = '';
    chatAnyway = false;
    offlineSent = false;
    setPhase('idle');
    refreshAvailability();
  }

  // ---------------------------------------------------------------- typing

  function stopTyping() { typingOut.stop(); }

  function onInput() {
    if (!chat || (phase !== 'queued' && phase !== 'active')) { return; }
    typingOut.input(chat.id, ui.input.value);
  }

  // ---------------------------------------------------------------- socket frames

  /* The socket's frames (see AtendeCore.routeFrame): the current chat's messages, its agent's
     typing and its status changes. */
  function typingFrom(f) {
    return !!chat && f.chatId === chat.id && f.from.role !== 'visitor';
  }

  function onChatEvent(f) {
    if (chat && f.chat.id === chat.id) { adoptChat(f.chat); }
  }

  function onOpen() {
    if (!chat) { return; }
    var id = chat.id;
    // Catch up on status changes missed while offline, then join and resume from our last seq.
    api('GET', '/api/chats/' + encodeURIComponent(id)).then(function (c) {
      if (chat && chat.id === id) { adoptChat(c); }
    }, function () { /* the events will tell */ });
    joinAndResume().then(function () {
      if (chat && chat.id === id) {
        outbox.flush();
        scheduleRead();
        fetchQueuePosition();
      }
    });
  }

  /* onOther handles the frames routeFrame does not know: the queue position of the chat. */
  function onOther(f) {
    if (f.type === 'queue.position' && chat && f.chatId === chat.id) {
      queueInfo = f;
      render();
    }
  }

  // ---------------------------------------------------------------- offline form, rating, transcript

  var EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;

  function offlineError(text) {
    ui.offlineError.textContent = text || '';
    ui.offlineError.hidden = !text;
  }

  async function sendOffline() {
    var name = ui.offlineName.value.trim();
    var email = ui.offlineEmail.value.trim();
    var message = ui.offlineMessage.value.trim();
    offlineError('');
    if (!EMAIL.test(email)) { offlineError('Enter your email address, so we can answer you.'); ui.offlineEmail.focus(); return; }
    if (!message) { offlineError('Write your message.'); ui.offlineMessage.focus(); return; }
    var body = { name: name, email: email, message: message };
    var who = { name: name, email: email };
    ui.offlineSend.disabled = true;
    try {
      await ensureSession(who);
      try {
        await api('POST', '/api/offline-messages', body);
      } catch (err) {
        if (err.status !== 401) { throw err; }
        dropSession();
        await ensureSession(who);
        await api('POST', '/api/offline-messages', body);
      }
      offlineSent = true;
      ui.offlineSent.textContent = 'Thanks' + (name ? ', ' + name : '') + '! We got your message and will answer at ' + email + '.';
      ui.offlineMessage.value = '';
      render();
    } catch (err) {
      offlineError(err.status === 429 ? 'Too many requests. Please wait a moment and try again.' :
        'Could not send your message: ' + err.message);
    } finally {
      ui.offlineSend.disabled = false;
    }
  }

  async function sendRating() {
    if (!chat || !csatScore || csatState) { return; }
    var id = chat.id;
    var body = { score: csatScore };
    var comment = ui.csatComment.value.trim();
    if (comment) { body.comment = comment; }
    csatState = 'sending';
    render();
    try {
      var c = await api('POST', '/api/chats/' + encodeURIComponent(id) + '/csat', body);
      if (chat && chat.id === id) { chat.csat = (c && c.csat) || { score: body.score }; }
      csatState = 'done';
    } catch (err) {
      if (err.status === 409) {
        csatState = 'done'; // rated already (another tab)
      } else {
        csatState = '';
        showError('Could not send your rating: ' + err.message);
      }
    }
    render();
  }

  /* downloadTranscript fetches the chat's transcript with the visitor's token and saves it. */
  async function downloadTranscript() {
    if (!chat || !store.visitorToken) { return; }
    var id = chat.id;
    ui.transcript.disabled = true;
    showError('');
    try {
      var res;
      try {
        res = await fetch(apiBase + '/api/chats/' + encodeURIComponent(id) + '/transcript', {
          headers: { 'Authorization': 'Bearer ' + store.visitorToken, 'Accept': 'text/plain' },
          mode: 'cors',
          credentials: 'omit',
          cache: 'no-store'
        });
      } catch (e) {
        throw new WidgetError(0, 'network', 'the chat service could not be reached');
      }
      if (!res.ok) { throw new WidgetError(res.status, '', 'HTTP ' + res.status); }
      var url = URL.createObjectURL(await res.blob());
      var a = document.createElement('a');
      a.href = url;
      a.download = 'chat-' + id.replace(/[^A-Za-z0-9_-]/g, '') + '.txt';
      a.hidden = true;
      root.appendChild(a);
      a.click();
      a.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
    } catch (err) {
      showError('Could not download the transcript: ' + err.message);
    } finally {
      ui.transcript.disabled = false;
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
      var att = await Core.uploadFile(api, chatId, file);
      if (!chat || chat.id !== chatId) { return; }
      if (caption && ui.input.value.trim() === caption) { ui.input.value = ''; }
      queueSend(caption, att);
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
    view.scrollDown();
    scheduleRead();
    if (phase === 'idle' && Date.now() - availabilityAt > 15000) { refreshAvailability(); }
    if (!noFocus) { (offlineShown() ? ui.offlineName : ui.name.hidden ? ui.input : ui.name).focus(); }
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
    var b = s.branding || {};
    var title = String(b.title || s.name || '').trim();
    if (title) { ui.title.textContent = title; }
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
    Core.submitOnEnter(ui.input, ui.form, ui.send);
    ui.input.addEventListener('input', onInput);
    ui.input.addEventListener('blur', stopTyping);
    ui.file.addEventListener('change', function () {
      var files = Array.from(ui.file.files || []);
      ui.file.value = '';
      Core.eachInTurn(files, uploadAndSend);
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
    ui.offlineForm.addEventListener('submit', function (ev) {
      ev.preventDefault();
      sendOffline();
    });
    ui.chatAnyway.addEventListener('click', function () {
      chatAnyway = true;
      render();
      (ui.name.hidden ? ui.input : ui.name).focus();
    });
    ui.stars.forEach(function (b, i) {
      b.addEventListener('click', function () {
        if (csatState) { return; }
        csatScore = i + 1;
        render();
      });
    });
    ui.csatSend.addEventListener('click', sendRating);
    ui.transcript.addEventListener('click', downloadTranscript);
    document.addEventListener('visibilitychange', scheduleRead);
    // While the panel is open before a chat, keep the offline form in step with the agents.
    setInterval(function () {
      if (isOpen && phase === 'idle' && document.visibilityState === 'visible') { refreshAvailability(); }
    }, 30000);
  }

  async function restore() {
    if (!store.chatId || !sessionValid()) {
      if (store.visitorToken && !sessionValid()) { dropSession(); }
      render();
      return;
    }
    try {
      var c = await api('GET', '/api/chats/' + encodeURIComponent(store.chatId));
      if (!c || c.status === 'resolved' || c.status === 'abandoned') {
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
    sock = Core.createSocket({
      api: api,
      base: apiBase,
      refPrefix: 'w',
      onOpen: onOpen,
      onFrame: function (f) { Core.routeFrame(f, frames); },
      // A lost socket leaves the sends in flight waiting for the next connection.
      onClose: function () { outbox.offline(); },
      onUnauthorized: function () {
        dropSession();
        forgetChat();
        showError('Your chat session expired. Send a message to start a new chat.');
      }
    });
    view = Core.createMessageView({
      list: ui.messages,
      skin: {
        msg: 'aw-msg', mine: 'aw-msg-mine', theirs: 'aw-msg-theirs', pending: 'aw-msg-pending', failed: 'aw-msg-failed',
        meta: 'aw-meta', body: 'aw-body', attachment: 'aw-att', button: '', retry: 'aw-retry'
      },
      isMine: function (m) { return m.from && m.from.role === 'visitor'; },
      author: function (m, mine) { return mine ? 'You' : ((m.from && m.from.name) || 'Agent'); },
      link: attachmentURL,
      report: showError
    });
    /* Only the current chat's sends go out; they wait while the chat is not joined. */
    outbox = Core.createOutbox({
      socket: sock,
      skin: { failed: 'aw-msg-failed', retry: 'aw-retry' },
      mayGo: function (p) { return !!chat && p.chatId === chat.id; },
      joined: function () { return joinedGen === sock.generation(); },
      canRetry: function () { return phase !== 'resolved'; },
      acked: function (p, ack) {
        if (!log.messages.has(ack.seq)) {
          addMessage(Core.ackedMessage(p, ack, { role: 'visitor', id: store.visitorId || '', name: 'You' }));
        }
      }
    });
    typingOut = Core.typingSender(sock);
    typingIn = Core.typingIndicator(ui.typing, 'The agent');
    scheduleRead = Core.readReporter(sock, function () {
      return chat && isOpen ? { chatId: chat.id, log: log } : null;
    });
    frames = { outbox: outbox, typing: typingIn, message: addMessage, typingFrom: typingFrom, chat: onChatEvent, other: onOther };
    wire();
    render();
    api('GET', '/api/settings/public', null, { anonymous: true }).then(applySettings, function () { /* defaults */ });
    refreshAvailability();
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
})(AtendeCore);
