/*
 * Atende chat core: what the agent console (console.js) and the visitor widget (widget.js) share.
 * The realtime socket (ticket, connect, reconnect with backoff, ping, request/reply by ref), the
 * outbox of messages being sent (clientMsgId, resend after a reconnect, settle on ack), the
 * seq-ordered message log and its DOM view, typing and read notifications, attachment upload and
 * a few DOM helpers. The admin page uses the DOM helpers too. Staff notes (private messages) travel
 * through the same outbox and view, flagged private: they have their own seq stream per chat.
 *
 * This file declares exactly one name, AtendeCore, and touches neither the DOM nor the network until
 * one of its functions is called. The console and admin pages load it as /static/chat-core.js, so
 * there AtendeCore is a global next to AtendeAuth. The widget never loads it on its own: the server
 * joins this file and widget.js inside one function (templates.WidgetScript, served as /widget.js),
 * so on a tenant's web site AtendeCore is a local of that function and nothing leaks onto the page.
 *
 * Message text is untrusted: it only ever reaches the DOM through textContent.
 */
var AtendeCore = (function () {
  'use strict';

  var ACK_TIMEOUT_MS = 5000;
  var PING_INTERVAL_MS = 20000;
  var PONG_TIMEOUT_MS = 10000;
  var REQUEST_TIMEOUT_MS = 15000;
  var RESUME_TIMEOUT_MS = 20000;
  var TYPING_IDLE_MS = 3000;
  var TYPING_SHOW_MS = 8000;
  var READ_DELAY_MS = 500;

  // ---------------------------------------------------------------- small helpers

  function byId(id) { return document.getElementById(id); }

  /* uuid returns a random (version 4) UUID, used as a message's clientMsgId. */
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

  /* node creates a <tag> element with an optional class and text (set as textContent). */
  function node(tag, className, text) {
    var e = document.createElement(tag);
    if (className) { e.className = className; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  /* testid sets e's data-testid (the hook the browser tests use) and returns e. */
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

  /* notifier returns notice(text): it shows text in el for ms milliseconds ('' hides it at once). */
  function notifier(el, ms) {
    var timer = null;
    return function notice(text) {
      clearTimeout(timer);
      el.textContent = text || '';
      el.hidden = !text;
      if (text) { timer = setTimeout(function () { el.hidden = true; }, ms); }
    };
  }

  /* submitOnEnter makes Enter (without Shift, outside an IME composition) in input submit form. */
  function submitOnEnter(input, form, button) {
    input.addEventListener('keydown', function (ev) {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        if (form.requestSubmit) { form.requestSubmit(); } else { button.click(); }
      }
    });
  }

  /* eachInTurn calls fn (which may return a promise) on every item of list, one after the other. */
  function eachInTurn(list, fn) {
    return list.reduce(function (prev, x) { return prev.then(function () { return fn(x); }); }, Promise.resolve());
  }

  function nearBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight < 80;
  }

  // ---------------------------------------------------------------- realtime socket

  /*
   * createSocket keeps one WebSocket to <base>/ws alive: a fresh ticket (POST /api/ws-ticket) per
   * attempt, exponential backoff with jitter (0.25 s .. 30 s), ping every 20 s and a reconnect when
   * no pong comes back in 10 s. request() sends a frame with a fresh ref and resolves with the reply
   * carrying that ref (rejecting on an "error" reply, a timeout or a closed socket). Every frame is
   * also handed to onFrame.
   *
   * opts: api(method, path) -> Promise of the JSON reply; base, the API's http(s) base URL
   * (default location.origin); refPrefix for the refs ("c1", "c2", ...); onOpen() after each
   * connect; onFrame(frame); and, optional, onStatus("connecting" | "online" | "offline"),
   * onClose() when an open socket is lost, onUnauthorized() when the ticket request answers 401
   * (then no retry follows).
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

    function nextRef() { refSeq += 1; return (opts.refPrefix || 'r') + refSeq; }

    function status(s) { if (opts.onStatus) { opts.onStatus(s); } }

    async function getTicket() {
      var r = await opts.api('POST', '/api/ws-ticket');
      if (!r || !r.ticket) { throw new Error('no ticket'); }
      return r.ticket;
    }

    function url(ticket) {
      return (opts.base || location.origin).replace(/^http/i, 'ws') + '/ws?ticket=' + encodeURIComponent(ticket);
    }

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
      status('offline');
      if (opts.onClose) { opts.onClose(); }
      scheduleRetry();
    }

    async function connect() {
      if (stopped || ws) { return; }
      status('connecting');
      var ticket;
      try {
        ticket = await getTicket();
      } catch (e) {
        if (e && e.status === 401 && opts.onUnauthorized) { opts.onUnauthorized(); return; }
        status('offline');
        scheduleRetry();
        return;
      }
      if (stopped || ws) { return; }
      var sock;
      try {
        sock = new WebSocket(url(ticket));
      } catch (e) {
        scheduleRetry();
        return;
      }
      ws = sock;
      generation += 1;
      sock.onopen = function () {
        if (ws !== sock) { return; }
        attempt = 0;
        status('online');
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
        }, timeoutMs || REQUEST_TIMEOUT_MS);
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
        status('offline');
      },
      /* reconnect drops the current socket (if it is still generation gen) and reconnects. */
      reconnect: function (gen) { if (ws && (gen === undefined || gen === generation)) { drop(ws); } },
      send: send,
      request: request,
      nextRef: nextRef,
      isOpen: function () { return !!ws && ws.readyState === 1; },
      isStarted: function () { return !stopped; },
      generation: function () { return generation; }
    };
  }

  // ---------------------------------------------------------------- message log

  /* newLog returns an empty message log of one chat: messages by seq, the highest seq held and
     the highest seq reported as read. */
  function newLog() {
    return { messages: new Map(), maxSeq: 0, lastRead: 0 };
  }

  function resetLog(log) {
    log.messages.clear();
    log.maxSeq = 0;
    log.lastRead = 0;
  }

  /* contiguousSeq is the highest n such that messages 1..n are all held (seqs start at 1). */
  function contiguousSeq(log) {
    var n = 0;
    while (log.messages.has(n + 1)) { n += 1; }
    return n;
  }

  /* storeMessage records m in log by its seq. It returns "added", "replaced" (m takes the place of
     a synthetic copy shown on ack) or "" when m is malformed or already held. */
  function storeMessage(log, m) {
    if (!m || typeof m.seq !== 'number' || m.seq < 1) { return ''; }
    var had = log.messages.get(m.seq);
    if (had && !had.synthetic) { return ''; }
    log.messages.set(m.seq, m);
    if (m.seq > log.maxSeq) { log.maxSeq = m.seq; }
    return had ? 'replaced' : 'added';
  }

  /*
   * joinAndResume joins chatId on sock and then asks for every message after the last contiguous
   * seq in log, page by page (the "message" frames fill log through the caller's onFrame). Once the
   * join succeeded it calls joined(generation); when that returns false (the caller moved on) it
   * stops there. It resolves with true when it resumed, and rejects with the socket's error (code
   * set for an "error" reply).
   */
  async function joinAndResume(sock, chatId, log, joined) {
    await sock.request({ type: 'join-chat', chatId: chatId });
    if (joined(sock.generation()) === false) { return false; }
    var since = contiguousSeq(log);
    for (var i = 0; i < 100; i += 1) {
      var r = await sock.request({ type: 'resume', chatId: chatId, since: since }, RESUME_TIMEOUT_MS);
      if (r.complete !== false || log.maxSeq <= since) { break; }
      since = log.maxSeq;
    }
    return true;
  }

  /* ackedMessage is the message shown for pending send p once ack (with its seq) arrived, until
     the server's own "message" frame replaces it. */
  function ackedMessage(p, ack, from) {
    var a = p.attachment;
    return {
      id: ack.messageId, chatId: p.chatId, seq: ack.seq, clientMsgId: p.clientMsgId,
      from: from, body: p.body,
      attachment: a ? { id: a.id, filename: a.filename, contentType: a.contentType, size: a.size } : undefined,
      createdAt: new Date().toISOString(), synthetic: true, private: !!p.private
    };
  }

  // ---------------------------------------------------------------- message view

  /*
   * createMessageView draws messages into o.list, keeping them in seq order. o.skin names the CSS
   * classes: msg, mine, theirs, pending, failed, meta, body, attachment, button (the attachment
   * button), retry (the Retry button) and, optional, note (a private note: data-testid "note",
   * its own seq in data-note-seq, placed by the seq the caller gives it). o.isMine(m) tells whether m is the user's own,
   * o.author(m, mine) gives the name shown above it, o.link(attachmentId) resolves to a
   * short-lived URL of an attachment and o.report(text) shows an error. o.lazyImages loads
   * thumbnails lazily.
   */
  function createMessageView(o) {
    var list = o.list;
    var skin = o.skin;

    function scrollDown() { list.scrollTop = list.scrollHeight; }

    function message(m) {
      var mine = !!o.isMine(m);
      var d = testid(node('div', skin.msg + ' ' + (mine ? skin.mine : skin.theirs)), m.private ? 'note' : 'message');
      d.setAttribute('data-seq', String(m.seq));
      d.setAttribute('data-role', (m.from && m.from.role) || '');
      if (m.private) {
        d.classList.add(skin.note || 'note');
        d.setAttribute('data-note-seq', String(m.noteSeq || m.seq));
      }
      d.appendChild(node('div', skin.meta, (m.private ? 'Note · ' : '') + o.author(m, mine) + ' · ' + timeOf(m.createdAt)));
      d.appendChild(testid(node('div', skin.body, m.body || ''), 'message-body'));
      if (m.attachment) { d.appendChild(attachment(m.attachment)); }
      return d;
    }

    /* pending builds the element of a message still being sent and sets p.el and p.metaEl. */
    function pending(p) {
      var d = testid(node('div', skin.msg + ' ' + skin.mine + ' ' + skin.pending), 'message-pending');
      if (p.private) { d.classList.add(skin.note || 'note'); }
      d.setAttribute('data-client-msg-id', p.clientMsgId);
      p.metaEl = node('div', skin.meta, 'Sending…');
      d.appendChild(p.metaEl);
      d.appendChild(node('div', skin.body, p.body));
      if (p.attachment) { d.appendChild(node('div', skin.attachment, 'Attachment: ' + p.attachment.filename)); }
      p.el = d;
      return d;
    }

    /* showPending appends p's element at the end of the list and scrolls down to it. */
    function showPending(p) {
      list.appendChild(pending(p));
      scrollDown();
    }

    /* attachment shows a button that fetches a short-lived URL and opens it; images get a thumbnail. */
    function attachment(att) {
      var wrap = node('div', skin.attachment);
      var btn = testid(node('button', skin.button, 'Attachment: ' + (att.filename || 'attachment') + ' (' + humanSize(att.size) + ')'), 'attachment');
      btn.type = 'button';
      btn.setAttribute('data-attachment-id', att.id);
      btn.addEventListener('click', function () { openAttachment(att); });
      wrap.appendChild(btn);
      if (/^image\//.test(att.contentType || '')) {
        o.link(att.id).then(function (url) {
          var img = document.createElement('img');
          img.alt = att.filename || 'image';
          if (o.lazyImages) { img.loading = 'lazy'; }
          img.src = url;
          testid(img, 'attachment-thumbnail');
          img.addEventListener('click', function () { openAttachment(att); });
          wrap.appendChild(img);
        }, function () { /* the button still works */ });
      }
      return wrap;
    }

    async function openAttachment(att) {
      var win = window.open('', '_blank');
      try {
        var url = await o.link(att.id);
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
        o.report('Could not open the file: ' + err.message);
      }
    }

    /* place inserts (or, with replace, swaps in) message m in seq order; it keeps the list scrolled
       to the bottom when it was there already or when stick is true. */
    function place(m, replace, stick) {
      stick = nearBottom(list) || !!stick;
      var el = message(m);
      var kids = list.children;
      if (replace) {
        for (var j = 0; j < kids.length; j += 1) {
          if (kids[j].getAttribute('data-seq') === String(m.seq)) {
            list.replaceChild(el, kids[j]);
            return;
          }
        }
      }
      var before = null;
      for (var i = 0; i < kids.length; i += 1) {
        var s = kids[i].getAttribute('data-seq');
        if (s === null || Number(s) > m.seq) { before = kids[i]; break; }
      }
      list.insertBefore(el, before);
      if (stick) { scrollDown(); }
    }

    return {
      message: message,
      pending: pending,
      showPending: showPending,
      place: place,
      scrollDown: scrollDown
    };
  }

  // ---------------------------------------------------------------- outbox

  /*
   * createOutbox keeps the messages being sent, by clientMsgId, until the server acknowledges
   * them. A send goes over o.socket as a "send-message" frame; without an ack in 5 s the socket is
   * presumed dead and reconnected, and after every (re)connect flush() resends with the same
   * clientMsgId, so a retry never duplicates a message.
   *
   * o: socket (a createSocket controller); skin (the failed and retry classes of
   * createMessageView); joined(p), whether p's chat is joined on the current socket generation;
   * acked(p, ack) when an ack with a seq settles p; and, optional, mayGo(p) (false: leave p alone),
   * elsewhere(p) when p cannot go over the socket (return true when it took p, e.g. over HTTP;
   * otherwise p waits for the connection) and canRetry(p) (false: no Retry button). A send added
   * with priv set is a staff note: its frame carries "private": true.
   */
  function createOutbox(o) {
    var sock = o.socket;
    var skin = o.skin;
    var retrySelector = '.' + skin.retry.split(' ').join('.');
    var pending = new Map();

    /* add records a new send (sending state, no element yet) and returns it; priv makes it a note. */
    function add(chatId, body, attachment, clientMsgId, priv) {
      var p = {
        clientMsgId: clientMsgId || uuid(),
        chatId: chatId,
        body: body,
        attachment: attachment || null,
        private: !!priv,
        ref: null,
        timer: null,
        gen: 0,
        state: 'sending',
        error: '',
        el: null,
        metaEl: null
      };
      pending.set(p.clientMsgId, p);
      return p;
    }

    /* mark shows p's state on its element, with a Retry button when it failed. */
    function mark(p) {
      if (!p.metaEl) { return; }
      var text = { sending: 'Sending…', waiting: 'Waiting for connection…', failed: 'Not sent' }[p.state] || '';
      p.metaEl.textContent = p.state === 'failed' && p.error ? 'Not sent: ' + p.error : text;
      if (!p.el) { return; }
      p.el.classList.toggle(skin.failed, p.state === 'failed');
      var retry = p.el.querySelector(retrySelector);
      if (p.state === 'failed' && !retry && (!o.canRetry || o.canRetry(p))) {
        retry = node('button', skin.retry, 'Retry');
        retry.type = 'button';
        retry.addEventListener('click', function () {
          retry.remove();
          p.state = 'sending';
          p.error = '';
          mark(p);
          transmit(p);
        });
        p.el.appendChild(retry);
      }
    }

    function fail(p, why) {
      clearTimeout(p.timer);
      p.state = 'failed';
      p.error = why;
      mark(p);
    }

    /* transmit sends p over the socket when its chat is joined there; otherwise elsewhere(p) may
       take it, or it waits for the next (re)connect. */
    function transmit(p) {
      if (p.state === 'failed' || (o.mayGo && !o.mayGo(p))) { return; }
      clearTimeout(p.timer);
      if (sock.isOpen() && o.joined(p)) {
        p.ref = sock.nextRef();
        var frame = { type: 'send-message', chatId: p.chatId, body: p.body, clientMsgId: p.clientMsgId, ref: p.ref };
        if (p.attachment) { frame.attachmentId = p.attachment.id; }
        if (p.private) { frame.private = true; }
        if (sock.send(frame)) {
          p.state = 'sending';
          p.gen = sock.generation();
          mark(p);
          p.timer = setTimeout(function () {
            if (pending.has(p.clientMsgId)) {
              p.state = 'waiting';
              mark(p);
              sock.reconnect(p.gen); // no ack in time: assume the socket is dead; resend after reconnect
            }
          }, ACK_TIMEOUT_MS);
          return;
        }
      }
      if (o.elsewhere && o.elsewhere(p)) { return; }
      p.state = 'waiting';
      mark(p);
    }

    /* settle finishes p: it forgets it, removes its element and, given an ack, hands it to acked. */
    function settle(p, ack) {
      if (!pending.has(p.clientMsgId)) { return; }
      pending.delete(p.clientMsgId);
      clearTimeout(p.timer);
      if (p.el && p.el.parentNode) { p.el.parentNode.removeChild(p.el); }
      if (ack && typeof ack.seq === 'number') { o.acked(p, ack); }
    }

    return {
      add: add,
      mark: mark,
      fail: fail,
      transmit: transmit,
      settle: settle,
      /* flush (re)transmits every send that has not failed. */
      flush: function () {
        pending.forEach(function (p) {
          if (p.state !== 'failed') { transmit(p); }
        });
      },
      /* seen settles the send that message m (now held) came from, if any. */
      seen: function (m) {
        if (m.clientMsgId && pending.has(m.clientMsgId)) { settle(pending.get(m.clientMsgId), null); }
      },
      /* offline marks every send in flight as waiting for the connection. */
      offline: function () {
        pending.forEach(function (p) {
          if (p.state === 'sending') { clearTimeout(p.timer); p.state = 'waiting'; mark(p); }
        });
      },
      /* handle settles a send on its "ack" frame and fails it on an "error" frame with its ref. */
      handle: function (f) {
        if (f.type === 'ack') {
          var p = f.clientMsgId ? pending.get(f.clientMsgId) : null;
          if (!p && f.ref) { pending.forEach(function (q) { if (q.ref === f.ref) { p = q; } }); }
          if (p) { settle(p, f); }
        } else if (f.type === 'error' && f.ref) {
          pending.forEach(function (q) { if (q.ref === f.ref) { fail(q, f.message || f.code || 'error'); } });
        }
      },
      /* remove forgets p without settling it. */
      remove: function (p) { clearTimeout(p.timer); pending.delete(p.clientMsgId); },
      /* clear forgets every send. */
      clear: function () {
        pending.forEach(function (p) { clearTimeout(p.timer); });
        pending.clear();
      },
      forEach: function (fn) { pending.forEach(fn); }
    };
  }

  // ---------------------------------------------------------------- frames

  /*
   * routeFrame hands a frame from the socket to h: "message" frames to h.message(f), "ack" and
   * "error" frames to h.outbox (see createOutbox), "typing" frames for which h.typingFrom(f) holds
   * (the other side of the chat shown) to h.typing (see typingIndicator), chat events
   * (chat.queued, chat.accepted, chat.transferred, chat.resolved, chat.abandoned, chat.reopened,
   * chat.updated, with the chat) to h.chat(f), and every other frame ("note", "queue.position",
   * "chat.left", "presence", "read", ...) to h.other(f) when given.
   */
  function routeFrame(f, h) {
    switch (f.type) {
      case 'message':
        h.message(f);
        break;
      case 'ack':
      case 'error':
        h.outbox.handle(f);
        break;
      case 'typing':
        if (f.from && h.typingFrom(f)) {
          if (f.state === 'on') { h.typing.show(f.from.name, !!f.private); } else { h.typing.hide(); }
        }
        break;
      case 'chat.queued':
      case 'chat.accepted':
      case 'chat.transferred':
      case 'chat.resolved':
      case 'chat.abandoned':
      case 'chat.reopened':
      case 'chat.updated':
        if (f.chat) { h.chat(f); }
        break;
      default:
        if (h.other) { h.other(f); }
        break;
    }
  }

  // ---------------------------------------------------------------- typing and read

  /* typingSender sends "typing" on/off frames: input(chatId, text, priv) on every keystroke (off
     once the text is empty or after 3 s without input; priv: writing a staff note, shown to staff
     only), stop() when the user leaves the field. */
  function typingSender(sock) {
    var chatId = null;
    var on = false;
    var priv = false;
    var timer = null;

    function frame(id, state, p) {
      var f = { type: 'typing', chatId: id, state: state };
      if (p) { f.private = true; }
      return f;
    }

    function stop() {
      clearTimeout(timer);
      if (on && chatId) { sock.send(frame(chatId, 'off', priv)); }
      on = false;
      chatId = null;
      priv = false;
    }

    function input(id, text, p) {
      p = !!p;
      if (!text.trim()) { stop(); return; }
      if (!on || chatId !== id || priv !== p) {
        stop();
        chatId = id;
        priv = p;
        on = sock.send(frame(id, 'on', p));
      }
      clearTimeout(timer);
      timer = setTimeout(stop, TYPING_IDLE_MS);
    }

    return { input: input, stop: stop };
  }

  /* typingIndicator shows "<name> is typing…" (or "is writing a note…") in el for 8 s at most;
     someone stands in for a missing name. */
  function typingIndicator(el, someone) {
    var timer = null;
    function hide() {
      clearTimeout(timer);
      el.hidden = true;
    }
    function show(name, note) {
      el.textContent = (name || someone) + (note ? ' is writing a note…' : ' is typing…');
      el.hidden = false;
      clearTimeout(timer);
      timer = setTimeout(hide, TYPING_SHOW_MS);
    }
    return { show: show, hide: hide };
  }

  /* readReporter returns schedule(): shortly after a call it sends a "read" frame up to the
     highest seq held, when current() names a chat ({chatId, log}), the page is visible and the
     socket is open. It is throttled: at most one frame per 500 ms, however many calls. */
  function readReporter(sock, current) {
    var timer = null;
    return function schedule() {
      if (timer) { return; }
      timer = setTimeout(function () {
        timer = null;
        var c = current();
        if (!c || document.visibilityState !== 'visible' || !sock.isOpen()) { return; }
        if (c.log.maxSeq > c.log.lastRead) {
          c.log.lastRead = c.log.maxSeq;
          sock.send({ type: 'read', chatId: c.chatId, seq: c.log.maxSeq });
        }
      }, READ_DELAY_MS);
    };
  }

  // ---------------------------------------------------------------- attachments

  /* uploadFile registers file for chatId (POST /api/attachments), uploads it to the file store
     and resolves with the attachment to send: {id, filename, contentType, size}. */
  async function uploadFile(api, chatId, file) {
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
    return { id: meta.attachmentId, filename: file.name, contentType: contentType, size: file.size };
  }

  return {
    byId: byId,
    uuid: uuid,
    node: node,
    testid: testid,
    timeOf: timeOf,
    humanSize: humanSize,
    notifier: notifier,
    submitOnEnter: submitOnEnter,
    eachInTurn: eachInTurn,
    createSocket: createSocket,
    newLog: newLog,
    resetLog: resetLog,
    contiguousSeq: contiguousSeq,
    storeMessage: storeMessage,
    joinAndResume: joinAndResume,
    ackedMessage: ackedMessage,
    createMessageView: createMessageView,
    createOutbox: createOutbox,
    routeFrame: routeFrame,
    typingSender: typingSender,
    typingIndicator: typingIndicator,
    readReporter: readReporter,
    uploadFile: uploadFile
  };
})();
