/*
 * Atende agent console (/console). Same origin as the cell API; uses window.AtendeAuth (auth.js)
 * for the session and window.AtendeCore (chat-core.js, shared with the widget) for the socket, the
 * outbox of messages being sent and the message view. Live data comes from one WebSocket
 * (/ws?ticket=...) that reconnects with backoff and a fresh ticket; on every (re)connect the queue
 * and "my chats" are reloaded over HTTP and the open chat is re-joined and resumed from the last
 * seq we hold.
 *
 * Beyond chatting: the agent's presence (online/away, a "presence" frame after every connect),
 * private notes (the composer's Note toggle sends "private": true; notes come as "note" frames and
 * from GET /api/chats/{id}/notes, and have their own seq stream, so they are placed in the timeline
 * by time), transfer to a department or (admins, who may list agents) an agent, labels, canned
 * responses ("/shortcut" in the composer), the visitor's read receipts, and "chat.left" (a chat
 * this agent may no longer follow leaves the view).
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
  var PRESENCE_KEY = 'atende.presence';

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
    file: $('chat-file'),
    presenceBox: $('presence-box'),
    presence: $('presence'),
    labelsBox: $('labels-box'),
    labels: $('labels'),
    labelInput: $('label-input'),
    transfer: $('transfer'),
    transferForm: $('transfer-form'),
    transferTarget: $('transfer-target'),
    transferNote: $('transfer-note'),
    transferError: $('transfer-error'),
    transferSubmit: $('transfer-submit'),
    transferCancel: $('transfer-cancel'),
    seen: $('seen'),
    suggestions: $('canned-suggestions'),
    noteMode: $('note-mode')
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
  var departments = []; // GET /api/departments
  var canned = []; // GET /api/canned
  var noteMode = false; // the composer writes private notes
  var presenceState = loadPresence(); // what the agent chose: online | away

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
      button: 'button button-small', retry: 'button button-small retry', note: 'msg-note'
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
      // A note may go to a chat the agent cannot join any more (resolved): HTTP takes it.
      if (p.chatId === openId && !(p.private && sock.isOpen())) { return false; }
      sendOverHttp(p);
      return true;
    },
    acked: function (p, ack) {
      if (p.private) {
        if (!chatState(p.chatId).notes.has(ack.seq)) {
          addNote(p.chatId, Core.ackedMessage(p, ack, { role: 'agent', id: me.id, name: me.name }));
        }
        return;
      }
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
      c.notes = new Map(); // note seq -> note (the chat's private stream)
      c.visitorReadSeq = 0;
      chats.set(id, c);
    }
    return c;
  }

  function isAdmin() { return Auth.isAdmin(me); }

  function departmentName(id) {
    for (var i = 0; i < departments.length; i += 1) {
      if (departments[i].id === id) { return departments[i].name; }
    }
    return '';
  }

  function loadPresence() {
    try { return window.sessionStorage.getItem(PRESENCE_KEY) === 'away' ? 'away' : 'online'; } catch (e) { return 'online'; }
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
    var dept = chat.departmentId ? departmentName(chat.departmentId) || 'Department' : '';
    li.nameEl.textContent = visitorName(chat) + (dept ? ' · ' + dept : '');
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
    li.previewEl.textContent = (chat.labels && chat.labels.length ? '#' + chat.labels.join(' #') + ' · ' : '') + (chat.preview || '');
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
    c.visitorReadSeq = Math.max(c.visitorReadSeq, Number(chat.visitorReadSeq) || 0);
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

  function openChatObj() {
    var c = openId && chats.get(openId);
    return (c && c.chat) || null;
  }

  /* Notes: any staff member who may see the chat, in any state. */
  function canNote() { return !!(me && openChatObj()); }

  /* Labels: the assigned agent or an admin. */
  function canLabel() {
    var chat = openChatObj();
    return !!(chat && me && (isAdmin() || chat.agentId === me.id));
  }

  /* Transfer: an open chat, by its agent or an admin. */
  function canTransfer() {
    var chat = openChatObj();
    if (!chat || !me || (chat.status !== 'active' && chat.status !== 'queued')) { return false; }
    return isAdmin() || (chat.status === 'active' && chat.agentId === me.id);
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
      } else if (chat.status === 'abandoned') {
        parts.push('Abandoned');
      }
      if (chat.departmentId) { parts.push(departmentName(chat.departmentId) || 'Department'); }
      if (chat.csat && chat.csat.score) {
        parts.push('Rated ' + chat.csat.score + '/5' + (chat.csat.comment ? ': “' + chat.csat.comment + '”' : ''));
      }
      ui.status.textContent = parts.join(' · ');
    }
    renderLabels();
    var writable = canWrite();
    if (noteMode && !canNote()) { noteMode = false; }
    ui.noteMode.checked = noteMode;
    ui.noteMode.disabled = !canNote();
    ui.composer.classList.toggle('composer-note', noteMode);
    ui.input.placeholder = noteMode ? 'Write a private note… (only agents see it)' :
      'Type a message… (Enter sends, Shift+Enter for a new line, /shortcut for a canned response)';
    var typable = noteMode ? canNote() : writable;
    ui.input.disabled = !typable;
    ui.send.disabled = !typable;
    ui.send.textContent = noteMode ? 'Add note' : 'Send';
    ui.file.disabled = !writable || noteMode;
    ui.resolve.disabled = !writable;
    ui.transfer.disabled = !canTransfer();
    if (!canTransfer()) { ui.transferForm.hidden = true; }
    if (!typable) { stopTyping(); hideSuggestions(); }
    renderSeen();
  }

  function renderLabels() {
    var chat = openChatObj();
    ui.labelsBox.hidden = !chat;
    if (!chat) { return; }
    var editable = canLabel();
    ui.labelInput.hidden = !editable;
    ui.labels.replaceChildren.apply(ui.labels, (chat.labels || []).map(function (l) {
      var chip = node('span', 'label-chip');
      chip.setAttribute('data-testid', 'label');
      chip.appendChild(node('span', '', l));
      if (editable) {
        var x = node('button', 'label-remove', '×');
        x.type = 'button';
        x.title = 'Remove the label ' + l;
        x.setAttribute('aria-label', 'Remove the label ' + l);
        x.setAttribute('data-testid', 'label-remove');
        x.addEventListener('click', function () {
          saveLabels(chat.id, (chat.labels || []).filter(function (y) { return y !== l; }));
        });
        chip.appendChild(x);
      }
      return chip;
    }));
  }

  /* renderSeen shows "Seen" under the open chat when the visitor read up to its last message and
     that message is an agent's. */
  function renderSeen() {
    var c = openId ? chats.get(openId) : null;
    var last = c && c.maxSeq ? c.messages.get(c.maxSeq) : null;
    ui.seen.hidden = !(last && last.from && last.from.role === 'agent' && c.visitorReadSeq >= c.maxSeq);
  }

  async function openChat(id) {
    if (openId !== id) {
      stopTyping();
      typingIn.hide();
      noteMode = false;
      ui.transferForm.hidden = true;
      hideSuggestions();
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
    await loadNotes(id);
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
      if (err.code === 'forbidden' && c.chat && c.chat.status !== 'active' && c.chat.status !== 'queued') {
        // A closed chat cannot be followed live; its history comes over HTTP.
        await loadHistoryOverHttp(id);
        return false;
      }
      if (err.code) { notice('Could not open the chat: ' + (err.message || err.code)); }
      return false;
    }
  }

  /* loadNotes fetches the chat's notes after the ones held (GET /api/chats/{id}/notes). */
  async function loadNotes(id) {
    var c = chatState(id);
    var since = 0;
    while (c.notes.has(since + 1) && !c.notes.get(since + 1).synthetic) { since += 1; }
    try {
      for (var i = 0; i < 100; i += 1) {
        var r = await Auth.api('GET', '/api/chats/' + encodeURIComponent(id) + '/notes?since=' + since + '&limit=200');
        var got = (r && r.messages) || [];
        got.forEach(function (n) { addNote(id, n); });
        if (!r || r.complete !== false || !got.length) { break; }
        since = got[got.length - 1].seq;
      }
    } catch (err) {
      if (err.status !== 401 && err.status !== 404) { notice('Could not load notes: ' + err.message); }
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
      renderSeen();
    } else if (!had && !fromMe && m.seq > c.lastRead) {
      c.unread += 1;
    }
    if (!had && mine.has(chatId)) { renderLists(); }
  }

  /* anchorOf is the seq of the newest message of c written no later than note n: the note is
     shown right after it (notes have their own seqs). */
  function anchorOf(c, n) {
    var t = Date.parse(n.createdAt) || Date.now();
    var best = 0;
    c.messages.forEach(function (m, seq) {
      if (seq > best && (Date.parse(m.createdAt) || 0) <= t) { best = seq; }
    });
    return best;
  }

  /* noteView is note n as the message view places it: between messages anchor and anchor + 1. */
  function noteView(c, n) {
    return Object.assign({}, n, { seq: anchorOf(c, n) + 0.5, noteSeq: n.seq, private: true });
  }

  /* addNote records a private note ("note" frame, notes page or ack) and shows it. */
  function addNote(chatId, n) {
    if (!n || typeof n.seq !== 'number' || n.seq < 1) { return; }
    var c = chatState(chatId);
    var had = c.notes.get(n.seq);
    if (had && !had.synthetic) { return; }
    n = Object.assign({}, n, { private: true });
    c.notes.set(n.seq, n);
    outbox.seen(n);
    if (chatId !== openId) { return; }
    var old = had ? ui.messages.querySelector('[data-note-seq="' + n.seq + '"]') : null;
    if (old) {
      ui.messages.replaceChild(view.message(noteView(c, n)), old);
    } else {
      view.place(noteView(c, n), false, !!(n.from && me && n.from.id === me.id));
    }
  }

  function renderAllMessages() {
    var c = openId ? chats.get(openId) : null;
    var els = [];
    if (c) {
      var items = [];
      c.messages.forEach(function (m, seq) { items.push({ key: seq, sub: 0, m: m }); });
      c.notes.forEach(function (n, seq) { var v = noteView(c, n); items.push({ key: v.seq, sub: seq, m: v }); });
      items.sort(function (a, b) { return a.key - b.key || a.sub - b.sub; });
      items.forEach(function (it) { els.push(view.message(it.m)); });
      outbox.forEach(function (p) {
        if (p.chatId === openId) {
          els.push(view.pending(p));
          outbox.mark(p);
        }
      });
    }
    ui.messages.replaceChildren.apply(ui.messages, els);
    view.scrollDown();
    renderSeen();
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

  function queueSend(chatId, body, attachment, priv) {
    var p = outbox.add(chatId, body, attachment, undefined, priv);
    if (chatId === openId) { view.showPending(p); }
    outbox.transmit(p);
  }

  async function sendOverHttp(p) {
    try {
      var body = { chatId: p.chatId, body: p.body, clientMsgId: p.clientMsgId };
      if (p.attachment) { body.attachmentId = p.attachment.id; }
      if (p.private) { body.private = true; }
      var m = await Auth.api('POST', '/api/messages', body);
      if (m && typeof m.seq === 'number') {
        if (m.private || p.private) { addNote(p.chatId, m); } else { addMessage(p.chatId, m); }
      }
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
    updateSuggestions();
    if (noteMode ? !canNote() : !canWrite()) { return; }
    typingOut.input(openId, ui.input.value, noteMode);
  }

  // ---------------------------------------------------------------- canned responses

  var suggestions = []; // the canned responses offered for the "/word" at the caret
  var suggestionIndex = 0;

  /* cannedQuery finds the "/word" right before the caret: {start, end, prefix}, or null. */
  function cannedQuery() {
    var v = ui.input.value;
    var end = ui.input.selectionStart === null ? v.length : ui.input.selectionStart;
    var m = /(^|\s)\/([A-Za-z0-9_-]*)$/.exec(v.slice(0, end));
    if (!m) { return null; }
    return { start: end - m[2].length - 1, end: end, prefix: m[2].toLowerCase() };
  }

  function hideSuggestions() {
    suggestions = [];
    ui.suggestions.hidden = true;
    ui.suggestions.replaceChildren();
  }

  function updateSuggestions() {
    var q = canned.length && !ui.input.disabled ? cannedQuery() : null;
    var next = q ? canned.filter(function (c) { return String(c.shortcut).indexOf(q.prefix) === 0; }).slice(0, 8) : [];
    if (!next.length) { hideSuggestions(); return; }
    suggestions = next;
    suggestionIndex = Math.min(suggestionIndex, next.length - 1);
    ui.suggestions.replaceChildren.apply(ui.suggestions, next.map(function (c, i) {
      var li = node('li', 'suggestion' + (i === suggestionIndex ? ' is-active' : ''));
      li.setAttribute('role', 'option');
      li.setAttribute('aria-selected', String(i === suggestionIndex));
      li.setAttribute('data-testid', 'canned-suggestion');
      li.setAttribute('data-shortcut', c.shortcut);
      li.appendChild(node('strong', '', '/' + c.shortcut));
      if (c.title) { li.appendChild(node('span', 'muted', ' ' + c.title)); }
      li.appendChild(node('div', 'item-preview', c.body));
      li.addEventListener('mousedown', function (ev) { ev.preventDefault(); insertCanned(c); });
      return li;
    }));
    ui.suggestions.hidden = false;
  }

  /* insertCanned replaces the "/word" at the caret with the canned response's body. */
  function insertCanned(c) {
    var q = cannedQuery();
    var v = ui.input.value;
    if (q) {
      ui.input.value = v.slice(0, q.start) + c.body + v.slice(q.end);
      var at = q.start + c.body.length;
      ui.input.setSelectionRange(at, at);
    }
    hideSuggestions();
    ui.input.focus();
    onInput();
  }

  /* The suggestions' keys run before Enter submits (this listener is added first). */
  ui.input.addEventListener('keydown', function (ev) {
    if (ui.suggestions.hidden || !suggestions.length) { return; }
    var take = false;
    if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
      suggestionIndex = (suggestionIndex + (ev.key === 'ArrowDown' ? 1 : suggestions.length - 1)) % suggestions.length;
      updateSuggestions();
      take = true;
    } else if ((ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) || ev.key === 'Tab') {
      insertCanned(suggestions[suggestionIndex] || suggestions[0]);
      take = true;
    } else if (ev.key === 'Escape') {
      hideSuggestions();
      take = true;
    }
    if (take) {
      ev.preventDefault();
      ev.stopImmediatePropagation();
    }
  });

  async function loadCanned() {
    try {
      var r = await Auth.api('GET', '/api/canned');
      canned = ((r && r.cannedResponses) || []).slice().sort(function (a, b) { return String(a.shortcut).localeCompare(String(b.shortcut)); });
    } catch (err) {
      canned = [];
    }
  }

  async function loadDepartments() {
    try {
      var r = await Auth.api('GET', '/api/departments');
      departments = (r && r.departments) || [];
      renderLists();
      renderHeader();
    } catch (err) {
      departments = [];
    }
  }

  // ---------------------------------------------------------------- labels

  async function saveLabels(id, labels) {
    try {
      applyChat(await Auth.api('PUT', '/api/chats/' + encodeURIComponent(id) + '/labels', { labels: labels }));
    } catch (err) {
      notice('Could not change the labels: ' + err.message);
    }
  }

  ui.labelInput.addEventListener('keydown', function (ev) {
    if (ev.key !== 'Enter' && ev.key !== ',') { return; }
    ev.preventDefault();
    var chat = openChatObj();
    var l = ui.labelInput.value.trim().toLowerCase().replace(/\s+/g, '-');
    if (!chat || !l) { return; }
    if (!/^[a-z0-9][a-z0-9_-]{0,31}$/.test(l)) {
      notice('A label is 1–32 of a–z, 0–9, _ and -, starting with a letter or digit.');
      return;
    }
    ui.labelInput.value = '';
    var labels = (chat.labels || []).slice();
    if (labels.indexOf(l) < 0) { labels.push(l); }
    saveLabels(chat.id, labels);
  });

  // ---------------------------------------------------------------- transfer

  function transferError(text) {
    ui.transferError.textContent = text || '';
    ui.transferError.hidden = !text;
  }

  function option(value, text, name) {
    var o = node('option', '', text);
    o.value = value;
    o.setAttribute('data-name', name || text);
    return o;
  }

  /* openTransfer fills the target list: departments (every agent may list them) and, for admins
     (only they may list agents), the other enabled agents with their presence. */
  async function openTransfer() {
    var chat = openChatObj();
    if (!chat) { return; }
    transferError('');
    ui.transferNote.value = '';
    ui.transferForm.hidden = false;
    ui.transferTarget.replaceChildren(option('', 'Loading…'));
    ui.transferSubmit.disabled = true;
    var agents = [];
    if (isAdmin()) {
      try {
        var r = await Auth.api('GET', '/api/agents');
        agents = ((r && r.agents) || []).filter(function (a) {
          return a.id !== chat.agentId && !a.disabled && (a.roles || []).some(function (x) { return x === 'agent' || x === 'tenant-admin'; });
        });
      } catch (err) {
        agents = [];
      }
    }
    await loadDepartments();
    var groups = [];
    var depts = departments.filter(function (d) { return d.id !== chat.departmentId || chat.status === 'active'; });
    if (depts.length) {
      var g = node('optgroup');
      g.label = 'Department (back to its queue)';
      depts.forEach(function (d) { g.appendChild(option('d:' + d.id, d.name)); });
      groups.push(g);
    }
    if (agents.length) {
      var ga = node('optgroup');
      ga.label = 'Agent';
      agents.sort(function (a, b) { return String(a.name || a.email).localeCompare(String(b.name || b.email)); });
      agents.forEach(function (a) {
        ga.appendChild(option('a:' + a.id, (a.name || a.email) + ' (' + (a.presence || 'offline') + ')', a.name || a.email));
      });
      groups.push(ga);
    }
    if (!groups.length) {
      ui.transferTarget.replaceChildren(option('', 'Nowhere to transfer to'));
      transferError(isAdmin() ? 'Add departments or agents on the admin page first.' : 'There are no departments; ask an admin to create some.');
      return;
    }
    ui.transferTarget.replaceChildren.apply(ui.transferTarget, groups);
    ui.transferSubmit.disabled = false;
    ui.transferTarget.focus();
  }

  ui.transfer.addEventListener('click', function () {
    if (!ui.transferForm.hidden) { ui.transferForm.hidden = true; return; }
    openTransfer();
  });
  ui.transferCancel.addEventListener('click', function () { ui.transferForm.hidden = true; });
  ui.transferForm.addEventListener('submit', async function (ev) {
    ev.preventDefault();
    var id = openId;
    var target = ui.transferTarget.value;
    if (!id || !target) { return; }
    var body = target.slice(0, 2) === 'd:' ? { departmentId: target.slice(2) } : { agentId: target.slice(2) };
    var note = ui.transferNote.value.trim();
    if (note) { body.note = note; }
    var chosen = ui.transferTarget.selectedOptions[0];
    var label = chosen ? chosen.getAttribute('data-name') || chosen.textContent : '';
    ui.transferSubmit.disabled = true;
    transferError('');
    try {
      stopTyping();
      var chat = await Auth.api('POST', '/api/chat/' + encodeURIComponent(id) + '/transfer', body);
      ui.transferForm.hidden = true;
      applyChat(chat);
      notice('Transferred to ' + label + '.');
      if (openId === id && !isAdmin() && !(chat && chat.status === 'active' && chat.agentId === me.id)) { closeView(); }
    } catch (err) {
      transferError('Could not transfer: ' + err.message);
    } finally {
      ui.transferSubmit.disabled = false;
    }
  });

  /* closeView shows no chat (the open one left us). */
  function closeView() {
    stopTyping();
    typingIn.hide();
    openId = null;
    noteMode = false;
    ui.transferForm.hidden = true;
    renderLists();
    renderAllMessages();
    renderHeader();
  }

  /* chatLeft forgets a chat this agent may no longer follow ("chat.left": transferred away,
     unassigned, or out of the agent's departments). */
  function chatLeft(id) {
    var now = Date.now();
    var c = chats.get(id);
    var name = visitorName(c && c.chat);
    if (queue.delete(id)) { leftQueueAt.set(id, now); }
    if (mine.delete(id)) { leftMineAt.set(id, now); }
    joinedGen.delete(id);
    if (openId === id) {
      closeView();
      notice('The chat with ' + name + ' left your view.');
    }
    chats.delete(id);
    renderLists();
  }

  // ---------------------------------------------------------------- presence

  function sendPresence() {
    sock.send({ type: 'presence', state: presenceState });
  }

  ui.presence.addEventListener('change', function () {
    presenceState = ui.presence.value === 'away' ? 'away' : 'online';
    try { window.sessionStorage.setItem(PRESENCE_KEY, presenceState); } catch (e) { /* not remembered */ }
    ui.presenceBox.classList.toggle('is-away', presenceState === 'away');
    sendPresence();
  });

  // ---------------------------------------------------------------- socket frames

  /* frames says what the socket's frames do (see AtendeCore.routeFrame). */
  var frames = {
    outbox: outbox,
    typing: typingIn,
    message: function (f) { if (f.chatId) { addMessage(f.chatId, f); } },
    typingFrom: function (f) { return f.chatId === openId && !(me && f.from.id === me.id && f.from.role === 'agent'); },
    other: function (f) {
      switch (f.type) {
        case 'note':
          if (f.chatId) { addNote(f.chatId, f); }
          break;
        case 'chat.left':
          if (f.chatId) { chatLeft(f.chatId); }
          break;
        case 'presence':
          if (me && f.agentId === me.id && (f.status === 'online' || f.status === 'away')) {
            ui.presence.value = f.status;
            ui.presenceBox.classList.toggle('is-away', f.status === 'away');
          }
          break;
        case 'read':
          if (f.chatId && f.from && f.from.role === 'visitor' && chats.has(f.chatId)) {
            var c = chats.get(f.chatId);
            c.visitorReadSeq = Math.max(c.visitorReadSeq, Number(f.seq) || 0);
            if (f.chatId === openId) { renderSeen(); }
          }
          break;
        default:
          break;
      }
    },
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
    sendPresence();
    reloadLists();
    if (openId) {
      var id = openId;
      joinAndResume(id).then(function () {
        return loadNotes(id);
      }).then(function () {
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
    if (!body || !openId || !(noteMode ? canNote() : canWrite())) { return; }
    ui.input.value = '';
    stopTyping();
    hideSuggestions();
    queueSend(openId, body, null, noteMode);
  });
  ui.noteMode.addEventListener('change', function () {
    stopTyping();
    noteMode = ui.noteMode.checked && canNote();
    renderHeader();
    if (!ui.input.disabled) { ui.input.focus(); }
  });
  Core.submitOnEnter(ui.input, ui.composer, ui.send);
  ui.input.addEventListener('input', onInput);
  ui.input.addEventListener('blur', function () { stopTyping(); hideSuggestions(); });
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
      ui.presenceBox.hidden = false;
      ui.presence.value = presenceState;
      ui.presenceBox.classList.toggle('is-away', presenceState === 'away');
      renderHeader();
      reloadLists();
      loadDepartments();
      loadCanned();
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
      canned = [];
      departments = [];
      noteMode = false;
      hideSuggestions();
      ui.transferForm.hidden = true;
      ui.presenceBox.hidden = true;
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
