/*
 * authority.js: the browser client of the token authority's /auth API, cookie delivery.
 * No build step: load it with <script src="/static/authority.js"></script>, then
 *
 *   const auth = new Authority();            // same origin; or {baseUrl: "https://..."}
 *   await auth.login("alice", "secret");     // the user, or throws AuthorityError
 *   const user = await auth.me();            // the user, or null when logged out
 *   const response = await auth.fetch("/api/things", {method: "POST", json: {...}});
 *   await auth.logout();
 *
 * Tokens live in HttpOnly cookies that scripts cannot read; this file only handles the
 * CSRF token (the readable CSRF cookie, whose name /auth/csrf tells: csrftoken, or
 * __Host-csrftoken with Secure cookies; sent back as the X-CSRFToken header on unsafe
 * requests to the authority's origin, never to another) and refreshing:
 *   - a request answered 401 triggers one refresh, then is retried once;
 *   - concurrent requests of a tab share that one refresh;
 *   - tabs take turns through a Web Lock, and a tab that waited while another tab
 *     refreshed uses the other tab's new cookies instead of refreshing again (the
 *     authority treats a refresh token presented twice as stolen and ends the session).
 */
(function (global) {
  "use strict";

  const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);
  const LOCK_NAME = "authority-refresh";
  const STAMP_KEY = "authority:refreshed";

  class AuthorityError extends Error {
    constructor(status, body) {
      super((body && body.detail) || `request failed with status ${status}`);
      this.name = "AuthorityError";
      this.status = status;
      this.body = body;
      this.retryAfter = null;
    }
  }

  function readCookie(name) {
    for (const part of document.cookie ? document.cookie.split("; ") : []) {
      const eq = part.indexOf("=");
      if (part.slice(0, eq) === name) return decodeURIComponent(part.slice(eq + 1));
    }
    return null;
  }

  function storage(action, value) {
    try {
      if (action === "read") return global.localStorage.getItem(STAMP_KEY);
      global.localStorage.setItem(STAMP_KEY, value);
    } catch (_blocked) {
      // Storage disabled: the Web Lock still keeps tabs from refreshing at once.
    }
    return null;
  }

  async function failure(response) {
    let body = null;
    try {
      body = await response.json();
    } catch (_notJson) {
      body = null;
    }
    const error = new AuthorityError(response.status, body);
    error.retryAfter = response.headers.get("Retry-After");
    return error;
  }

  class Authority {
    constructor(options = {}) {
      this.baseUrl = (options.baseUrl || "").replace(/\/$/, "");
      // The authority's origin: the only one that gets the CSRF token and cookies.
      this.origin = new URL(this.baseUrl || "/", global.location.href).origin;
      this._csrfCookie = null; // learnt from /auth/csrf
      this.onLogout = options.onLogout || null;
      this.refreshes = 0; // refresh requests this tab sent (for diagnostics and tests)
      this._refreshing = null;
      this._channel = "BroadcastChannel" in global ? new BroadcastChannel("authority") : null;
      if (this._channel) {
        this._channel.onmessage = (event) => {
          if (event.data === "logout" && this.onLogout) this.onLogout();
        };
      }
    }

    /** The CSRF token: the CSRF cookie, fetched from /auth/csrf (which names the
     * cookie) when missing. */
    async csrfToken() {
      const token = this._csrfCookie ? readCookie(this._csrfCookie) : null;
      if (token) return token;
      const response = await fetch(this.baseUrl + "/auth/csrf", { credentials: "include" });
      if (!response.ok) throw await failure(response);
      const body = await response.json();
      this._csrfCookie = body.cookie_name;
      return body.csrf_token;
    }

    /** One request, `json` encoded. Requests to the authority's origin carry its
     * cookies and, when unsafe, the CSRF header; any other origin gets neither. */
    async send(path, options = {}) {
      const { json, ...init } = options;
      const method = (init.method || "GET").toUpperCase();
      const headers = new Headers(init.headers || {});
      const url = new URL(this.baseUrl + path, global.location.href);
      const ours = url.origin === this.origin;
      if (ours && !SAFE_METHODS.has(method)) headers.set("X-CSRFToken", await this.csrfToken());
      if (json !== undefined) {
        headers.set("Content-Type", "application/json");
        init.body = JSON.stringify(json);
      }
      const credentials = ours ? "include" : "same-origin";
      return fetch(url.href, { ...init, method, headers, credentials });
    }

    /** An authenticated request: on a 401, refresh once (shared) and retry once. */
    async fetch(path, options = {}) {
      const response = await this.send(path, options);
      if (response.status !== 401) return response;
      if (!(await this.refresh())) return response;
      return this.send(path, options);
    }

    /** Refresh the session; true when it still stands. One refresh per tab at a time. */
    refresh() {
      if (!this._refreshing) {
        this._refreshing = this._refreshTakingTurns().finally(() => {
          this._refreshing = null;
        });
      }
      return this._refreshing;
    }

    async _refreshTakingTurns() {
      const seen = storage("read");
      const refreshOnce = async () => {
        // Another tab refreshed while this one waited for the lock: the cookies are
        // shared, so its new tokens are already ours.
        if (storage("read") !== seen) return true;
        const response = await this.send("/auth/refresh", { method: "POST" });
        this.refreshes += 1;
        if (!response.ok) return false;
        storage("write", `${Date.now()}-${Math.random()}`);
        return true;
      };
      if (global.navigator && global.navigator.locks) {
        return global.navigator.locks.request(LOCK_NAME, refreshOnce);
      }
      return refreshOnce();
    }

    async _call(path, json) {
      const response = await this.send(path, { method: "POST", json });
      if (!response.ok) throw await failure(response);
      return response.json();
    }

    /** Log in with a username, or an email when `login` contains "@". */
    async login(login, password) {
      const field = login.includes("@") ? "email" : "username";
      return (await this._call("/auth/login", { [field]: login, password })).user;
    }

    async register(username, email, password) {
      return (await this._call("/auth/register", { username, email, password })).user;
    }

    /** The logged-in user, or null. */
    async me() {
      const response = await this.fetch("/auth/me");
      return response.ok ? response.json() : null;
    }

    async logout() {
      await this._call("/auth/logout", {});
      if (this._channel) this._channel.postMessage("logout");
    }

    async logoutAll() {
      const response = await this.fetch("/auth/logout-all", { method: "POST" });
      if (!response.ok) throw await failure(response);
      if (this._channel) this._channel.postMessage("logout");
      return response.json();
    }
  }

  global.Authority = Authority;
  global.AuthorityError = AuthorityError;
})(globalThis);
