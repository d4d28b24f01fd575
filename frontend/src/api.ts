// The booking API client: requests, idempotency keys and retries.
//
// One key per booking intent. The key is kept across automatic retries
// after a network error, a timeout, a 5xx, IDEMPOTENCY_IN_PROGRESS or
// RESOURCE_LOCKED (with backoff), and replaced only after a definitive
// answer or a change of the form. A second submit of the same intent while
// the first is in flight joins it instead of sending again.

export type BookingStatus = 'confirmed' | 'cancelled';

export interface Booking {
  id: string;
  userId: string;
  resourceId: string;
  date: string;
  status: BookingStatus;
  createdAt: string;
  cancelledAt?: string;
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  success: false;
  error: string;
  code: string;
  errors?: { field: string; message: string }[];
}

export interface Resource {
  id: string;
  name: string;
}

export type ApiResult<T> =
  | { ok: true; status: number; data: T; replayed: boolean; attempts: number }
  | { ok: false; status: number; problem: Problem; replayed: boolean; attempts: number };

export interface BookingPayload {
  userId: string;
  resourceId: string;
  date: string;
}

export interface ClientOptions {
  /** API origin; '' is the page's own origin (the default). */
  baseUrl?: string;
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
  /** Tries per request, the first included. */
  maxAttempts?: number;
  /** Per-attempt timeout. */
  timeoutMs?: number;
  /** First backoff; doubles per retry up to `maxBackoffMs`. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Called before each retry (for progress messages). */
  onRetry?: (attempt: number, reason: string) => void;
  /** Headers that authenticate a request made for `userId` (none by default). */
  credentials?: (userId: string) => Promise<Record<string, string>>;
}

export type AuthMode = 'none' | 'dev' | 'jwt';

/**
 * Authenticates as the server asks (`GET /api/auth/config`): nothing under
 * `--auth none`, a token minted per demo user under `--auth dev`, and under
 * `--auth jwt` the bearer token the user pasted (from their identity provider).
 */
export class ServerCredentials {
  private mode?: Promise<AuthMode>;
  private readonly tokens = new Map<string, { token: string; expiresAt: number }>();
  /** `jwt` mode: the user's own token. */
  bearer = '';

  constructor(private readonly api: BookingApi) {}

  authMode(): Promise<AuthMode> {
    this.mode ??= this.api
      .once<{ mode: AuthMode }>('GET', '/api/auth/config')
      .then((r) => (r.ok ? r.data.mode : 'none'))
      .catch(() => 'none' as AuthMode);
    return this.mode;
  }

  async headers(userId: string): Promise<Record<string, string>> {
    const mode = await this.authMode();
    if (mode === 'jwt') return this.bearer ? { Authorization: `Bearer ${this.bearer}` } : {};
    if (mode !== 'dev') return {};
    const cached = this.tokens.get(userId);
    if (cached && cached.expiresAt * 1000 > Date.now() + 60_000) return { Authorization: `Bearer ${cached.token}` };
    const r = await this.api.once<{ token: string; expiresAt: number }>('POST', '/api/auth/dev-token', { userId });
    if (!r.ok) return {};
    this.tokens.set(userId, r.data);
    return { Authorization: `Bearer ${r.data.token}` };
  }
}

/** The subject of a JWT (not verified: the server does that), for display. */
export function tokenSubject(token: string): string | undefined {
  try {
    const payload = token.split('.')[1] ?? '';
    const json = atob(payload.replace(/-/g, '+').replace(/_/g, '/'));
    const sub = (JSON.parse(json) as { sub?: unknown }).sub;
    return typeof sub === 'string' ? sub : undefined;
  } catch {
    return undefined;
  }
}

/** Codes that mean "try again with the same key". */
export const RETRYABLE_CODES = new Set(['IDEMPOTENCY_IN_PROGRESS', 'RESOURCE_LOCKED', 'DEPENDENCY_UNAVAILABLE', 'INTERNAL', 'RATE_LIMITED', 'REQUEST_TIMEOUT']);

