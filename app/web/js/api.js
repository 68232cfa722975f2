// Calls to the RetailKLIP API: the key from sessionStorage as X-API-Key, errors as ApiError
// carrying the service's {"detail": ...} message.

const KEY_NAME = "retailklip.apiKey";

export class ApiError extends Error {
  constructor(status, detail, method, path) {
    super(status ? `${method} ${path}: ${status} ${detail}` : `${method} ${path}: ${detail}`);
    this.status = status;
    this.detail = detail;
  }
}

let askForKey = null; // (reason) => Promise<boolean>; set by main.js

export function onKeyNeeded(prompt) {
  askForKey = prompt;
}

export function apiKey() {
  return sessionStorage.getItem(KEY_NAME) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_NAME, key);
  else sessionStorage.removeItem(KEY_NAME);
}

async function detailOf(response) {
  const text = await response.text();
  try {
    const detail = JSON.parse(text).detail;
    return typeof detail === "string" ? detail : JSON.stringify(detail);
  } catch {
    return text || response.statusText;
  }
}

// One call; a 401 asks for the key once and retries (FormData bodies can be sent again).
// `json` sends a JSON body, `raw` returns the Response (for image bytes).
export async function request(method, path, { body, json, raw = false } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const headers = {};
    const key = apiKey();
    if (key) headers["X-API-Key"] = key;
    let payload = body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(json);
    }
    let response;
    try {
      response = await fetch(path, { method, headers, body: payload });
    } catch (error) {
      throw new ApiError(0, `network error (${error.message})`, method, path);
    }
    if (response.status === 401 && attempt === 0 && askForKey) {
      if (await askForKey(await detailOf(response))) continue;
      throw new ApiError(401, "an API key is needed", method, path);
    }
    if (!response.ok) throw new ApiError(response.status, await detailOf(response), method, path);
    if (raw) return response;
    return response.status === 204 ? null : response.json();
  }
}

export const sku = (value) => encodeURIComponent(value);

export function form(fields) {
  const data = new FormData();
  for (const [name, value] of Object.entries(fields)) {
    if (value === undefined || value === null || value === "") continue;
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item instanceof Blob) data.append(name, item, item.name || "photo.jpg");
      else data.append(name, item);
    }
  }
  return data;
}

// Routes some servers may not have yet answer 404/405: callers then hide the feature.
export async function optional(method, path) {
  try {
    return await request(method, path);
  } catch (error) {
    if (error.status === 404 || error.status === 405) return null;
    throw error;
  }
}
