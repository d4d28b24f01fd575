import { describe, expect, it } from 'vitest';
import { BookingApi, IntentTracker, Latest, ServerCredentials, describeProblem, findBooking, isBookableDate, isRetryable, tokenSubject, type ApiResult, type BookingPayload } from './api';

type Reply = { status: number; body?: unknown; headers?: Record<string, string> } | 'network' | 'timeout';

/** A fake fetch that answers from a script and records every request. */
function scripted(replies: Reply[]) {
  const calls: { url: string; init: RequestInit; key: string | null }[] = [];
  const fetchFn = (async (url: string, init: RequestInit) => {
    const headers = new Headers(init.headers);
    calls.push({ url, init, key: headers.get('Idempotency-Key') });
    const reply = replies.shift() ?? { status: 500 };
    if (reply === 'network') throw new TypeError('Failed to fetch');
    if (reply === 'timeout') {
      const e = new Error('aborted');
      e.name = 'AbortError';
      throw e;
    }
    return new Response(reply.body === undefined ? '' : JSON.stringify(reply.body), {
      status: reply.status,
      headers: reply.headers,
    });
  }) as unknown as typeof fetch;
  return { fetchFn, calls };
}

const payload: BookingPayload = { userId: 'user_alice', resourceId: 'room_A', date: '2027-03-01' };
const created = { status: 201, body: { success: true, booking: { id: 'b1' } } };
const problem = (status: number, code: string) => ({ status, body: { success: false, status, code, detail: code, error: code } });

function client(replies: Reply[], sleeps: number[] = []) {
  const { fetchFn, calls } = scripted(replies);
  const api = new BookingApi({ baseUrl: 'http://api', fetch: fetchFn, sleep: async (ms) => void sleeps.push(ms), maxAttempts: 5 });
  return { api, calls };
}

describe('retries', () => {
  it('retries a network error, a timeout, a 503 and the retryable 409s with the same key', async () => {
    const sleeps: number[] = [];
    const { api, calls } = client(['network', 'timeout', problem(503, 'DEPENDENCY_UNAVAILABLE'), problem(409, 'IDEMPOTENCY_IN_PROGRESS'), created], sleeps);
    const result = await api.createBooking(payload, 'key-1');
    expect(result.ok).toBe(true);
    expect(result.attempts).toBe(5);
    expect(calls.map((c) => c.key)).toEqual(['key-1', 'key-1', 'key-1', 'key-1', 'key-1']);
    expect(sleeps).toEqual([250, 500, 1000, 2000]);
  });

  it('honours Retry-After when it is longer than the backoff', async () => {
    const sleeps: number[] = [];
    const { api } = client([{ ...problem(409, 'RESOURCE_LOCKED'), headers: { 'Retry-After': '3' } }, created], sleeps);
    await api.createBooking(payload, 'k');
    expect(sleeps).toEqual([3000]);
  });

  it('does not retry definitive answers', async () => {
    for (const code of ['ALREADY_BOOKED', 'IDEMPOTENCY_KEY_REUSED', 'VALIDATION_FAILED']) {
      const status = code === 'ALREADY_BOOKED' ? 409 : code === 'VALIDATION_FAILED' ? 400 : 422;
      const { api, calls } = client([problem(status, code), created]);
      const result = await api.createBooking(payload, 'k');
      expect(result.ok).toBe(false);
      expect(calls).toHaveLength(1);
    }
  });

  it('gives up after the last attempt with the last answer', async () => {
    const { api, calls } = client(Array(10).fill('network'));
    const result = await api.createBooking(payload, 'k');
    expect(calls).toHaveLength(5);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.problem.code).toBe('NETWORK_ERROR');
  });

  it('reports a replayed answer', async () => {
    const { api } = client([{ ...created, headers: { 'Idempotent-Replayed': 'true' } }]);
    const result = await api.createBooking(payload, 'k');
    expect(result.replayed).toBe(true);
  });
});

