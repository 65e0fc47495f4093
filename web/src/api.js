// The dashboard's only way to the server: same-origin fetches with the key from
// session storage (never local storage, never a cookie).
const KEY_NAME = 'paycore.key';

export function savedKey() {
  return sessionStorage.getItem(KEY_NAME);
}

export function saveKey(key) {
  sessionStorage.setItem(KEY_NAME, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_NAME);
}

export class ApiError extends Error {
  constructor(status, body) {
    const code = body && body.error ? body.error.code : `http_${status}`;
    super(body && body.error && body.error.message ? `${code}: ${body.error.message}` : code);
    this.status = status;
    this.code = code;
  }
}

export async function call(method, path, body) {
  const headers = { Authorization: `Bearer ${savedKey() || ''}` };
  const init = { method, headers, cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}
