/*
 * Atende agent console (/console). Same origin as the cell API; uses window.AtendeAuth (auth.js)
 * for the session and window.AtendeCore (chat-core.js, shared with the widget) for the socket, the
 * outbox of messages being sent and the message view. Live data comes from one WebSocket
 * (/ws?ticket=...) that reconnects with backoff and a fresh ticket; on every (re)connect the queue
 * and "my chats" are reloaded over HTTP and the open chat is re-joined and resumed from the last
 * seq we hold.
 *
 * Message text is untrusted: it only ever reaches the DOM through textContent.
 */
(function () {
  'use strict';

  var Auth = window.AtendeAuth;
  var Core = window.AtendeCore;
  var node = Core.node;
  var timeOf = Core.timeOf;
  var NOTICE_MS = 6000;

  var $ = Core.byId;
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

  function ago(iso) {
    var t = new Date(iso).getTime();
    if (isNaN(t)) { return ''; }
    var s = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (s < 60) { return 'just now'; }
    if (s < 3600) { return Math.floor(s / 60) + ' min'; }
    return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
  }

  function visitorName(chat) {
    return (chat && chat.visitor && chat.visitor.name) || 'Visitor';
  }

  var notice = Core.notifier(ui.notice, NOTICE_MS);

  // ---------------------------------------------------------------- state

  var me = null;
  var queue = new Map(); // chatId -> chat (status queued)
  var mine = new Map(); // chatId -> chat (status active, agentId == me)
  var leftQueueAt = new Map(); // chatId -> time a chat left the queue (event or accept)
  var queuedAt = new Map(); // chatId -> time a chat.queued event arrived
  var becameMineAt = new Map(); // chatId -> time a chat became mine through an event
  var leftMineAt = new Map(); // chatId -> time a chat stopped being mine
  var chats = new Map(); // chatId -> {chat, unread} and its message log (AtendeCore.newLog)
  var openId = null;
  var accepting = new Set();
  var joinedGen = new Map(); // chatId -> socket generation on which join-chat succeeded

  var sock = Core.createSocket({
    api: Auth.api,
    refPrefix: 'c',
    onOpen: onOpen,
    onFrame: function (f) { Core.routeFrame(f, frames); },
    onStatus: onStatus
  });

  var view = Core.createMessageView({
    list: ui.messages,
    skin: {
      msg: 'msg', mine: 'msg-mine', theirs: 'msg-theirs', pending: 'msg-pending', failed: 'msg-failed',
      meta: 'msg-meta', body: 'msg-body', attachment: 'msg-attachment',
      button: 'button button-small', retry: 'button button-small retry'
    },
    isMine: function (m) { return m.from && me && m.from.role === 'agent' && m.from.id === me.id; },
    author: function (m) { return (m.from && m.from.name) || (m.from && m.from.role === 'visitor' ? 'Visitor' : 'Agent'); },
    link: attachmentURL,
    report: notice,
    lazyImages: true
  });

  /* A send goes over the socket while its chat is open (and joined); a send to a chat that is not
     open goes over HTTP. */
  var outbox = Core.createOutbox({
    socket: sock,
    skin: { failed: 'msg-failed', retry: 'button button-small retry' },
    joined: function (p) { return p.chatId === openId && joinedGen.get(p.chatId) === sock.generation(); },
    elsewhere: function (p) {
      if (p.chatId === openId) { return false; }
      sendOverHttp(p);
      return true;
    },
    acked: function (p, ack) {
      if (!chatState(p.chatId).messages.has(ack.seq)) {
        addMessage(p.chatId, Core.ackedMessage(p, ack, { role: 'agent', id: me.id, name: me.name }));
      }
    }
  });

  var typingOut = Core.typingSender(sock);
  var typingIn = Core.typingIndicator(ui.typing, 'The visitor');
  var scheduleRead = Core.readReporter(sock, function () {
    var c = openId && chats.get(openId);
    return c ? { chatId: openId, log: c } : null;
  });

  function chatState(id) {
    var c = chats.get(id);
    if (!c) {
      c = Core.newLog();
      c.chat = null;
      c.unread = 0;
      chats.set(id, c);
    }
    return c;
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
      typingIn.hide();
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
      outbox.flush();
      scheduleRead();
      if (!ui.input.disabled) { ui.input.focus(); }
    }
  }

  async function joinAndResume(id) {
    var c = chatState(id);
    try {
      return await Core.joinAndResume(sock, id, c, function (gen) { joinedGen.set(id, gen); });
    } catch (err) {
      if (err.code) { notice('Could not open the chat: ' + (err.message || err.code)); }
      return false;
    }
  }

  async function loadHistoryOverHttp(id) {
    var c = chatState(id);
    var since = Core.contiguousSeq(c);
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
    var c = chatState(chatId);
    var how = Core.storeMessage(c, m);
    if (!how) { return; }
    var had = how === 'replaced';
    outbox.seen(m);
    var fromMe = m.from && me && m.from.role === 'agent' && m.from.id === me.id;
    if (c.chat && !had) {
      c.chat.preview = m.body || (m.attachment ? m.attachment.filename : '');
    }
    if (chatId === openId) {
      view.place(m, had);
      if (m.from && m.from.role === 'visitor') { typingIn.hide(); }
      scheduleRead();
    } else if (!had && !fromMe && m.seq > c.lastRead) {
      c.unread += 1;
    }
    if (!had && mine.has(chatId)) { renderLists(); }
  }

  function renderAllMessages() {
    var c = openId ? chats.get(openId) : null;
    var els = [];
    if (c) {
      Array.from(c.messages.keys()).sort(function (a, b) { return a - b; }).forEach(function (seq) {
        els.push(view.message(c.messages.get(seq)));
      });
      outbox.forEach(function (p) {
        if (p.chatId === openId) {
          els.push(view.pending(p));
          outbox.mark(p);
        }
      });
    }
    ui.messages.replaceChildren.apply(ui.messages, els);
    view.scrollDown();
  }

  async function attachmentURL(id) {
    var info = await Auth.api('GET', '/api/attachments/' + encodeURIComponent(id), null, { 'Accept': 'application/json' });
    var url = info && info.url;
    if (typeof url !== 'string' || !/^https?:\/\//i.test(url)) {
      throw new Error('The server returned no usable link');
    }
    return url;
  }

  // ---------------------------------------------------------------- sending

  function queueSend(chatId, body, attachment) {
    var p = outbox.add(chatId, body, attachment);
    if (chatId === openId) { view.showPending(p); }
    outbox.transmit(p);
  }

  async function sendOverHttp(p) {
    try {
      var body = { chatId: p.chatId, body: p.body, clientMsgId: p.clientMsgId };
      if (p.attachment) { body.attachmentId = p.attachment.id; }
      var m = await Auth.api('POST', '/api/messages', body);
      if (m && typeof m.seq === 'number') { addMessage(p.chatId, m); }
      outbox.settle(p, null);
    } catch (err) {
      if (err.status === 0 || err.status >= 500) {
        p.state = 'waiting';
        return; // retried on the next reconnect
      }
      outbox.fail(p, err.message);
    }
  }

  // ---------------------------------------------------------------- typing

  function stopTyping() { typingOut.stop(); }

  function onInput() {
    if (!canWrite()) { return; }
    typingOut.input(openId, ui.input.value);
  }

  // ---------------------------------------------------------------- socket frames

  /* frames says what the socket's frames do (see AtendeCore.routeFrame). */
  var frames = {
    outbox: outbox,
    typing: typingIn,
    message: function (f) { if (f.chatId) { addMessage(f.chatId, f); } },
    typingFrom: function (f) { return f.chatId === openId && !(me && f.from.id === me.id && f.from.role === 'agent'); },
    chat: function (f) {
      var wasMine = mine.has(f.chat.id);
      applyChat(f.chat);
      if (f.chat.id === openId && f.type === 'chat.resolved') {
        notice('The chat was resolved.');
      } else if (wasMine && f.type === 'chat.transferred' && !mine.has(f.chat.id)) {
        notice(visitorName(f.chat) + ' was transferred to another agent.');
      }
    }
  };

  function onOpen() {
    reloadLists();
    if (openId) {
      var id = openId;
      joinAndResume(id).then(function () {
        if (openId === id) { outbox.flush(); scheduleRead(); }
      });
    }
    outbox.forEach(function (p) {
      if (p.chatId !== openId && p.state !== 'failed') { sendOverHttp(p); }
    });
  }

  function onStatus(s) {
    ui.conn.hidden = false;
    ui.conn.className = 'conn conn-' + (s === 'online' ? 'online' : 'offline');
    ui.conn.textContent = s === 'online' ? 'Online' : s === 'connecting' ? 'Connecting…' : 'Reconnecting…';
    if (s !== 'online') { outbox.offline(); }
  }

  // ---------------------------------------------------------------- attachments

  async function uploadAndSend(file) {
    var chatId = openId;
    if (!file || !chatId || !canWrite()) { return; }
    var caption = ui.input.value.trim();
    notice('Uploading ' + file.name + '…');
    ui.file.disabled = true;
    try {
      var att = await Core.uploadFile(Auth.api, chatId, file);
      if (caption && ui.input.value.trim() === caption) { ui.input.value = ''; }
      queueSend(chatId, caption, att);
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
  Core.submitOnEnter(ui.input, ui.composer, ui.send);
  ui.input.addEventListener('input', onInput);
  ui.input.addEventListener('blur', stopTyping);
  ui.file.addEventListener('change', function () {
    Core.eachInTurn(Array.from(ui.file.files || []), uploadAndSend);
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

  Auth.start({
    onLogin: function (user) {
      me = user;
      ui.adminLink.hidden = !Auth.isAdmin(user);
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
      outbox.clear();
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