const NETWORK_PROBLEM = (detail: string): Problem => ({
  type: '/problems/network',
  title: 'Network error',
  status: 0,
  detail,
  success: false,
  error: detail,
  code: 'NETWORK_ERROR',
});

export function newIdempotencyKey(): string {
  return globalThis.crypto?.randomUUID?.() ?? `k-${Date.now()}-${Math.random().toString(36).slice(2)}`;
}

function defaultBase(): string {
  return (import.meta.env?.VITE_API_BASE as string | undefined) ?? '';
}

export class BookingApi {
  private readonly base: string;
  private readonly fetchFn: typeof fetch;
  private readonly sleep: (ms: number) => Promise<void>;
  readonly maxAttempts: number;
  private readonly timeoutMs: number;
  private readonly backoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly onRetry?: (attempt: number, reason: string) => void;
  private credentials?: (userId: string) => Promise<Record<string, string>>;

  constructor(options: ClientOptions = {}) {
    this.base = options.baseUrl ?? defaultBase();
    this.fetchFn = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.sleep = options.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    this.maxAttempts = options.maxAttempts ?? 5;
    this.timeoutMs = options.timeoutMs ?? 8000;
    this.backoffMs = options.backoffMs ?? 250;
    this.maxBackoffMs = options.maxBackoffMs ?? 4000;
    this.onRetry = options.onRetry;
    this.credentials = options.credentials;
  }

  /** Authenticates every later request with `credentials`. */
  useCredentials(credentials: (userId: string) => Promise<Record<string, string>>): void {
    this.credentials = credentials;
  }

  /** The headers that authenticate a request made for `userId`. */
  authHeaders(userId: string): Promise<Record<string, string>> {
    return this.credentials?.(userId) ?? Promise.resolve({});
  }

