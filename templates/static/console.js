/*
 * Atende agent console (/console). Same origin as the cell API; uses window.AtendeAuth (auth.js)
 * for the session. Live data comes from one WebSocket (/ws?ticket=...) that reconnects with
 * backoff and a fresh ticket; on every (re)connect the queue and "my chats" are reloaded over HTTP
 * and the open chat is re-joined and resumed from the last seq we hold.
 *
 * Message text is untrusted: it only ever reaches the DOM through textContent.
 */
(function () {
  'use strict';

  var Auth = window.AtendeAuth;
  var ACK_TIMEOUT_MS = 5000;
  var PING_INTERVAL_MS = 20000;
  var PONG_TIMEOUT_MS = 10000;
  var TYPING_IDLE_MS = 3000;
  var TYPING_SHOW_MS = 8000;
  var NOTICE_MS = 6000;

  function $(id) { return document.getElementById(id); }
  var ui = {
    conn: $('connection-status'),
    adminLink: $('admin-link'),
    queue: $('queue'),
    queueCount: $('queue-count'),
    queueEmpty: $('queue-empty'),
    mine: $('my-chats'),
    mineEmpty: $('my-chats-empty'),
    notice: $('notice'),
    title: $('chat-title'),
    status: $('chat-status'),
    resolve: $('resolve'),
    messages: $('chat-messages'),
    typing: $('typing'),
    composer: $('composer'),
    input: $('chat-input'),
    send: $('chat-send'),
    file: $('chat-file')
  };

  // ---------------------------------------------------------------- small helpers

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

  function timeOf(iso) {
    var d = iso ? new Date(iso) : new Date();
    if (isNaN(d.getTime())) { return ''; }
    return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  function ago(iso) {
    var t = new Date(iso).getTime();
    if (isNaN(t)) { return ''; }
    var s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 60) { return 'just now'; }
    if (s < 3600) { return Math.floor(s / 60) + ' min'; }
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }

  function humanSize(n) {
    n = Number(n) || 0;
    if (n < 1024) { return n + ' B'; }
    if (n < 1024 * 1024) { return (n / 1024).toFixed(1) + ' KB'; }
    return (n / 1024 / 1024).toFixed(1) + ' MB';
  }

  function visitorName(chat) {
    return (chat && chat.visitor && chat.visitor.name) || 'Visitor';
  }

  var noticeTimer = null;
  function notice(text) {
    clearTimeout(noticeTimer);
    ui.notice.textContent = text || '';
    ui.notice.hidden = !text;
    if (text) {
      noticeTimer = setTimeout(function () { ui.notice.hidden = true; }, NOTICE_MS);
    }
  }

  // ---------------------------------------------------------------- realtime socket

  /*
   * createSocket keeps one WebSocket alive: a fresh ticket per attempt, exponential backoff with
   * jitter (0.25 s .. 30 s), ping every 20 s and a reconnect when no pong comes back in 10 s.
   * request() sends a frame with a fresh ref and resolves with the reply carrying that ref
   * (rejecting on an "error" reply, a timeout or a closed socket). Every frame is also handed to
   * onFrame.
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

    function nextRef() { refSeq += 1; return 'c' + refSeq; }

    function failWaiters(why) {
      waiters.forEach(function (w) { clearTimeout(w.timer); w.reject(new Error(why)); });
      waiters.clear();
    }

    function scheduleRetry() {
      if (stopped || retryTimer) { return; }
      var base = Math.min(30000, 500 * Math.pow(2, attempt));
      attempt += 1;
      var delay = Math.round(base * (0.5 + Math.random() / 2));
      retryTimer = setTimeout(function () { retryTimer = null; connect(); }, delay);
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
      if (opts.onClose) { opts.onClose(); }
      scheduleRetry();
    }

    async function connect() {
      if (stopped || ws) { return; }
      opts.onStatus('connecting');
      var ticket;
      try {
        ticket = await opts.getTicket();
      } catch (e) {
        opts.onStatus('offline');
        scheduleRetry();
        return;
      }
      if (stopped || ws) { return; }
      var sock;
      try {
        sock = new WebSocket(opts.url(ticket));
      } catch (e) {
        scheduleRetry();
        return;
      }
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
        if (f.type === 'pong') {
          clearTimeout(pongTimer);
          pongTimer = null;
          return;
        }
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
      try {
        ws.send(JSON.stringify(frame));
        return true;
      } catch (e) {
        return false;
      }
    }

    function request(frame, timeoutMs) {
      return new Promise(function (resolve, reject) {
        frame.ref = nextRef();
        if (!send(frame)) {
          reject(new Error('offline'));
          return;
        }
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
        opts.onStatus('offline');
      },
      /* reconnect drops the current socket (if it is still generation gen) and reconnects. */
      reconnect: function (gen) { if (ws && (gen === undefined || gen === generation)) { drop(ws); } },
      send: send,
      request: request,
      nextRef: nextRef,
      isOpen: function () { return !!ws && ws.readyState === 1; },
      generation: function () { return generation; }
    };
  }

  // ---------------------------------------------------------------- state

  var me = null;
  var queue = new Map(); // chatId -> chat (status queued)
  var mine = new Map(); // chatId -> chat (status active, agentId == me)
  var leftQueueAt = new Map(); // chatId -> time a chat left the queue (event or accept)
  var queuedAt = new Map(); // chatId -> time a chat.queued event arrived
  var becameMineAt = new Map(); // chatId -> time a chat became mine through an event
  var leftMineAt = new Map(); // chatId -> time a chat stopped being mine
  var chats = new Map(); // chatId -> {chat, messages: Map(seq -> message), maxSeq, unread, lastRead}
  var pending = new Map(); // clientMsgId -> pending send
  var openId = null;
  var accepting = new Set();
  var typingOut = { chatId: null, on: false, timer: null };
  var typingInTimer = null;
  var readTimer = null;
  var joinedGen = new Map(); // chatId -> socket generation on which join-chat succeeded
  var sock = null;

  function chatState(id) {
    var c = chats.get(id);
    if (!c) {
      c = { chat: null, messages: new Map(), maxSeq: 0, unread: 0, lastRead: 0 };
      chats.set(id, c);
    }
    return c;
  }

  /* contiguousSeq is the highest n such that messages 1..n are all held (seqs start at 1). */
  function contiguousSeq(c) {
    var n = 0;
    while (c.messages.has(n + 1)) { n += 1; }
    return n;
  }

  // ---------------------------------------------------------------- lists

  /* syncList makes ul show one <li> per chat, in order, reusing the element of a chat already
     shown (so a click never lands on a node that was just replaced). */
  function syncList(ul, list, create, update) {
    var existing = new Map();
    Array.prototype.forEach.call(ul.children, function (li) { existing.set(li.getAttribute('data-chat-id'), li); });
    list.forEach(function (chat, i) {
      var li = existing.get(chat.id);
      if (li) {
        existing.delete(chat.id);
      } else {
        li = create(chat);
      }
      update(li, chat);
      if (ul.children[i] !== li) { ul.insertBefore(li, ul.children[i] || null); }
    });
    existing.forEach(function (li) { li.remove(); });
  }

  function renderLists() {
    var q = Array.from(queue.values()).sort(function (a, b) {
      return (Date.parse(a.createdAt) || 0) - (Date.parse(b.createdAt) || 0);
    });
    syncList(ui.queue, q, queueItem, updateQueueItem);
    ui.queueCount.textContent = String(q.length);
    ui.queueEmpty.hidden = q.length > 0;

    var m = Array.from(mine.values()).sort(function (a, b) {
      return (Date.parse(a.acceptedAt || a.createdAt) || 0) - (Date.parse(b.acceptedAt || b.createdAt) || 0);
    });
    syncList(ui.mine, m, mineItem, updateMineItem);
    ui.mineEmpty.hidden = m.length > 0;
    document.title = (q.length ? '(' + q.length + ') ' : '') + document.title.replace(/^\(\d+\) /, '');
  }

  function queueItem(chat) {
    var li = node('li', 'chat-item queue-item');
    li.setAttribute('data-testid', 'queue-item');
    li.setAttribute('data-chat-id', chat.id);
    var title = node('div', 'item-title');
    li.nameEl = title.appendChild(node('span'));
    li.waitEl = title.appendChild(node('span', 'item-meta'));
    li.appendChild(title);
    li.previewEl = li.appendChild(node('div', 'item-preview'));
    var actions = node('div', 'item-actions');
    var btn = node('button', 'button button-primary button-small', 'Accept');
    btn.type = 'button';
    btn.setAttribute('data-testid', 'accept');
    btn.addEventListener('click', function () { accept(chat.id); });
    li.acceptEl = actions.appendChild(btn);
    li.appendChild(actions);
    return li;
  }

  function updateQueueItem(li, chat) {
    li.nameEl.textContent = visitorName(chat);
    li.waitEl.textContent = ago(chat.createdAt);
    li.waitEl.title = 'Waiting since ' + timeOf(chat.createdAt);
    li.previewEl.textContent = chat.preview || '';
    li.acceptEl.disabled = accepting.has(chat.id);
  }

  function mineItem(chat) {
    var li = node('li', 'chat-item');
    li.setAttribute('data-testid', 'my-chat');
    li.setAttribute('data-chat-id', chat.id);
    li.tabIndex = 0;
    var title = node('div', 'item-title');
    li.nameEl = title.appendChild(node('span'));
    li.badgeEl = title.appendChild(node('span', 'unread'));
    li.badgeEl.setAttribute('data-testid', 'unread');
    li.appendChild(title);
    li.previewEl = li.appendChild(node('div', 'item-preview'));
    li.addEventListener('click', function () { openChat(chat.id); });
    li.addEventListener('keydown', function (ev) {
      if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); openChat(chat.id); }
    });
    return li;
  }

  function updateMineItem(li, chat) {
    var c = chatState(chat.id);
    li.classList.toggle('is-open', chat.id === openId);
    li.nameEl.textContent = visitorName(chat);
    li.badgeEl.textContent = String(c.unread);
    li.badgeEl.hidden = !(c.unread > 0 && chat.id !== openId);
    li.previewEl.textContent = chat.preview || '';
  }

  async function reloadLists() {
    var started = Date.now();
    var results;
    try {
      results = await Promise.all([
        Auth.api('GET', '/api/chat/queue'),
        Auth.api('GET', '/api/chats?status=active')
      ]);
    } catch (err) {
      if (err.status !== 401) { notice('Could not load chats: ' + err.message); }
      return;
    }
    var after = function (m, id) { return (m.get(id) || 0) >= started; };

    var nextQueue = new Map();
    ((results[0] && results[0].chats) || []).forEach(function (chat) {
      if (chat.status === 'queued' && !after(leftQueueAt, chat.id)) { nextQueue.set(chat.id, chat); }
    });
    queue.forEach(function (chat, id) {
      if (!nextQueue.has(id) && after(queuedAt, id)) { nextQueue.set(id, chat); }
    });
    queue = nextQueue;

    var nextMine = new Map();
    ((results[1] && results[1].chats) || []).forEach(function (chat) {
      if (me && chat.agentId === me.id && chat.status === 'active' && !after(leftMineAt, chat.id)) {
        nextMine.set(chat.id, chat);
      }
    });
    mine.forEach(function (chat, id) {
      if (!nextMine.has(id) && after(becameMineAt, id)) { nextMine.set(id, chat); }
    });
    mine = nextMine;
    mine.forEach(function (chat, id) { chatState(id).chat = chat; });
    renderLists();
    if (openId && chats.get(openId) && chats.get(openId).chat) { renderHeader(); }
  }

  async function accept(id) {
    if (accepting.has(id)) { return; }
    accepting.add(id);
    renderLists();
    try {
      var chat = await Auth.api('POST', '/api/chat/' + encodeURIComponent(id) + '/accept');
      queue.delete(id);
      leftQueueAt.set(id, Date.now());
      applyChat(chat || { id: id, status: 'active', agentId: me.id });
      openChat(id);
    } catch (err) {
      if (err.status === 409) {
        notice('This chat was taken by another agent.');
        queue.delete(id);
        leftQueueAt.set(id, Date.now());
      } else if (err.status === 404) {
        notice('This chat no longer exists.');
        queue.delete(id);
        leftQueueAt.set(id, Date.now());
      } else {
        notice('Could not accept the chat: ' + err.message);
      }
    } finally {
      accepting.delete(id);
      renderLists();
    }
  }

  /* applyChat records a chat seen in an event or reply and moves it between the lists. */
  function applyChat(chat) {
    if (!chat || !chat.id) { return; }
    var now = Date.now();
    var c = chatState(chat.id);
    if (c.chat) {
      // Keep fields an event may omit.
      chat = Object.assign({}, c.chat, chat);
    }
    c.chat = chat;
    if (chat.status === 'queued') {
      queue.set(chat.id, chat);
      queuedAt.set(chat.id, now);
    } else {
      queue.delete(chat.id);
      leftQueueAt.set(chat.id, now);
    }
    var isMine = !!me && chat.status === 'active' && chat.agentId === me.id;
    if (isMine) {
      if (!mine.has(chat.id)) { becameMineAt.set(chat.id, now); }
      mine.set(chat.id, chat);
    } else if (mine.has(chat.id) || chat.status === 'resolved') {
      mine.delete(chat.id);
      leftMineAt.set(chat.id, now);
    }
    renderLists();
    if (chat.id === openId) { renderHeader(); }
  }

  // ---------------------------------------------------------------- open chat

  function canWrite() {
    var c = openId && chats.get(openId);
    return !!(c && c.chat && c.chat.status === 'active' && me && c.chat.agentId === me.id);
  }

  function renderHeader() {
    var c = openId ? chats.get(openId) : null;
    var chat = c && c.chat;
    if (!chat) {
      ui.title.textContent = openId ? 'Chat' : 'No chat open';
      ui.status.textContent = openId ? '' : 'Accept a chat from the queue or pick one of yours.';
    } else {
      var v = chat.visitor || {};
      ui.title.textContent = visitorName(chat);
      var parts = [];
      if (v.email) { parts.push(v.email); }
      if (chat.status === 'active') {
        parts.push(chat.agentId === (me && me.id) ? 'Active' : 'Assigned to another agent');
      } else if (chat.status === 'resolved') {
        parts.push('Resolved');
      } else if (chat.status === 'queued') {
        parts.push('Waiting in the queue');
      }
      ui.status.textContent = parts.join(' · ');
    }
    var writable = canWrite();
    ui.input.disabled = !writable;
    ui.send.disabled = !writable;
    ui.file.disabled = !writable;
    ui.resolve.disabled = !writable;
    if (!writable) { stopTyping(); }
  }

  async function openChat(id) {
    if (openId !== id) {
      stopTyping();
      hideTyping();
    }
    openId = id;
    var c = chatState(id);
    c.unread = 0;
    renderLists();
    renderHeader();
    renderAllMessages();
    if (!c.chat) {
      try { applyChat(await Auth.api('GET', '/api/chats/' + encodeURIComponent(id))); } catch (e) { /* shown below */ }
    }
    if (sock.isOpen()) {
      await joinAndResume(id);
    } else {
      await loadHistoryOverHttp(id);
    }
    if (openId === id) {
      flushPending();
      scheduleRead();
      if (!ui.input.disabled) { ui.input.focus(); }
    }
  }

  async function joinAndResume(id) {
    var c = chatState(id);
    try {
      await sock.request({ type: 'join-chat', chatId: id });
      joinedGen.set(id, sock.generation());
      var since = contiguousSeq(c);
      for (var i = 0; i < 100; i += 1) {
        var r = await sock.request({ type: 'resume', chatId: id, since: since }, 20000);
        if (r.complete !== false || c.maxSeq <= since) { break; }
        since = c.maxSeq;
      }
      return true;
    } catch (err) {
      if (err.code) { notice('Could not open the chat: ' + (err.message || err.code)); }
      return false;
    }
  }

  async function loadHistoryOverHttp(id) {
    var c = chatState(id);
    var since = contiguousSeq(c);
    try {
      for (var i = 0; i < 100; i += 1) {
        var r = await Auth.api('GET', '/api/chats/' + encodeURIComponent(id) + '/messages?since=' + since + '&limit=200');
        (r && r.messages || []).forEach(function (m) { addMessage(id, m); });
        if (!r || r.complete !== false || c.maxSeq <= since) { break; }
        since = c.maxSeq;
      }
    } catch (err) {
      if (err.status !== 401) { notice('Could not load messages: ' + err.message); }
    }
  }

  // ---------------------------------------------------------------- messages

  function addMessage(chatId, m) {
    if (!m || typeof m.seq !== 'number' || m.seq < 1) { return; }
    var c = chatState(chatId);
    var had = c.messages.get(m.seq);
    if (had && !had.synthetic) { return; }
    c.messages.set(m.seq, m);
    if (m.seq > c.maxSeq) { c.maxSeq = m.seq; }
    if (m.clientMsgId && pending.has(m.clientMsgId)) {
      settle(pending.get(m.clientMsgId), null);
    }
    var fromMe = m.from && me && m.from.role === 'agent' && m.from.id === me.id;
    if (c.chat && !had) {
      c.chat.preview = m.body || (m.attachment ? m.attachment.filename : '');
    }
    if (chatId === openId) {
      placeMessage(m, had);
      if (m.from && m.from.role === 'visitor') { hideTyping(); }
      scheduleRead();
    } else if (!had && !fromMe && m.seq > c.lastRead) {
      c.unread += 1;
    }
    if (!had && mine.has(chatId)) { renderLists(); }
  }

  function messageEl(m) {
    var mineMsg = m.from && me && m.from.role === 'agent' && m.from.id === me.id;
    var d = node('div', 'msg ' + (mineMsg ? 'msg-mine' : 'msg-theirs'));
    d.setAttribute('data-testid', 'message');
    d.setAttribute('data-seq', String(m.seq));
    d.setAttribute('data-role', (m.from && m.from.role) || '');
    var who = (m.from && m.from.name) || (m.from && m.from.role === 'visitor' ? 'Visitor' : 'Agent');
    d.appendChild(node('div', 'msg-meta', who + ' · ' + timeOf(m.createdAt)));
    var body = node('div', 'msg-body', m.body || '');
    body.setAttribute('data-testid', 'message-body');
    d.appendChild(body);
    if (m.attachment) { d.appendChild(attachmentEl(m.attachment)); }
    return d;
  }

  function pendingEl(p) {
    var d = node('div', 'msg msg-mine msg-pending');
    d.setAttribute('data-testid', 'message-pending');
    d.setAttribute('data-client-msg-id', p.clientMsgId);
    var meta = node('div', 'msg-meta', 'Sending…');
    d.appendChild(meta);
    d.appendChild(node('div', 'msg-body', p.body));
    if (p.attachment) { d.appendChild(node('div', 'msg-attachment', 'Attachment: ' + p.attachment.filename)); }
    p.metaEl = meta;
    return d;
  }

  function nearBottom() {
    var el = ui.messages;
    return el.scrollHeight - el.scrollTop - el.clientHeight < 80;
  }

  function scrollDown(force) {
    if (force || nearBottom()) { ui.messages.scrollTop = ui.messages.scrollHeight; }
  }

  /* placeMessage inserts (or replaces) m in the open chat's list, keeping seq order. */
  function placeMessage(m, replace) {
    var stick = nearBottom();
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
    scrollDown(stick);
  }

  function renderAllMessages() {
    var c = openId ? chats.get(openId) : null;
    var els = [];
    if (c) {
      Array.from(c.messages.keys()).sort(function (a, b) { return a - b; }).forEach(function (seq) {
        els.push(messageEl(c.messages.get(seq)));
      });
      pending.forEach(function (p) {
        if (p.chatId === openId) {
          p.el = pendingEl(p);
          markPending(p);
          els.push(p.el);
        }
      });
    }
    ui.messages.replaceChildren.apply(ui.messages, els);
    scrollDown(true);
  }

  /* attachmentEl shows a button that fetches a short-lived URL and opens it; images get a thumbnail. */
  function attachmentEl(att) {
    var wrap = node('div', 'msg-attachment');
    var btn = node('button', 'button button-small', 'Attachment: ' + (att.filename || 'attachment') + ' (' + humanSize(att.size) + ')');
    btn.type = 'button';
    btn.setAttribute('data-testid', 'attachment');
    btn.setAttribute('data-attachment-id', att.id);
    btn.addEventListener('click', function () { openAttachment(att); });
    wrap.appendChild(btn);
    if (/^image\//.test(att.contentType || '')) {
      attachmentURL(att.id).then(function (url) {
        var img = document.createElement('img');
        img.alt = att.filename || 'image';
        img.loading = 'lazy';
        img.src = url;
        img.setAttribute('data-testid', 'attachment-thumbnail');
        img.addEventListener('click', function () { openAttachment(att); });
        wrap.appendChild(img);
      }, function () { /* the button still works */ });
    }
    return wrap;
  }

  async function attachmentURL(id) {
    var info = await Auth.api('GET', '/api/attachments/' + encodeURIComponent(id), null, { 'Accept': 'application/json' });
    var url = info && info.url;
    if (typeof url !== 'string' || !/^https?:\/\//i.test(url)) {
      throw new Error('The server returned no usable link');
    }
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
      notice('Could not open the file: ' + err.message);
    }
  }

  // ---------------------------------------------------------------- sending

  function queueSend(chatId, body, attachment) {
    var p = {
      clientMsgId: uuid(),
      chatId: chatId,
      body: body,
      attachment: attachment || null,
      ref: null,
      timer: null,
      gen: 0,
      state: 'sending',
      el: null,
      metaEl: null
    };
    pending.set(p.clientMsgId, p);
    if (chatId === openId) {
      p.el = pendingEl(p);
      ui.messages.appendChild(p.el);
      scrollDown(true);
    }
    transmit(p);
  }

  function markPending(p) {
    if (!p.metaEl) { return; }
    var text = { sending: 'Sending…', waiting: 'Waiting for connection…', failed: 'Not sent' }[p.state] || '';
    p.metaEl.textContent = p.state === 'failed' && p.error ? 'Not sent: ' + p.error : text;
    if (p.el) {
      p.el.classList.toggle('msg-failed', p.state === 'failed');
      var retry = p.el.querySelector('.retry');
      if (p.state === 'failed' && !retry) {
        retry = node('button', 'button button-small retry', 'Retry');
        retry.type = 'button';
        retry.addEventListener('click', function () { p.state = 'sending'; p.error = ''; markPending(p); retry.remove(); transmit(p); });
        p.el.appendChild(retry);
      }
    }
  }

  /* transmit sends p over the socket when its chat is open and the socket is up; otherwise it is
     sent after the next (re)connect, or over HTTP for a chat that is not open. Same clientMsgId
     every time, so a retry never duplicates the message. */
  function transmit(p) {
    if (p.state === 'failed') { return; }
    clearTimeout(p.timer);
    if (p.chatId === openId && sock.isOpen() && joinedGen.get(p.chatId) === sock.generation()) {
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
            sock.reconnect(p.gen); // no ack in time: assume the socket is dead; resend after reconnect
          }
        }, ACK_TIMEOUT_MS);
        return;
      }
    }
    if (p.chatId !== openId) {
      sendOverHttp(p);
      return;
    }
    p.state = 'waiting';
    markPending(p);
  }

  async function sendOverHttp(p) {
    try {
      var body = { chatId: p.chatId, body: p.body, clientMsgId: p.clientMsgId };
      if (p.attachment) { body.attachmentId = p.attachment.id; }
      var m = await Auth.api('POST', '/api/messages', body);
      if (m && typeof m.seq === 'number') { addMessage(p.chatId, m); }
      settle(p, null);
    } catch (err) {
      if (err.status === 0 || err.status >= 500) {
        p.state = 'waiting';
        return; // retried on the next reconnect
      }
      p.state = 'failed';
      p.error = err.message;
      markPending(p);
    }
  }

  /* settle finishes a pending send; with an ack it also shows the message until the server's
     own "message" frame (same seq) replaces it. */
  function settle(p, ack) {
    if (!pending.has(p.clientMsgId)) { return; }
    pending.delete(p.clientMsgId);
    clearTimeout(p.timer);
    if (p.el && p.el.parentNode) { p.el.parentNode.removeChild(p.el); }
    if (ack && typeof ack.seq === 'number') {
      var c = chatState(p.chatId);
      if (!c.messages.has(ack.seq)) {
        addMessage(p.chatId, {
          id: ack.messageId, chatId: p.chatId, seq: ack.seq, clientMsgId: p.clientMsgId,
          from: { role: 'agent', id: me.id, name: me.name }, body: p.body,
          attachment: p.attachment ? { id: p.attachment.id, filename: p.attachment.filename, contentType: p.attachment.contentType, size: p.attachment.size } : undefined,
          createdAt: new Date().toISOString(), synthetic: true
        });
      }
    }
  }

  function flushPending() {
    pending.forEach(function (p) {
      if (p.state !== 'failed') { transmit(p); }
    });
  }

  // ---------------------------------------------------------------- typing and read

  function sendTyping(chatId, state) {
    if (chatId) { sock.send({ type: 'typing', chatId: chatId, state: state }); }
  }

  function stopTyping() {
    clearTimeout(typingOut.timer);
    if (typingOut.on) { sendTyping(typingOut.chatId, 'off'); }
    typingOut.on = false;
    typingOut.chatId = null;
  }

  function onInput() {
    if (!canWrite()) { return; }
    if (!ui.input.value.trim()) { stopTyping(); return; }
    if (!typingOut.on || typingOut.chatId !== openId) {
      stopTyping();
      typingOut.on = true;
      typingOut.chatId = openId;
      sendTyping(openId, 'on');
    }
    clearTimeout(typingOut.timer);
    typingOut.timer = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function showTyping(name) {
    ui.typing.textContent = (name || 'The visitor') + ' is typing…';
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
      var c = openId && chats.get(openId);
      if (!c || document.visibilityState !== 'visible' || !sock.isOpen()) { return; }
      if (c.maxSeq > c.lastRead) {
        c.lastRead = c.maxSeq;
        sock.send({ type: 'read', chatId: openId, seq: c.maxSeq });
      }
    }, 500);
  }

  // ---------------------------------------------------------------- socket frames

  function onFrame(f) {
    switch (f.type) {
      case 'message':
        if (f.chatId) { addMessage(f.chatId, f); }
        break;
      case 'ack':
        var p = f.clientMsgId ? pending.get(f.clientMsgId) : null;
        if (!p && f.ref) {
          pending.forEach(function (q) { if (q.ref === f.ref) { p = q; } });
        }
        if (p) { settle(p, f); }
        break;
      case 'error':
        if (f.ref) {
          pending.forEach(function (q) {
            if (q.ref === f.ref) {
              clearTimeout(q.timer);
              q.state = 'failed';
              q.error = f.message || f.code || 'error';
              markPending(q);
            }
          });
        }
        break;
      case 'typing':
        if (f.chatId === openId && f.from && !(me && f.from.id === me.id && f.from.role === 'agent')) {
          if (f.state === 'on') { showTyping(f.from.name); } else { hideTyping(); }
        }
        break;
      case 'chat.queued':
      case 'chat.accepted':
      case 'chat.transferred':
      case 'chat.resolved':
        if (f.chat) {
          var wasMine = mine.has(f.chat.id);
          applyChat(f.chat);
          if (f.chat.id === openId && f.type === 'chat.resolved') {
            notice('The chat was resolved.');
          } else if (wasMine && f.type === 'chat.transferred' && !mine.has(f.chat.id)) {
            notice(visitorName(f.chat) + ' was transferred to another agent.');
          }
        }
        break;
      default:
        break;
    }
  }

  function onOpen() {
    reloadLists();
    if (openId) {
      var id = openId;
      joinAndResume(id).then(function () {
        if (openId === id) { flushPending(); scheduleRead(); }
      });
    }
    pending.forEach(function (p) {
      if (p.chatId !== openId && p.state !== 'failed') { sendOverHttp(p); }
    });
  }

  function onStatus(s) {
    ui.conn.hidden = false;
    ui.conn.className = 'conn conn-' + (s === 'online' ? 'online' : 'offline');
    ui.conn.textContent = s === 'online' ? 'Online' : s === 'connecting' ? 'Connecting…' : 'Reconnecting…';
    if (s !== 'online') {
      pending.forEach(function (p) {
        if (p.state === 'sending') { clearTimeout(p.timer); p.state = 'waiting'; markPending(p); }
      });
    }
  }

  // ---------------------------------------------------------------- attachments

  async function uploadAndSend(file) {
    var chatId = openId;
    if (!file || !chatId || !canWrite()) { return; }
    var caption = ui.input.value.trim();
    notice('Uploading ' + file.name + '…');
    ui.file.disabled = true;
    try {
      var contentType = file.type || 'application/octet-stream';
      var meta = await Auth.api('POST', '/api/attachments', {
        chatId: chatId, filename: file.name, contentType: contentType, size: file.size
      });
      var res;
      try {
        res = await fetch(meta.uploadUrl, {
          method: meta.uploadMethod || 'PUT',
          headers: meta.uploadHeaders || { 'Content-Type': contentType },
          body: file,
          credentials: 'omit'
        });
      } catch (e) {
        throw new Error('the file store could not be reached');
      }
      if (!res.ok) { throw new Error('the upload was refused (HTTP ' + res.status + ')'); }
      if (caption && ui.input.value.trim() === caption) { ui.input.value = ''; }
      queueSend(chatId, caption, { id: meta.attachmentId, filename: file.name, contentType: contentType, size: file.size });
      notice('');
    } catch (err) {
      notice('Could not send ' + file.name + ': ' + err.message);
    } finally {
      ui.file.value = '';
      renderHeader();
    }
  }

  // ---------------------------------------------------------------- wiring

  ui.composer.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var body = ui.input.value.trim();
    if (!body || !openId || !canWrite()) { return; }
    ui.input.value = '';
    stopTyping();
    queueSend(openId, body, null);
  });
  ui.input.addEventListener('keydown', function (ev) {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      ui.composer.requestSubmit ? ui.composer.requestSubmit() : ui.send.click();
    }
  });
  ui.input.addEventListener('input', onInput);
  ui.input.addEventListener('blur', stopTyping);
  ui.file.addEventListener('change', function () {
    var files = Array.from(ui.file.files || []);
    files.reduce(function (prev, f) { return prev.then(function () { return uploadAndSend(f); }); }, Promise.resolve());
  });
  ui.resolve.addEventListener('click', async function () {
    var id = openId;
    if (!id || !canWrite()) { return; }
    ui.resolve.disabled = true;
    try {
      stopTyping();
      applyChat(await Auth.api('POST', '/api/chat/' + encodeURIComponent(id) + '/resolve'));
    } catch (err) {
      notice('Could not resolve the chat: ' + err.message);
    } finally {
      renderHeader();
    }
  });
  document.addEventListener('visibilitychange', scheduleRead);
  setInterval(function () { if (queue.size) { renderLists(); } }, 30000);

  sock = createSocket({
    getTicket: async function () {
      var r = await Auth.api('POST', '/api/ws-ticket');
      if (!r || !r.ticket) { throw new Error('no ticket'); }
      return r.ticket;
    },
    url: function (ticket) {
      return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws?ticket=' + encodeURIComponent(ticket);
    },
    onOpen: onOpen,
    onFrame: onFrame,
    onStatus: onStatus
  });

  Auth.start({
    onLogin: function (user) {
      me = user;
      ui.adminLink.hidden = !(user.roles || []).some(function (r) { return r === 'tenant-admin' || r === 'super-admin'; });
      renderHeader();
      reloadLists();
      sock.start();
    },
    onLogout: function () {
      sock.stop();
      me = null;
      openId = null;
      queue.clear();
      mine.clear();
      chats.clear();
      pending.forEach(function (p) { clearTimeout(p.timer); });
      pending.clear();
      renderLists();
      renderAllMessages();
      renderHeader();
      ui.conn.hidden = true;
    }
  });

  window.AtendeConsole = {
    /* Test and debugging hook: the socket controller (start/stop/reconnect/isOpen). */
    socket: sock,
    openChat: openChat
  };
})();
