/*
 * Atende tenant-admin page (/admin):
 *   - agents: list (GET /api/agents), add (POST /api/agents; a generated password is shown once),
 *     remove (DELETE /api/agents/{id}, click twice to confirm), departments and capacity
 *     (PATCH /api/agents/{id} {departments, capacity});
 *   - departments: list, add, remove (GET|POST /api/departments, DELETE /api/departments/{id});
 *   - chat settings (GET|PUT /api/settings): routing, capacity, timers, business hours, SLA,
 *     webhook, branding;
 *   - canned responses (GET|POST /api/canned, DELETE /api/canned/{id});
 *   - offline messages (GET /api/offline-messages);
 *   - reports (GET /api/reports/summary?from=&to=) and webhook deliveries
 *     (GET /api/webhooks/deliveries, rendered generically).
 * Same origin as the cell API; the session comes from window.AtendeAuth (auth.js) and the DOM
 * helpers from window.AtendeCore (chat-core.js).
 * Every server-provided value reaches the DOM through textContent.
 */
(function () {
  'use strict';

  var Auth = window.AtendeAuth;
  var Core = window.AtendeCore;
  var node = Core.node;
  var CONFIRM_MS = 4000;
  var NOTICE_MS = 6000;
  var DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

  var $ = Core.byId;
  var ui = {
    consoleLink: $('console-link'),
    notice: $('notice'),
    agents: $('agents'),
    agentsEmpty: $('agents-empty'),
    form: $('agent-form'),
    email: $('agent-email'),
    name: $('agent-name'),
    password: $('agent-password'),
    admin: $('agent-admin'),
    error: $('agent-error'),
    add: $('agent-add'),
    created: $('agent-created'),
    createdEmail: $('agent-created-email'),
    createdPasswordBox: $('agent-created-password'),
    shown: $('agent-password-shown'),
    copy: $('agent-password-copy'),
    snippet: $('embed-snippet'),
    departments: $('departments'),
    departmentsEmpty: $('departments-empty'),
    departmentForm: $('department-form'),
    departmentName: $('department-name'),
    departmentRouting: $('department-routing'),
    settingsForm: $('settings-form'),
    settingsError: $('settings-error'),
    settingsSaved: $('settings-saved'),
    settingsSave: $('settings-save'),
    timeZones: $('time-zones'),
    webhookEvents: $('set-webhook-events'),
    canned: $('canned'),
    cannedEmpty: $('canned-empty'),
    cannedForm: $('canned-form'),
    cannedShortcut: $('canned-shortcut'),
    cannedTitle: $('canned-title'),
    cannedBody: $('canned-body'),
    cannedError: $('canned-error'),
    offline: $('offline-messages'),
    offlineEmpty: $('offline-empty'),
    offlineReload: $('offline-reload'),
    reportForm: $('report-form'),
    reportFrom: $('report-from'),
    reportTo: $('report-to'),
    report: $('report'),
    deliveries: $('deliveries'),
    deliveriesEmpty: $('deliveries-empty'),
    deliveriesReload: $('deliveries-reload')
  };

  var me = null;
  var agents = [];
  var departments = [];
  var settings = null; // the last settings read or saved
  var cannedList = [];

  var notice = Core.notifier(ui.notice, NOTICE_MS);

  // ---------------------------------------------------------------- small helpers

  function showError(el, text) {
    el.textContent = text || '';
    el.hidden = !text;
  }

  function formError(text) { showError(ui.error, text); }

  function byName(a, b) {
    return String(a.name || a.email || '').localeCompare(String(b.name || b.email || ''));
  }

  function departmentName(id) {
    if (!id) { return 'No department'; }
    for (var i = 0; i < departments.length; i += 1) {
      if (departments[i].id === id) { return departments[i].name; }
    }
    return 'Removed department (' + id + ')';
  }

  function agentName(id) {
    for (var i = 0; i < agents.length; i += 1) {
      if (agents[i].id === id) { return agents[i].name || agents[i].email; }
    }
    return 'Agent ' + id;
  }

  function when(iso) {
    var d = new Date(iso);
    return isNaN(d.getTime()) ? String(iso || '') : d.toLocaleString();
  }

  /* confirmButton makes btn run action on a second click within CONFIRM_MS. */
  function confirmButton(btn, label, action) {
    var armed = null;
    btn.addEventListener('click', function () {
      if (!armed) {
        btn.textContent = 'Click again to confirm';
        armed = setTimeout(function () { armed = null; btn.textContent = label; }, CONFIRM_MS);
        return;
      }
      clearTimeout(armed);
      armed = null;
      action();
    });
  }

  function smallButton(text, cls, testid) {
    var b = node('button', 'button button-small ' + (cls || ''), text);
    b.type = 'button';
    if (testid) { b.setAttribute('data-testid', testid); }
    return b;
  }

  // ---------------------------------------------------------------- agents

  function render() {
    var sorted = agents.slice().sort(byName);
    ui.agents.replaceChildren.apply(ui.agents, sorted.map(agentItem));
    ui.agentsEmpty.hidden = sorted.length > 0;
  }

  function agentItem(a) {
    var li = node('li');
    li.setAttribute('data-testid', 'agent');
    li.setAttribute('data-agent-id', a.id);
    li.setAttribute('data-email', a.email || '');
    var row = node('div', 'agent-row');
    var info = node('div');
    info.appendChild(node('strong', '', a.name || a.email));
    info.appendChild(document.createTextNode(' '));
    info.appendChild(node('span', 'muted', a.email));
    var meta = (a.roles || []).join(', ');
    if (a.presence) { meta += ' · ' + a.presence; }
    if (a.disabled) { meta += ' · disabled'; }
    info.appendChild(node('div', 'agent-roles', meta));
    row.appendChild(info);
    var btn = smallButton('Remove', 'button-danger', 'agent-remove');
    if (me && a.id === me.id) {
      btn.disabled = true;
      btn.title = 'You cannot remove yourself';
    }
    confirmButton(btn, 'Remove', function () { remove(a, btn); });
    row.appendChild(btn);
    li.appendChild(row);
    li.appendChild(routingEditor(a));
    return li;
  }

  /* routingEditor is the agent's departments (checkboxes) and capacity, saved together. */
  function routingEditor(a) {
    var box = node('div', 'agent-routing');
    var own = a.departments || [];
    var checks = departments.map(function (d) {
      var label = node('label', 'check');
      var cb = document.createElement('input');
      cb.type = 'checkbox';
      cb.value = d.id;
      cb.checked = own.indexOf(d.id) >= 0;
      cb.setAttribute('data-testid', 'agent-department');
      label.appendChild(cb);
      label.appendChild(document.createTextNode(' ' + d.name));
      box.appendChild(label);
      return cb;
    });
    var capLabel = node('label', 'inline', 'Capacity ');
    var cap = document.createElement('input');
    cap.type = 'number';
    cap.min = '0';
    cap.max = '50';
    cap.step = '1';
    cap.value = String(a.capacity || 0);
    cap.title = '0: the tenant\'s default';
    cap.setAttribute('data-testid', 'agent-capacity');
    capLabel.appendChild(cap);
    box.appendChild(capLabel);
    var save = smallButton('Save', '', 'agent-routing-save');
    save.addEventListener('click', async function () {
      var capacity = Number(cap.value);
      if (!Number.isInteger(capacity) || capacity < 0 || capacity > 50) {
        notice('Capacity is a whole number from 0 (the tenant\'s default) to 50.');
        cap.focus();
        return;
      }
      var body = {
        departments: checks.filter(function (c) { return c.checked; }).map(function (c) { return c.value; }),
        capacity: capacity
      };
      save.disabled = true;
      try {
        var u = await Auth.api('PATCH', '/api/agents/' + encodeURIComponent(a.id), body);
        if (u && u.id) {
          a.departments = u.departments || body.departments;
          a.capacity = u.capacity || 0;
        }
        notice('Saved ' + (a.name || a.email) + '.');
      } catch (err) {
        notice('Could not save ' + (a.email || 'the agent') + ': ' + err.message);
      } finally {
        save.disabled = false;
      }
    });
    box.appendChild(save);
    return box;
  }

  async function load() {
    try {
      var r = await Auth.api('GET', '/api/agents');
      agents = (r && r.agents) || [];
      render();
    } catch (err) {
      if (err.status !== 401) { notice('Could not load agents: ' + err.message); }
    }
  }

  async function remove(a, btn) {
    btn.disabled = true;
    btn.textContent = 'Removing…';
    try {
      await Auth.api('DELETE', '/api/agents/' + encodeURIComponent(a.id));
      agents = agents.filter(function (x) { return x.id !== a.id; });
      render();
      notice((a.name || a.email) + ' was removed.');
    } catch (err) {
      btn.disabled = false;
      btn.textContent = 'Remove';
      notice('Could not remove ' + (a.email || 'the agent') + ': ' + err.message);
    }
  }

  ui.form.addEventListener('submit', async function (ev) {
    ev.preventDefault();
    formError('');
    var email = ui.email.value.trim();
    var name = ui.name.value.trim();
    if (!email || email.indexOf('@') < 1) { formError('Enter a valid email address.'); ui.email.focus(); return; }
    if (!name) { formError('Enter the agent\'s name.'); ui.name.focus(); return; }
    var body = { email: email, name: name, roles: ui.admin.checked ? ['agent', 'tenant-admin'] : ['agent'] };
    if (ui.password.value) { body.password = ui.password.value; }
    ui.add.disabled = true;
    try {
      var r = await Auth.api('POST', '/api/agents', body);
      var agent = (r && r.agent) || r;
      if (agent && agent.id) {
        agents = agents.filter(function (x) { return x.id !== agent.id; }).concat([agent]);
        render();
      } else {
        load();
      }
      ui.createdEmail.textContent = (agent && agent.email) || email;
      ui.shown.textContent = (r && r.password) || '';
      ui.createdPasswordBox.hidden = !(r && r.password);
      ui.created.hidden = false;
      ui.form.reset();
    } catch (err) {
      formError(err.status === 409 ? 'An agent with this email already exists.' : err.message);
    } finally {
      ui.add.disabled = false;
    }
  });

  ui.copy.addEventListener('click', function () {
    var text = ui.shown.textContent;
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(function () { ui.copy.textContent = 'Copied'; }, function () { /* select it instead */ });
    }
    var range = document.createRange();
    range.selectNodeContents(ui.shown);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  });

  // ---------------------------------------------------------------- departments

  function renderDepartments() {
    var sorted = departments.slice().sort(byName);
    ui.departments.replaceChildren.apply(ui.departments, sorted.map(function (d) {
      var li = node('li', 'row-item');
      li.setAttribute('data-testid', 'department');
      li.setAttribute('data-department-id', d.id);
      var info = node('div');
      info.appendChild(node('strong', '', d.name));
      info.appendChild(node('span', 'muted', ' · routing: ' + (d.routing || 'the tenant\'s')));
      li.appendChild(info);
      var btn = smallButton('Remove', 'button-danger', 'department-remove');
      confirmButton(btn, 'Remove', async function () {
        btn.disabled = true;
        try {
          await Auth.api('DELETE', '/api/departments/' + encodeURIComponent(d.id));
          departments = departments.filter(function (x) { return x.id !== d.id; });
          renderDepartments();
          render();
          notice('Department ' + d.name + ' was removed.');
        } catch (err) {
          btn.disabled = false;
          btn.textContent = 'Remove';
          notice('Could not remove ' + d.name + ': ' + err.message);
        }
      });
      li.appendChild(btn);
      return li;
    }));
    ui.departmentsEmpty.hidden = sorted.length > 0;
  }

  async function loadDepartments() {
    try {
      var r = await Auth.api('GET', '/api/departments');
      departments = (r && r.departments) || [];
      renderDepartments();
      render();
    } catch (err) {
      if (err.status !== 401) { notice('Could not load departments: ' + err.message); }
    }
  }

  ui.departmentForm.addEventListener('submit', async function (ev) {
    ev.preventDefault();
    var name = ui.departmentName.value.trim();
    if (!name) { ui.departmentName.focus(); return; }
    var body = { name: name };
    if (ui.departmentRouting.value) { body.routing = ui.departmentRouting.value; }
    try {
      var d = await Auth.api('POST', '/api/departments', body);
      if (d && d.id) { departments.push(d); }
      ui.departmentForm.reset();
      renderDepartments();
      render();
    } catch (err) {
      notice(err.status === 409 ? 'A department with this name exists already.' : 'Could not add the department: ' + err.message);
    }
  });

  // ---------------------------------------------------------------- settings

  function field(id) { return $(id); }

  function numberOf(id, name) {
    var v = field(id).value.trim();
    var n = v === '' ? 0 : Number(v);
    if (!Number.isInteger(n)) { throw new Error(name + ' must be a whole number'); }
    return n;
  }

  function fillSettings(st) {
    settings = st || {};
    var bh = settings.businessHours || {};
    var sla = settings.sla || {};
    var wh = settings.webhook || {};
    var br = settings.branding || {};
    field('set-routing').value = settings.routing || 'manual';
    field('set-capacity').value = String(settings.defaultCapacity || 5);
    field('set-require-online').checked = !!settings.requireOnlineAgent;
    field('set-reopen').value = String(settings.reopenWindowMinutes || 0);
    field('set-autoresolve').value = String(settings.autoResolveMinutes || 0);
    field('set-abandon').value = String(settings.abandonMinutes || 0);
    field('set-bh-enabled').checked = !!bh.enabled;
    field('set-bh-tz').value = bh.timeZone || 'UTC';
    DAYS.forEach(function (d) { field('set-bh-' + d).value = ((bh.days || {})[d] || []).join(', '); });
    field('set-sla-frt').value = String(sla.firstResponseSeconds || 0);
    field('set-sla-resolution').value = String(sla.resolutionSeconds || 0);
    field('set-webhook-url').value = wh.url || '';
    field('set-webhook-secret').value = wh.secret || '';
    Array.prototype.forEach.call(ui.webhookEvents.querySelectorAll('input'), function (cb) {
      cb.checked = (wh.events || []).indexOf(cb.value) >= 0;
    });
    field('set-brand-title').value = br.title || '';
    field('set-brand-color').value = /^#[0-9a-fA-F]{6}$/.test(br.primaryColor || '') ? br.primaryColor.toLowerCase() : '#2563eb';
    field('set-brand-welcome').value = br.welcomeText || '';
  }

  /* readSettings is the form as a PUT /api/settings body, on top of the settings last read. */
  function readSettings() {
    var days = {};
    DAYS.forEach(function (d) {
      var spans = field('set-bh-' + d).value.split(/[,;\s]+/).map(function (x) { return x.trim(); }).filter(Boolean);
      if (spans.length) { days[d] = spans; }
    });
    var events = Array.prototype.filter.call(ui.webhookEvents.querySelectorAll('input'), function (cb) { return cb.checked; })
      .map(function (cb) { return cb.value; });
    return Object.assign({}, settings || {}, {
      routing: field('set-routing').value,
      defaultCapacity: numberOf('set-capacity', 'Default capacity'),
      requireOnlineAgent: field('set-require-online').checked,
      reopenWindowMinutes: numberOf('set-reopen', 'The reopen window'),
      autoResolveMinutes: numberOf('set-autoresolve', 'Auto-resolve'),
      abandonMinutes: numberOf('set-abandon', 'Abandon'),
      businessHours: { enabled: field('set-bh-enabled').checked, timeZone: field('set-bh-tz').value.trim() || 'UTC', days: days },
      sla: { firstResponseSeconds: numberOf('set-sla-frt', 'The first-response target'), resolutionSeconds: numberOf('set-sla-resolution', 'The resolution target') },
      webhook: { url: field('set-webhook-url').value.trim(), secret: field('set-webhook-secret').value, events: events },
      branding: { title: field('set-brand-title').value.trim(), primaryColor: field('set-brand-color').value, welcomeText: field('set-brand-welcome').value.trim() }
    });
  }

  async function loadSettings() {
    try {
      fillSettings(await Auth.api('GET', '/api/settings'));
    } catch (err) {
      if (err.status !== 401) { notice('Could not load the settings: ' + err.message); }
    }
  }

  ui.settingsForm.addEventListener('submit', async function (ev) {
    ev.preventDefault();
    showError(ui.settingsError, '');
    ui.settingsSaved.textContent = '';
    var body;
    try {
      body = readSettings();
    } catch (err) {
      showError(ui.settingsError, err.message + '.');
      return;
    }
    delete body.updatedAt;
    ui.settingsSave.disabled = true;
    try {
      fillSettings(await Auth.api('PUT', '/api/settings', body));
      ui.settingsSaved.textContent = 'Saved at ' + new Date().toLocaleTimeString() + '.';
    } catch (err) {
      showError(ui.settingsError, 'Not saved: ' + err.message);
    } finally {
      ui.settingsSave.disabled = false;
    }
  });

  if (typeof Intl === 'object' && typeof Intl.supportedValuesOf === 'function') {
    try {
      Intl.supportedValuesOf('timeZone').forEach(function (tz) {
        var o = document.createElement('option');
        o.value = tz;
        ui.timeZones.appendChild(o);
      });
    } catch (e) { /* free text only */ }
  }

  // ---------------------------------------------------------------- canned responses

  function renderCanned() {
    var sorted = cannedList.slice().sort(function (a, b) { return String(a.shortcut).localeCompare(String(b.shortcut)); });
    ui.canned.replaceChildren.apply(ui.canned, sorted.map(function (c) {
      var li = node('li', 'row-item');
      li.setAttribute('data-testid', 'canned-item');
      var info = node('div', 'grow');
      info.appendChild(node('strong', '', '/' + c.shortcut));
      if (c.title) { info.appendChild(node('span', 'muted', ' ' + c.title)); }
      info.appendChild(node('div', 'item-preview', c.body));
      li.appendChild(info);
      var btn = smallButton('Remove', 'button-danger', 'canned-remove');
      confirmButton(btn, 'Remove', async function () {
        btn.disabled = true;
        try {
          await Auth.api('DELETE', '/api/canned/' + encodeURIComponent(c.id));
          cannedList = cannedList.filter(function (x) { return x.id !== c.id; });
          renderCanned();
        } catch (err) {
          btn.disabled = false;
          btn.textContent = 'Remove';
          notice('Could not remove /' + c.shortcut + ': ' + err.message);
        }
      });
      li.appendChild(btn);
      return li;
    }));
    ui.cannedEmpty.hidden = sorted.length > 0;
  }

  async function loadCanned() {
    try {
      var r = await Auth.api('GET', '/api/canned');
      cannedList = (r && r.cannedResponses) || [];
      renderCanned();
    } catch (err) {
      if (err.status !== 401) { notice('Could not load canned responses: ' + err.message); }
    }
  }

  ui.cannedForm.addEventListener('submit', async function (ev) {
    ev.preventDefault();
    showError(ui.cannedError, '');
    var shortcut = ui.cannedShortcut.value.trim().replace(/^\//, '').toLowerCase();
    var body = ui.cannedBody.value.trim();
    if (!/^[a-z0-9][a-z0-9_-]{0,31}$/.test(shortcut)) {
      showError(ui.cannedError, 'The shortcut is 1–32 of a–z, 0–9, _ and -, starting with a letter or digit.');
      ui.cannedShortcut.focus();
      return;
    }
    if (!body) { showError(ui.cannedError, 'Write the text to insert.'); ui.cannedBody.focus(); return; }
    try {
      var c = await Auth.api('POST', '/api/canned', { shortcut: shortcut, title: ui.cannedTitle.value.trim(), body: body });
      if (c && c.id) { cannedList.push(c); } else { loadCanned(); }
      ui.cannedForm.reset();
      renderCanned();
    } catch (err) {
      showError(ui.cannedError, err.status === 409 ? 'This shortcut exists already.' : err.message);
    }
  });

  // ---------------------------------------------------------------- offline messages

  async function loadOffline() {
    try {
      var r = await Auth.api('GET', '/api/offline-messages');
      var list = (r && r.messages) || [];
      ui.offline.replaceChildren.apply(ui.offline, list.map(function (m) {
        var li = node('li', 'offline-item');
        li.setAttribute('data-testid', 'offline-message');
        var head = node('div', 'item-title');
        var who = node('span');
        who.appendChild(node('strong', '', m.name || 'Visitor'));
        who.appendChild(document.createTextNode(' '));
        var mail = node('a', '', m.email || '');
        if (/^[^@\s]+@[^@\s]+$/.test(m.email || '')) { mail.href = 'mailto:' + encodeURIComponent(m.email).replace(/%40/g, '@'); }
        who.appendChild(mail);
        head.appendChild(who);
        head.appendChild(node('span', 'item-meta', when(m.createdAt)));
        li.appendChild(head);
        li.appendChild(node('div', 'msg-body', m.message || ''));
        return li;
      }));
      ui.offlineEmpty.hidden = list.length > 0;
    } catch (err) {
      if (err.status !== 401) { notice('Could not load offline messages: ' + err.message); }
    }
  }

  ui.offlineReload.addEventListener('click', loadOffline);

  // ---------------------------------------------------------------- reports

  function dateValue(d) {
    var p = function (n) { return (n < 10 ? '0' : '') + n; };
    return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate());
  }

  /* rfc3339 is local midnight of the date input's day as RFC 3339 UTC (no fraction). */
  function rfc3339(value, plusDays) {
    var parts = String(value).split('-').map(Number);
    if (parts.length !== 3 || parts.some(isNaN)) { return ''; }
    var d = new Date(parts[0], parts[1] - 1, parts[2] + (plusDays || 0));
    return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
  }

  function duration(s) {
    s = Math.round(Number(s) || 0);
    if (s < 60) { return s + 's'; }
    if (s < 3600) { return Math.floor(s / 60) + 'm ' + (s % 60) + 's'; }
    return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
  }

  function stat(st, fmt) {
    if (!st || !st.count) { return '—'; }
    return fmt(st.avg) + ' · ' + fmt(st.median) + ' · ' + fmt(st.p90);
  }

  function sla(c) {
    if (!c || (!c.hit && !c.miss)) { return '—'; }
    return c.hit + ' hit / ' + c.miss + ' miss';
  }

  var REPORT_COLUMNS = [
    ['Chats', function (f) { return String(f.chats || 0); }],
    ['Resolved', function (f) { return String(f.resolved || 0); }],
    ['Abandoned', function (f) { return (f.abandoned || 0) + ' (' + Math.round((f.abandonmentRate || 0) * 1000) / 10 + '%)'; }],
    ['Open', function (f) { return String(f.open || 0); }],
    ['FRT', function (f) { return stat(f.firstResponse, duration); }],
    ['TMA', function (f) { return stat(f.handling, duration); }],
    ['Wait', function (f) { return stat(f.wait, duration); }],
    ['CSAT', function (f) { return f.csat && f.csat.count ? (Math.round(f.csat.avg * 100) / 100) + ' / 5 (' + f.csat.count + ')' : '—'; }],
    ['SLA first response', function (f) { return sla(f.slaFirstResponse); }],
    ['SLA resolution', function (f) { return sla(f.slaResolution); }]
  ];

  function reportTable(r) {
    var table = node('table', 'data');
    table.setAttribute('data-testid', 'report-table');
    var thead = node('thead');
    var hr = node('tr');
    hr.appendChild(node('th', '', ''));
    REPORT_COLUMNS.forEach(function (c) { hr.appendChild(node('th', '', c[0])); });
    thead.appendChild(hr);
    table.appendChild(thead);
    var tbody = node('tbody');
    function row(label, f, cls) {
      var tr = node('tr', cls || '');
      tr.appendChild(node('th', '', label));
      REPORT_COLUMNS.forEach(function (c) { tr.appendChild(node('td', '', c[1](f || {}))); });
      tbody.appendChild(tr);
    }
    function group(title, map, nameOf) {
      var keys = Object.keys(map || {});
      if (!keys.length) { return; }
      var tr = node('tr', 'group');
      var th = node('th', '', title);
      th.colSpan = REPORT_COLUMNS.length + 1;
      tr.appendChild(th);
      tbody.appendChild(tr);
      keys.map(function (k) { return { k: k, name: nameOf(k) }; })
        .sort(function (a, b) { return a.name.localeCompare(b.name); })
        .forEach(function (x) { row(x.name, map[x.k]); });
    }
    row('All chats', r.total, 'total');
    group('By department', r.byDepartment, departmentName);
    group('By agent', r.byAgent, agentName);
    table.appendChild(tbody);
    return table;
  }

  async function loadReport() {
    var from = rfc3339(ui.reportFrom.value, 0);
    var to = rfc3339(ui.reportTo.value, 1);
    if (!from || !to) { notice('Choose both dates.'); return; }
    ui.report.replaceChildren(node('p', 'muted', 'Loading…'));
    try {
      var r = await Auth.api('GET', '/api/reports/summary?from=' + encodeURIComponent(from) + '&to=' + encodeURIComponent(to));
      var parts = [reportTable(r || {})];
      var target = r && r.sla ? r.sla : {};
      parts.push(node('p', 'muted', 'SLA targets: first response ' + (target.firstResponseSeconds ? duration(target.firstResponseSeconds) : 'none') +
        ', resolution ' + (target.resolutionSeconds ? duration(target.resolutionSeconds) : 'none') + '.'));
      ui.report.replaceChildren.apply(ui.report, parts);
    } catch (err) {
      ui.report.replaceChildren(node('p', 'error', 'Could not load the report: ' + err.message));
    }
  }

  ui.reportForm.addEventListener('submit', function (ev) {
    ev.preventDefault();
    loadReport();
  });

  // ---------------------------------------------------------------- webhook deliveries

  var DELIVERY_KEYS = ['at', 'type', 'outcome', 'statusCode', 'attempt', 'durationMs', 'url', 'error', 'nextAttemptAt', 'eventId', 'seq'];

  function cellText(v) {
    if (v === null || v === undefined) { return ''; }
    if (typeof v === 'object') { return JSON.stringify(v); }
    if (typeof v === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(v)) { return when(v); }
    return String(v);
  }

  /* deliveriesTable shows any list of objects: the known keys first, then the others seen. */
  function deliveriesTable(list) {
    var keys = [];
    list.slice(0, 50).forEach(function (d) {
      Object.keys(d || {}).forEach(function (k) { if (keys.indexOf(k) < 0) { keys.push(k); } });
    });
    keys.sort(function (a, b) {
      var ia = DELIVERY_KEYS.indexOf(a);
      var ib = DELIVERY_KEYS.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
    });
    var table = node('table', 'data');
    var hr = node('tr');
    keys.forEach(function (k) { hr.appendChild(node('th', '', k)); });
    var thead = node('thead');
    thead.appendChild(hr);
    table.appendChild(thead);
    var tbody = node('tbody');
    list.forEach(function (d) {
      var tr = node('tr');
      tr.setAttribute('data-testid', 'webhook-delivery');
      if (d && d.outcome) { tr.className = 'outcome-' + String(d.outcome).replace(/[^a-z-]/gi, ''); }
      keys.forEach(function (k) { tr.appendChild(node('td', '', cellText(d && typeof d === 'object' ? d[k] : d))); });
      tbody.appendChild(tr);
    });
    table.appendChild(tbody);
    return table;
  }

  async function loadDeliveries() {
    try {
      var r = await Auth.api('GET', '/api/webhooks/deliveries');
      var list = Array.isArray(r) ? r : (r && (r.deliveries || r.items || r.entries)) || [];
      if (!Array.isArray(list)) { list = []; }
      if (list.length) {
        ui.deliveries.replaceChildren(deliveriesTable(list));
      } else {
        ui.deliveries.replaceChildren();
      }
      ui.deliveriesEmpty.hidden = list.length > 0;
    } catch (err) {
      if (err.status !== 401) { notice('Could not load webhook deliveries: ' + err.message); }
    }
  }

  ui.deliveriesReload.addEventListener('click', loadDeliveries);

  // ---------------------------------------------------------------- start

  if (!document.body.getAttribute('data-public-url')) {
    ui.snippet.textContent = '<script src="' + location.origin + '/widget.js" defer></script>';
  }
  (function () {
    var to = new Date();
    var from = new Date(to.getFullYear(), to.getMonth(), to.getDate() - 6);
    ui.reportFrom.value = dateValue(from);
    ui.reportTo.value = dateValue(to);
  })();

  Auth.start({
    allow: function (user) {
      return Auth.isAdmin(user) ? '' : 'This account is not a tenant admin. Agents use the console.';
    },
    onLogin: function (user) {
      me = user;
      ui.consoleLink.hidden = !(user.roles || []).some(function (r) { return r === 'agent'; });
      // Departments first: the agents' editors and the report name them.
      loadDepartments().then(function () {
        load().then(loadReport);
      });
      loadSettings();
      loadCanned();
      loadOffline();
      loadDeliveries();
    },
    onLogout: function () {
      me = null;
      agents = [];
      departments = [];
      cannedList = [];
      settings = null;
      render();
      renderDepartments();
      renderCanned();
      ui.offline.replaceChildren();
      ui.report.replaceChildren();
      ui.deliveries.replaceChildren();
      ui.created.hidden = true;
      ui.shown.textContent = '';
    }
  });
})();
