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
 *
 * Opt-in DPoP mode (RFC 9449), `new Authority({dpop: true})`: body delivery, tokens
 * bound to a key of this browser. A non-extractable ECDSA P-256 key pair is made once
 * with WebCrypto and kept in IndexedDB (database "authority", store "dpop"): it survives
 * reloads and no script can read the private key out. The tokens are kept there too (a
 * script that steals them gets nothing it can use elsewhere: every request needs a fresh
 * proof signed by the key). Login, sign-up and refresh send a DPoP proof; requests to
 * the authority's origin (and to `resourceOrigins`) send `Authorization: DPoP <token>`
 * with a proof carrying the token's hash (`ath`). A `use_dpop_nonce` answer is retried
 * once with the server's `DPoP-Nonce`. No cookies and no CSRF token are used.
 */
(function (global) {
  "use strict";

  const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);
  const LOCK_NAME = "authority-refresh";
  const STAMP_KEY = "authority:refreshed";
  const KEY_LOCK = "authority-dpop-key";
  const DB_NAME = "authority";
  const DB_STORE = "dpop";

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

  // --- DPoP: the key in IndexedDB, and proofs ----------------------------------------

  function idb(mode, action) {
    return new Promise((resolve, reject) => {
      const opening = global.indexedDB.open(DB_NAME, 1);
      opening.onupgradeneeded = () => opening.result.createObjectStore(DB_STORE);
      opening.onerror = () => reject(opening.error);
      opening.onsuccess = () => {
        const db = opening.result;
        const tx = db.transaction(DB_STORE, mode);
        const request = action(tx.objectStore(DB_STORE));
        tx.oncomplete = () => {
          db.close();
          resolve(request.result);
        };
        tx.onerror = tx.onabort = () => {
          db.close();
          reject(tx.error);
        };
      };
    });
  }
  const stored = (name) => idb("readonly", (store) => store.get(name));
  const store = (name, value) => idb("readwrite", (s) => s.put(value, name));
  const forget = (name) => idb("readwrite", (s) => s.delete(name));

  function b64url(bytes) {
    let text = "";
    for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
    return global.btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  const utf8 = (text) => new TextEncoder().encode(text);

  /** The browser's key pair: made once (tabs take turns, so that two tabs never make
   * two), the private key not extractable. */
  async function loadKeyPair() {
    const load = async () => {
      let pair = await stored("key");
      if (!pair) {
        const algorithm = { name: "ECDSA", namedCurve: "P-256" };
        pair = await global.crypto.subtle.generateKey(algorithm, false, ["sign", "verify"]);
        await store("key", pair);
      }
      return pair;
    };
    if (global.navigator && global.navigator.locks) {
      return global.navigator.locks.request(KEY_LOCK, load);
    }
    return load();
  }

  /** A DPoP proof (RFC 9449 section 4.2) of a request, by the browser's key. */
  async function makeProof(pair, method, url, accessToken, nonce) {
    const { kty, crv, x, y } = await global.crypto.subtle.exportKey("jwk", pair.publicKey);
    const target = new URL(url);
    const claims = {
      jti: b64url(global.crypto.getRandomValues(new Uint8Array(16))),
      htm: method,
      htu: target.origin + target.pathname,
      iat: Math.floor(Date.now() / 1000),
    };
    if (accessToken) {
      claims.ath = b64url(await global.crypto.subtle.digest("SHA-256", utf8(accessToken)));
    }
    if (nonce) claims.nonce = nonce;
    const header = { typ: "dpop+jwt", alg: "ES256", jwk: { kty, crv, x, y } };
    const input = `${b64url(utf8(JSON.stringify(header)))}.${b64url(utf8(JSON.stringify(claims)))}`;
    const signature = await global.crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-256" },
      pair.privateKey,
      utf8(input),
    );
    return `${input}.${b64url(signature)}`;
  }

  async function asksForNonce(response) {
    if ((response.headers.get("WWW-Authenticate") || "").includes("use_dpop_nonce")) return true;
    try {
      return (await response.clone().json()).error === "use_dpop_nonce";
    } catch (_notJson) {
      return false;
    }
  }

  class Authority {
    constructor(options = {}) {
      this.baseUrl = (options.baseUrl || "").replace(/\/$/, "");
      // The authority's origin: the only one that gets the CSRF token and cookies.
      this.origin = new URL(this.baseUrl || "/", global.location.href).origin;
      this._csrfCookie = null; // learnt from /auth/csrf
      this.dpop = Boolean(options.dpop);
      // Other origins that get the DPoP-bound access token (resource servers).
      this.resourceOrigins = new Set(options.resourceOrigins || []);
      this._keyPair = null; // a promise of the key pair, in DPoP mode
      this._nonces = new Map(); // origin -> the last DPoP-Nonce it sent
      this.onLogout = options.onLogout || null;
      this.refreshes = 0; // refresh requests this tab sent (for diagnostics and tests)
      this._refreshing = null;
      this._refreshed = 0; // refreshes of this tab that succeeded
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
      if (this.dpop) return this._sendWithProof(path, options, false);
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

    /** DPoP mode: the session's tokens, null when logged out. */
    session() {
      return stored("session").then((found) => found || null);
    }

    keyPair() {
      if (!this._keyPair) this._keyPair = loadKeyPair();
      return this._keyPair;
    }

    /** DPoP mode's `send`: a proof on every request to the authority (and to
     * `resourceOrigins`), with the access token unless `withToken` is false; one retry
     * with the server's nonce when it asks for it. */
    async _sendWithProof(path, options, retried) {
      const { json, withToken = true, ...init } = options;
      const method = (init.method || "GET").toUpperCase();
      const headers = new Headers(init.headers || {});
      const url = new URL(this.baseUrl + path, global.location.href);
      const ours = url.origin === this.origin || this.resourceOrigins.has(url.origin);
      if (json !== undefined) {
        headers.set("Content-Type", "application/json");
        init.body = JSON.stringify(json);
      }
      if (ours) {
        const session = withToken ? await this.session() : null;
        const access = session ? session.access : null;
        if (access) headers.set("Authorization", `DPoP ${access}`);
        const pair = await this.keyPair();
        const nonce = this._nonces.get(url.origin);
        headers.set("DPoP", await makeProof(pair, method, url.href, access, nonce));
      }
      const response = await fetch(url.href, { ...init, method, headers, credentials: "omit" });
      const nonce = ours ? response.headers.get("DPoP-Nonce") : null;
      if (nonce) {
        this._nonces.set(url.origin, nonce);
        if (!retried && (await asksForNonce(response))) {
          return this._sendWithProof(path, options, true);
        }
      }
      return response;
    }

    /** An authenticated request: on a 401, refresh once (shared) and retry once. */
    async fetch(path, options = {}) {
      const refreshed = this._refreshed;
      const response = await this.send(path, options);
      if (response.status !== 401) return response;
      // A refresh ended while this request was on its way: it carried the old token,
      // so retry with the new one rather than refresh again.
      if (this._refreshed !== refreshed) return this.send(path, options);
      if (!(await this.refresh())) return response;
      return this.send(path, options);
    }

    /** Refresh the session; true when it still stands. One refresh per tab at a time. */
    refresh() {
      if (!this._refreshing) {
        this._refreshing = this._refreshTakingTurns()
          .then((standing) => {
            if (standing) this._refreshed += 1;
            return standing;
          })
          .finally(() => {
            this._refreshing = null;
          });
      }
      return this._refreshing;
    }

    async _refreshTakingTurns() {
      if (this.dpop) return this._refreshWithProof();
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

    /** DPoP mode's refresh: the refresh token from IndexedDB, with a proof by the same
     * key. A tab that waited while another refreshed uses its new tokens. */
    async _refreshWithProof() {
      const seen = await this.session();
      const refreshOnce = async () => {
        const now = await this.session();
        if (!now) return false;
        if (!seen || now.refresh !== seen.refresh) return true;
        const response = await this.send("/auth/refresh", {
          method: "POST",
          json: { refresh: now.refresh },
          withToken: false,
        });
        this.refreshes += 1;
        if (!response.ok) {
          if (response.status === 401) await forget("session");
          return false;
        }
        await this._keep((await response.json()).tokens);
        return true;
      };
      if (global.navigator && global.navigator.locks) {
        return global.navigator.locks.request(LOCK_NAME, refreshOnce);
      }
      return refreshOnce();
    }

    _keep(tokens) {
      return store("session", { access: tokens.access, refresh: tokens.refresh });
    }

    /** Login and sign-up: in DPoP mode in body delivery, the tokens kept in IndexedDB. */
    async _open(path, json) {
      if (!this.dpop) return this._call(path, json);
      const response = await this.send(path, {
        method: "POST",
        json: { ...json, delivery: "body" },
        withToken: false,
      });
      if (!response.ok) throw await failure(response);
      const body = await response.json();
      await this._keep(body.tokens);
      return body;
    }

    async _call(path, json) {
      const response = await this.send(path, { method: "POST", json });
      if (!response.ok) throw await failure(response);
      return response.json();
    }

    /** Log in with a username, or an email when `login` contains "@". */
    async login(login, password) {
      const field = login.includes("@") ? "email" : "username";
      return (await this._open("/auth/login", { [field]: login, password })).user;
    }

    async register(username, email, password) {
      return (await this._open("/auth/register", { username, email, password })).user;
    }

    /** The logged-in user, or null. */
    async me() {
      const response = await this.fetch("/auth/me");
      return response.ok ? response.json() : null;
    }

    async logout() {
      if (this.dpop) {
        await this.fetch("/auth/logout", { method: "POST" });
        await forget("session");
      } else {
        await this._call("/auth/logout", {});
      }
      if (this._channel) this._channel.postMessage("logout");
    }

    async logoutAll() {
      const response = await this.fetch("/auth/logout-all", { method: "POST" });
      if (!response.ok) throw await failure(response);
      if (this.dpop) await forget("session");
      if (this._channel) this._channel.postMessage("logout");
      return response.json();
    }
  }

  global.Authority = Authority;
  global.AuthorityError = AuthorityError;
})(globalThis);