describe('intents and keys', () => {
  let n = 0;
  const keys = () => `key-${++n}`;

  it('keeps one key per intent until a definitive answer', async () => {
    const { api, calls } = client([problem(503, 'DEPENDENCY_UNAVAILABLE'), problem(503, 'DEPENDENCY_UNAVAILABLE'), problem(503, 'DEPENDENCY_UNAVAILABLE'), problem(503, 'DEPENDENCY_UNAVAILABLE'), problem(503, 'DEPENDENCY_UNAVAILABLE'), created, created]);
    const tracker = new IntentTracker(api, keys);
    const first = await tracker.submit(payload); // 5 attempts, all 503: not definitive
    expect(first.ok).toBe(false);
    const second = await tracker.submit(payload); // the user submits again: same intent, same key
    expect(second.ok).toBe(true);
    const keysSent = new Set(calls.slice(0, 6).map((c) => c.key));
    expect(keysSent.size).toBe(1);
    await tracker.submit(payload); // after a definitive answer: a new intent
    expect(calls[6].key).not.toBe(calls[0].key);
  });

  it('makes a new intent when the form changes', () => {
    const { api } = client([]);
    const tracker = new IntentTracker(api, keys);
    const a = tracker.keyFor(payload);
    expect(tracker.keyFor({ ...payload })).toBe(a);
    expect(tracker.keyFor({ ...payload, resourceId: 'room_B' })).not.toBe(a);
    const b = tracker.keyFor(payload);
    tracker.reset();
    expect(tracker.keyFor(payload)).not.toBe(b);
  });

  it('turns a double click into one request', async () => {
    const { api, calls } = client([created, created]);
    const tracker = new IntentTracker(api, keys);
    const [one, two] = await Promise.all([tracker.submit(payload), tracker.submit(payload)]);
    expect(calls).toHaveLength(1);
    expect(one).toBe(two);
  });
});

describe('messages', () => {
  it('has a human message for every error code of the API', () => {
    const codes = ['VALIDATION_FAILED', 'IDEMPOTENCY_KEY_INVALID', 'IDEMPOTENCY_IN_PROGRESS', 'RESOURCE_LOCKED', 'ALREADY_BOOKED', 'IDEMPOTENCY_KEY_REUSED', 'UNKNOWN_RESOURCE', 'NOT_FOUND', 'PAYLOAD_TOO_LARGE', 'DEPENDENCY_UNAVAILABLE', 'INTERNAL', 'UNAUTHENTICATED', 'FORBIDDEN', 'RATE_LIMITED', 'QUOTA_EXCEEDED', 'REQUEST_TIMEOUT'];
    const messages = codes.map((code) => describeProblem({ code, status: 400, type: '', title: '', detail: '', success: false, error: '' }));
    expect(new Set(messages).size).toBe(codes.length);
    for (const m of messages) expect(m.length).toBeGreaterThan(10);
  });

  it('classifies answers', () => {
    const ok: ApiResult<unknown> = { ok: true, status: 201, data: {}, replayed: false, attempts: 1 };
    expect(isRetryable(ok)).toBe(false);
    const problem = (code: string, status: number): ApiResult<unknown> => ({
      ok: false, status, attempts: 1, replayed: false,
      problem: { code, status, type: '', title: '', detail: '', success: false, error: '' },
    });
    // A rate limit passes; a key quota lasts until the user's oldest key expires.
    expect(isRetryable(problem('RATE_LIMITED', 429))).toBe(true);
    expect(isRetryable(problem('QUOTA_EXCEEDED', 429))).toBe(false);
  });
});

describe('credentials', () => {
  const farFuture = Math.floor(Date.now() / 1000) + 3600;

  it('under --auth dev mints one token per user, caches it and sends it', async () => {
    const { fetchFn, calls } = scripted([
      { status: 200, body: { mode: 'dev', devTokens: true } },
      { status: 200, body: { success: true, token: 'tok-alice', tokenType: 'Bearer', expiresAt: farFuture } },
      created,
      { status: 200, body: { success: true, bookings: [] } },
    ]);
    const api = new BookingApi({ baseUrl: 'http://api', fetch: fetchFn, sleep: async () => {} });
    const credentials = new ServerCredentials(api);
    api.useCredentials((u) => credentials.headers(u));
    await api.createBooking(payload, 'k');
    await api.listBookings('user_alice');
    expect(calls.map((c) => c.url)).toEqual([
      'http://api/api/auth/config',
      'http://api/api/auth/dev-token',
      'http://api/api/bookings',
      'http://api/api/bookings/user_alice',
    ]);
    const auth = (i: number) => new Headers(calls[i].init.headers).get('Authorization');
    expect(auth(2)).toBe('Bearer tok-alice');
    expect(auth(3)).toBe('Bearer tok-alice');
  });

  it('under --auth none sends no Authorization header', async () => {
    const { fetchFn, calls } = scripted([{ status: 200, body: { mode: 'none', devTokens: false } }, created]);
    const api = new BookingApi({ baseUrl: 'http://api', fetch: fetchFn, sleep: async () => {} });
    const credentials = new ServerCredentials(api);
    api.useCredentials((u) => credentials.headers(u));
    await api.createBooking(payload, 'k');
    expect(new Headers(calls[1].init.headers).get('Authorization')).toBeNull();
  });

  it('reads the subject of a pasted token for display', () => {
    const part = (o: object) => btoa(JSON.stringify(o)).replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
    expect(tokenSubject(`${part({ alg: 'RS256' })}.${part({ sub: 'carol' })}.sig`)).toBe('carol');
    expect(tokenSubject('garbage')).toBeUndefined();
  });
});