  /** One HTTP attempt; network errors and timeouts become status 0. */
  async once<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<ApiResult<T> & { retryAfterMs?: number }> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.timeoutMs);
    const cancel = () => controller.abort();
    signal?.addEventListener('abort', cancel);
    try {
      const response = await this.fetchFn(`${this.base}${path}`, {
        method,
        headers: body === undefined ? headers : { 'Content-Type': 'application/json', ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller.signal,
      });
      const replayed = response.headers.get('Idempotent-Replayed') === 'true';
      const retryAfter = Number(response.headers.get('Retry-After'));
      const retryAfterMs = Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined;
      let json: unknown;
      try {
        json = await response.json();
      } catch {
        json = undefined;
      }
      if (response.ok) {
        return { ok: true, status: response.status, data: json as T, replayed, attempts: 1, retryAfterMs };
      }
      const problem =
        json && typeof json === 'object' && 'code' in json
          ? (json as Problem)
          : { ...NETWORK_PROBLEM(`unexpected answer ${response.status}`), status: response.status, code: 'INTERNAL' };
      return { ok: false, status: response.status, problem, replayed, attempts: 1, retryAfterMs };
    } catch (e) {
      if (signal?.aborted) return { ok: false, status: 0, problem: { ...NETWORK_PROBLEM('superseded by a newer request'), code: 'ABORTED' }, replayed: false, attempts: 1 };
      const timedOut = e instanceof Error && e.name === 'AbortError';
      return { ok: false, status: 0, problem: NETWORK_PROBLEM(timedOut ? 'the request timed out' : 'the service could not be reached'), replayed: false, attempts: 1 };
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', cancel);
    }
  }

  /**
   * Repeats a request with the same body and headers while the answer is
   * retryable; `progress` hears of each retry (attempt about to be made,
   * attempts at most). An aborted request stops at once.
   */
  async withRetries<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}, opts: CallOptions = {}): Promise<ApiResult<T>> {
    let attempt = 1;
    for (;;) {
      const result = await this.once<T>(method, path, body, headers, opts.signal);
      const { retryAfterMs, ...answer } = result;
      if (opts.signal?.aborted || !isRetryable(answer) || attempt >= this.maxAttempts) {
        return { ...answer, attempts: attempt } as ApiResult<T>;
      }
      const backoff = Math.min(this.backoffMs * 2 ** (attempt - 1), this.maxBackoffMs);
      this.onRetry?.(attempt, answer.ok ? '' : answer.problem.code);
      opts.progress?.(attempt + 1, this.maxAttempts);
      await this.sleep(Math.max(backoff, retryAfterMs ?? 0));
      attempt += 1;
    }
  }

  async createBooking(payload: BookingPayload, key: string, opts: CallOptions = {}): Promise<ApiResult<{ booking: Booking; message: string }>> {
    const auth = await this.authHeaders(payload.userId);
    return this.withRetries('POST', '/api/bookings', payload, { 'Idempotency-Key': key, ...auth }, opts);
  }

  async listBookings(userId: string, filters: { resourceId?: string; date?: string; status?: string } = {}): Promise<ApiResult<{ bookings: Booking[] }>> {
    const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v) as [string, string][]);
    const suffix = query.toString() ? `?${query}` : '';
    const auth = await this.authHeaders(userId);
    return this.withRetries('GET', `/api/bookings/${encodeURIComponent(userId)}${suffix}`, undefined, auth);
  }

  async cancelBooking(bookingId: string, userId: string): Promise<ApiResult<{ booking: Booking; message: string }>> {
    const auth = await this.authHeaders(userId);
    return this.withRetries('PATCH', `/api/bookings/${encodeURIComponent(bookingId)}/cancel`, { userId }, auth);
  }

  resources(): Promise<ApiResult<Resource[]>> {
    return this.withRetries('GET', '/api/resources');
  }

  available(date: string, opts: CallOptions = {}): Promise<ApiResult<{ date: string; availableResources: string[] }>> {
    return this.withRetries('GET', `/api/resources/available?date=${encodeURIComponent(date)}`, undefined, {}, opts);
  }
}

/** Per-call options: a signal that supersedes the call, a progress callback. */
export interface CallOptions {
  signal?: AbortSignal;
  progress?: (attempt: number, maxAttempts: number) => void;
}

/**
 * Only the newest of a series of requests may update the screen: starting
 * one aborts the one before, and an answer that arrives after a newer
 * request started is stale (a quick change of date must never show the
 * previous date's rooms under the new one).
 */
export class Latest {
  private current = 0;
  private controller?: AbortController;

  begin(): { signal: AbortSignal; isLatest: () => boolean } {
    this.controller?.abort();
    const controller = new AbortController();
    this.controller = controller;
    const id = ++this.current;
    return { signal: controller.signal, isLatest: () => id === this.current };
  }
}

/** A complete YYYY-MM-DD date from `today` on (while a year is being typed, 0002-… is not one). */
export function isBookableDate(date: string, today: string): boolean {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date)) return false;
  const [y, m, d] = date.split('-').map(Number);
  const real = new Date(Date.UTC(y, m - 1, d));
  if (real.getUTCFullYear() !== y || real.getUTCMonth() !== m - 1 || real.getUTCDate() !== d) return false;
  return date >= today;
}

/**
 * After a booking whose answer never arrived: is there a confirmed booking
 * of this slot for this user? The booking (it was made), `undefined` (it was
 * not, as far as the service says now) or `null` (the check failed too).
 */
export async function findBooking(api: BookingApi, payload: BookingPayload): Promise<Booking | undefined | null> {
  const r = await api.listBookings(payload.userId, { resourceId: payload.resourceId, date: payload.date, status: 'confirmed' });
  if (!r.ok) return null;
  return r.data.bookings.find((b) => b.resourceId === payload.resourceId && b.date === payload.date && b.status === 'confirmed');
}

