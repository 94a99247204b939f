// The HTTP API of PROTOCOL.md section 5, with its errors as ApiError.

export class ApiError extends Error {
  /**
   * status is the HTTP status (0 for a network failure), code the protocol's
   * error code ("network" when the server was not reached).
   */
  constructor(status, code, message, retryAfterMs) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfterMs = retryAfterMs;
  }
}

export class Api {
  /**
   * token() gives the current token; onUnauthorized(err) is told of every
   * 401 before the error is thrown.
   */
  constructor(token, onUnauthorized) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  /** request, with GETs retried (three times at most) when rate limited. */
  async request(method, path, body, opts = {}) {
    for (let i = 0; ; i++) {
      try {
        return await this.once(method, path, body, opts);
      } catch (e) {
        if (!(e instanceof ApiError) || e.code !== 'rate_limited' || method !== 'GET' || i === 3) throw e;
        await new Promise((r) => setTimeout(r, Math.min(e.retryAfterMs || 1000, 5000)));
      }
    }
  }

  async once(method, path, body, { signal, auth = true } = {}) {
    const headers = {};
    if (auth) headers.Authorization = 'Bearer ' + this.token();
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
        cache: 'no-store',
      });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiError(0, 'network', 'cannot reach the server');
    }
    let data = null;
    try {
      data = await res.json();
    } catch (e) {
      if (e.name === 'AbortError') throw e;
    }
    if (!res.ok) {
      const err = (data && data.error) || {};
      const ra = res.headers.get('Retry-After');
      const e = new ApiError(res.status, err.code || 'http_' + res.status, err.message || res.statusText,
        ra ? Number(ra) * 1000 : undefined);
      if (res.status === 401 && auth && this.onUnauthorized) this.onUnauthorized(e);
      throw e;
    }
    return data;
  }

  get(path, opts) { return this.request('GET', path, undefined, opts); }
  post(path, body, opts) { return this.request('POST', path, body, opts); }
  patch(path, body) { return this.request('PATCH', path, body); }
  del(path) { return this.request('DELETE', path); }
}

/** A path segment, escaped. */
export const seg = encodeURIComponent;
