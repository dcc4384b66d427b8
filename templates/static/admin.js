/*
 * Atende tenant-admin page (/admin): list agents (GET /api/agents), add one (POST /api/agents;
 * a generated password is shown once) and remove one (DELETE /api/agents/{id}, click twice to
 * confirm). Same origin as the cell API; the session comes from window.AtendeAuth (auth.js) and
 * the DOM helpers from window.AtendeCore (chat-core.js).
 * Every server-provided value reaches the DOM through textContent.
 */
(function () {
  'use strict';

  var Auth = window.AtendeAuth;
  var Core = window.AtendeCore;
  var node = Core.node;
  var CONFIRM_MS = 4000;
  var NOTICE_MS = 6000;

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
    snippet: $('embed-snippet')
  };

  var me = null;
  var agents = [];

  var notice = Core.notifier(ui.notice, NOTICE_MS);

  function formError(text) {
    ui.error.textContent = text || '';
    ui.error.hidden = !text;
  }

  function render() {
    var sorted = agents.slice().sort(function (a, b) {
      return String(a.name || a.email).localeCompare(String(b.name || b.email));
    });
    ui.agents.replaceChildren.apply(ui.agents, sorted.map(agentItem));
    ui.agentsEmpty.hidden = sorted.length > 0;
  }

  function agentItem(a) {
    var li = node('li');
    li.setAttribute('data-testid', 'agent');
    li.setAttribute('data-agent-id', a.id);
    li.setAttribute('data-email', a.email || '');
    var info = node('div');
    info.appendChild(node('strong', '', a.name || a.email));
    info.appendChild(document.createTextNode(' '));
    info.appendChild(node('span', 'muted', a.email));
    info.appendChild(node('div', 'agent-roles', (a.roles || []).join(', ')));
    li.appendChild(info);
    var btn = node('button', 'button button-danger button-small', 'Remove');
    btn.type = 'button';
    btn.setAttribute('data-testid', 'agent-remove');
    if (me && a.id === me.id) {
      btn.disabled = true;
      btn.title = 'You cannot remove yourself';
    }
    var armed = null;
    btn.addEventListener('click', function () {
      if (!armed) {
        btn.textContent = 'Click again to remove';
        armed = setTimeout(function () { armed = null; btn.textContent = 'Remove'; }, CONFIRM_MS);
        return;
      }
      clearTimeout(armed);
      armed = null;
      remove(a, btn);
    });
    li.appendChild(btn);
    return li;
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

  if (!document.body.getAttribute('data-public-url')) {
    ui.snippet.textContent = '<script src="' + location.origin + '/widget.js" defer></script>';
  }

  Auth.start({
    allow: function (user) {
      return Auth.isAdmin(user) ? '' : 'This account is not a tenant admin. Agents use the console.';
    },
    onLogin: function (user) {
      me = user;
      ui.consoleLink.hidden = !(user.roles || []).some(function (r) { return r === 'agent'; });
      load();
    },
    onLogout: function () {
      me = null;
      agents = [];
      render();
      ui.created.hidden = true;
      ui.shown.textContent = '';
    }
  });
})();
