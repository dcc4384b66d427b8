/*
 * Atende staff session (agent console and tenant-admin page), same origin as the cell API.
 *
 * Keeps {accessToken, refreshToken, expiresAt, user} in sessionStorage ("atende.session"),
 * refreshes the access token with POST /api/auth/refresh shortly before it expires and once on a
 * 401, and exposes window.AtendeAuth:
 *   AtendeAuth.api(method, path, body?)  -> Promise<json|null>, rejects with AtendeAuth.ApiError
 *   AtendeAuth.user(), AtendeAuth.logout(), AtendeAuth.start({onLogin, onLogout, allow}),
 *   AtendeAuth.isAdmin(user)
 * Refreshes are single-flight: refresh tokens rotate and re-using an old one revokes the session.
 */
(function () {
  'use strict';

  var STORAGE_KEY = 'atende.session';
  var MAX_REFRESH_MARGIN_MS = 30000; // refresh this long before expiry at most
  var MIN_TOKEN_LIFE_MS = 5000; // refresh before a call when less than this is left

  /** ApiError is what every failed call rejects with: HTTP status (0 = network), code, message. */
  function ApiError(status, code, message) {
    this.name = 'ApiError';
    this.status = status;
    this.code = code || 'internal';
    this.message = message || 'Request failed';
  }
  ApiError.prototype = Object.create(Error.prototype);
  ApiError.prototype.constructor = ApiError;

  var session = load();
  var refreshing = null;
  var refreshTimer = null;
  var endHandlers = [];

  function load() {
    try {
      var s = JSON.parse(window.sessionStorage.getItem(STORAGE_KEY) || 'null');
      if (s && s.accessToken && s.refreshToken) {
        return s;
      }
    } catch (e) { /* storage unavailable or corrupt: start logged out */ }
    return null;
  }

  function persist() {
    try {
      if (session) {
        window.sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
      } else {
        window.sessionStorage.removeItem(STORAGE_KEY);
      }
    } catch (e) { /* private mode: the session lives in memory only */ }
  }

  function adopt(resp) {
    if (!resp || !resp.accessToken || !resp.refreshToken) {
      throw new ApiError(500, 'internal', 'The server returned no tokens');
    }
    session = {
      accessToken: resp.accessToken,
      refreshToken: resp.refreshToken,
      expiresAt: Date.now() + (Number(resp.expiresIn) || 0),
      user: resp.user || (session && session.user) || null
    };
    persist();
    schedule();
    return session;
  }

  function schedule() {
    clearTimeout(refreshTimer);
    refreshTimer = null;
    if (!session || !session.expiresAt) {
      return;
    }
    var left = session.expiresAt - Date.now();
    var margin = Math.min(MAX_REFRESH_MARGIN_MS, Math.max(0, left) * 0.2);
    var delay = Math.max(0, left - margin);
    refreshTimer = setTimeout(function () {
      refresh().catch(function () { /* handled in refresh */ });
    }, delay);
  }

  function endSession(reason) {
    clearTimeout(refreshTimer);
    refreshTimer = null;
    var had = !!session;
    session = null;
    persist();
    if (had) {
      endHandlers.forEach(function (fn) {
        try { fn(reason || ''); } catch (e) { /* keep notifying */ }
      });
    }
  }

  async function request(method, path, body, token, extraHeaders) {
    var headers = { 'Accept': 'application/json' };
    if (body !== undefined && body !== null) {
      headers['Content-Type'] = 'application/json';
    }
    if (token) {
      headers['Authorization'] = 'Bearer ' + token;
    }
    if (extraHeaders) {
      Object.keys(extraHeaders).forEach(function (k) { headers[k] = extraHeaders[k]; });
    }
    var res;
    try {
      res = await fetch(path, {
        method: method,
        headers: headers,
        body: body !== undefined && body !== null ? JSON.stringify(body) : undefined,
        credentials: 'same-origin',
        cache: 'no-store'
      });
    } catch (e) {
      throw new ApiError(0, 'network', 'Network error: the server could not be reached');
    }
    var data = null;
    var text = await res.text().catch(function () { return ''; });
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = null; }
    }
    if (!res.ok) {
      var err = data && data.error ? data.error : {};
      throw new ApiError(res.status, err.code || (res.status === 401 ? 'unauthorized' : 'internal'),
        err.message || res.statusText || ('HTTP ' + res.status));
    }
    return data;
  }

  /** refresh exchanges the refresh token for new tokens; concurrent callers share one request. */
  function refresh() {
    if (refreshing) {
      return refreshing;
    }
    if (!session) {
      return Promise.reject(new ApiError(401, 'unauthorized', 'Not logged in'));
    }
    var used = session.refreshToken;
    refreshing = request('POST', '/api/auth/refresh', { refreshToken: used })
      .then(function (resp) {
        if (!session || session.refreshToken !== used) {
          throw new ApiError(401, 'unauthorized', 'Logged out');
        }
        return adopt(resp);
      }, function (err) {
        if (err.status === 400 || err.status === 401 || err.status === 403) {
          endSession('Your session has expired. Please log in again.');
        } else if (session) {
          // Network or server trouble: keep the session and try again soon.
          clearTimeout(refreshTimer);
          refreshTimer = setTimeout(function () {
            refresh().catch(function () {});
          }, 5000);
        }
        throw err;
      })
      .finally(function () { refreshing = null; });
    return refreshing;
  }

  /**
   * api calls the cell API with the access token, refreshing it first when it is about to expire
   * and once more after a 401. It resolves with the parsed JSON body (null for 204).
   */
  async function api(method, path, body, headers) {
    if (!session) {
      throw new ApiError(401, 'unauthorized', 'Not logged in');
    }
    if (session.expiresAt && session.expiresAt - Date.now() < MIN_TOKEN_LIFE_MS) {
      try { await refresh(); } catch (e) { if (!session) { throw e; } }
    }
    try {
      return await request(method, path, body, session.accessToken, headers);
    } catch (err) {
      if (err.status !== 401 || !session) {
        throw err;
      }
      await refresh();
      return request(method, path, body, session.accessToken, headers);
    }
  }

  async function login(email, password) {
    var resp = await request('POST', '/api/auth/login', { email: email, password: password });
    adopt(resp);
    return session.user;
  }

  async function logout() {
    var s = session;
    if (s) {
      try {
        await request('POST', '/api/auth/logout', { refreshToken: s.refreshToken }, s.accessToken);
      } catch (e) { /* logging out locally is what matters */ }
    }
    endSession('');
  }

  function byId(id) { return document.getElementById(id); }

  /**
   * start wires the shared login form (#login-form, #login-email, #login-password, #login-error),
   * the #login-view / #app switch, #agent-status (the user's email) and #logout, then calls
   * onLogin(user) once logged in (immediately if a stored session is still valid) and
   * onLogout(reason) when the session ends. allow(user) may return an error text to refuse a
   * user (e.g. a non-admin on the admin page).
   */
  function start(opts) {
    var form = byId('login-form');
    var email = byId('login-email');
    var password = byId('login-password');
    var errorEl = byId('login-error');
    var submit = byId('login-submit');
    var loginView = byId('login-view');
    var app = byId('app');
    var who = byId('agent-status');
    var logoutBtn = byId('logout');
    var active = false;

    function showError(text) {
      errorEl.textContent = text || '';
      errorEl.hidden = !text;
    }

    function showLogin(reason) {
      active = false;
      app.hidden = true;
      loginView.hidden = false;
      logoutBtn.hidden = true;
      who.textContent = '';
      submit.disabled = false;
      showError(reason);
      password.value = '';
      (email.value ? password : email).focus();
    }

    function enter(user) {
      var refusal = opts.allow ? opts.allow(user) : '';
      if (refusal) {
        logout().finally(function () { showLogin(refusal); });
        return;
      }
      active = true;
      loginView.hidden = true;
      app.hidden = false;
      logoutBtn.hidden = false;
      who.textContent = user.email || '';
      who.title = user.name ? user.name + ' <' + user.email + '>' : (user.email || '');
      showError('');
      opts.onLogin(user);
    }

    onSessionEnd(function (reason) {
      if (active) {
        opts.onLogout(reason);
      }
      showLogin(reason);
    });

    form.addEventListener('submit', async function (ev) {
      ev.preventDefault();
      if (!email.value.trim() || !password.value) {
        showError('Enter your email and password.');
        return;
      }
      submit.disabled = true;
      showError('');
      try {
        var user = await login(email.value.trim(), password.value);
        password.value = '';
        enter(user);
      } catch (err) {
        showError(err.status === 401 ? 'Wrong email or password.' :
          err.status === 429 ? 'Too many attempts. Wait a moment and try again.' : err.message);
      } finally {
        submit.disabled = false;
      }
    });

    logoutBtn.addEventListener('click', function () {
      logoutBtn.disabled = true;
      logout().finally(function () { logoutBtn.disabled = false; });
    });

    if (session) {
      schedule();
      api('GET', '/api/auth/me').then(function (user) {
        if (user && session) {
          session.user = user;
          persist();
        }
        enter(user || session.user);
      }, function (err) {
        if (session && err.status !== 401) {
          // The server is unreachable but the session may be fine: go on with what we know.
          enter(session.user || {});
        } else {
          endSession('');
          showLogin('');
        }
      });
    } else {
      showLogin('');
    }
  }

  function onSessionEnd(fn) { endHandlers.push(fn); }

  /** isAdmin tells whether user may use the tenant-admin page (a tenant or platform admin). */
  function isAdmin(user) {
    return (user && user.roles || []).some(function (r) { return r === 'tenant-admin' || r === 'super-admin'; });
  }

  window.AtendeAuth = {
    ApiError: ApiError,
    api: api,
    login: login,
    logout: logout,
    refresh: refresh,
    start: start,
    onSessionEnd: onSessionEnd,
    isAdmin: isAdmin,
    user: function () { return session ? session.user : null; },
    token: function () { return session ? session.accessToken : ''; }
  };
})();