export function isRetryable(result: ApiResult<unknown>): boolean {
  if (result.ok) return false;
  if (result.status === 0 || result.status >= 500) return true;
  return RETRYABLE_CODES.has(result.problem.code);
}

/** A definitive answer settles an intent: a new submit gets a new key. */
export function isDefinitive(result: ApiResult<unknown>): boolean {
  return !isRetryable(result);
}

function samePayload(a: BookingPayload, b: BookingPayload): boolean {
  return a.userId === b.userId && a.resourceId === b.resourceId && a.date === b.date;
}

/**
 * Tracks the current booking intent: its key, and the request in flight.
 * The same payload reuses the key until a definitive answer; a changed
 * payload is a new intent with a new key.
 */
export class IntentTracker {
  private intent?: { payload: BookingPayload; key: string; inFlight?: Promise<ApiResult<{ booking: Booking; message: string }>> };

  constructor(private readonly api: BookingApi, private readonly makeKey: () => string = newIdempotencyKey) {}

  /** The key the next submit of `payload` will use. */
  keyFor(payload: BookingPayload): string {
    if (!this.intent || !samePayload(this.intent.payload, payload)) {
      this.intent = { payload: { ...payload }, key: this.makeKey() };
    }
    return this.intent.key;
  }

  /** The form changed: the next submit is a new intent. */
  reset(): void {
    this.intent = undefined;
  }

  /** Submits the intent; a second submit while the first is in flight joins it. */
  submit(payload: BookingPayload, opts: CallOptions = {}): Promise<ApiResult<{ booking: Booking; message: string }>> {
    const key = this.keyFor(payload);
    const intent = this.intent!;
    if (intent.inFlight) return intent.inFlight;
    const request = this.api.createBooking(payload, key, { progress: opts.progress }).then((result) => {
      if (this.intent === intent) {
        intent.inFlight = undefined;
        if (isDefinitive(result)) this.intent = undefined;
      }
      return result;
    });
    intent.inFlight = request;
    return request;
  }
}

/** Human messages for every error code of the API. */
export function describeProblem(problem: Problem): string {
  switch (problem.code) {
    case 'ALREADY_BOOKED':
      return 'Someone already booked this room for that date.';
    case 'RESOURCE_LOCKED':
      return 'Someone is booking this room right now. Please try again in a moment.';
    case 'IDEMPOTENCY_IN_PROGRESS':
      return 'Your booking is still being processed. Please wait.';
    case 'IDEMPOTENCY_KEY_REUSED':
      return 'This request was already used for a different booking. Please submit again.';
    case 'DEPENDENCY_UNAVAILABLE':
      return 'The service is temporarily unavailable. Please try again shortly.';
    case 'VALIDATION_FAILED':
      return problem.errors?.length ? `Please check: ${problem.errors.map((e) => `${e.field} ${e.message}`).join('; ')}.` : 'Please check your input.';
    case 'IDEMPOTENCY_KEY_INVALID':
      return 'The request carried an invalid key. Please reload the page.';
    case 'UNKNOWN_RESOURCE':
      return 'This room does not exist.';
    case 'NOT_FOUND':
      return 'That booking was not found.';
    case 'UNAUTHENTICATED':
      return 'Please sign in: the service did not accept your credentials.';
    case 'FORBIDDEN':
      return 'You may act only for the user you are signed in as.';
    case 'PAYLOAD_TOO_LARGE':
      return 'The request was too large.';
    case 'RATE_LIMITED':
      return 'Too many requests from this browser. Please wait a moment and try again.';
    case 'QUOTA_EXCEEDED':
      return 'You have made too many booking requests today. Please try again later.';
    case 'REQUEST_TIMEOUT':
      return 'The request took too long to send. Please try again.';
    case 'NETWORK_ERROR':
      return `Network problem: ${problem.detail}.`;
    default:
      return 'Something went wrong. Please try again.';
  }
}