describe('failing networks', () => {
  it('reports progress per retry and keeps the intent when no answer ever arrives', async () => {
    const keys = ['k1', 'k2'];
    const { api, calls } = client(['network', 'network', 'network', 'network', 'network', created]);
    const tracker = new IntentTracker(api, () => keys.shift()!);
    const progress: string[] = [];
    const lost = await tracker.submit(payload, { progress: (n, max) => progress.push(`${n}/${max}`) });
    expect(lost.ok).toBe(false);
    expect(progress).toEqual(['2/5', '3/5', '4/5', '5/5']);
    // The same intent again (the Retry of "could not confirm"): the same key.
    const retried = await tracker.submit(payload);
    expect(retried.ok).toBe(true);
    expect(new Set(calls.map((c) => c.key))).toEqual(new Set(['k1']));
  });

  it('finds the booking that was made although its answer was lost', async () => {
    const listed = { status: 200, body: { success: true, bookings: [{ id: 'b9', userId: 'user_alice', resourceId: 'room_A', date: '2027-03-01', status: 'confirmed', createdAt: '' }] } };
    const { api, calls } = client([listed]);
    const found = await findBooking(api, payload);
    expect(found?.id).toBe('b9');
    expect(calls[0].url).toContain('/api/bookings/user_alice?resourceId=room_A&date=2027-03-01&status=confirmed');
    const { api: none } = client([{ status: 200, body: { success: true, bookings: [] } }]);
    expect(await findBooking(none, payload)).toBeUndefined();
    const { api: down } = client(['network', 'network', 'network', 'network', 'network']);
    expect(await findBooking(down, payload)).toBeNull();
  });

  it('lets only the latest request update the screen, and aborts the one before', async () => {
    const latest = new Latest();
    const first = latest.begin();
    const second = latest.begin();
    expect(first.signal.aborted).toBe(true);
    expect(first.isLatest()).toBe(false);
    expect(second.isLatest()).toBe(true);
    expect(second.signal.aborted).toBe(false);
  });

  it('stops retrying an aborted request at once', async () => {
    const controller = new AbortController();
    const { api, calls } = client(['network', 'network', 'network']);
    const sleeps: number[] = [];
    const aborting = new BookingApi({
      baseUrl: 'http://api',
      fetch: (async (url: string, init: RequestInit) => {
        controller.abort();
        return (api as unknown as { fetchFn: typeof fetch }).fetchFn(url, init);
      }) as unknown as typeof fetch,
      sleep: async (ms) => void sleeps.push(ms),
    });
    const r = await aborting.available('2027-03-01', { signal: controller.signal });
    expect(r.ok).toBe(false);
    expect(r.ok ? '' : r.problem.code).toBe('ABORTED');
    expect(sleeps).toEqual([]);
    expect(calls).toHaveLength(1);
  });

  it('asks for availability only for a complete date from today on', () => {
    const today = '2026-11-25';
    expect(isBookableDate('2026-11-25', today)).toBe(true);
    expect(isBookableDate('2027-02-28', today)).toBe(true);
    for (const typing of ['0002-11-25', '0020-11-25', '0202-11-25', '2026-11-24', '2027-02-30', '', '2027-2-1', '20271-01-01']) {
      expect(isBookableDate(typing, today), typing).toBe(false);
    }
  });
});
