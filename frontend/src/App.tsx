import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { BookingApi, IntentTracker, Latest, ServerCredentials, describeProblem, findBooking, isBookableDate, isDefinitive, newIdempotencyKey, tokenSubject, type ApiResult, type AuthMode, type Booking, type BookingPayload, type Resource } from './api';

export const DEMO_USERS = ['user_alice', 'user_bob', 'user_charlie', 'user_diana'];

type Toast = { id: number; kind: 'success' | 'error' | 'info'; text: string };

function isoDate(d: Date): string {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

/** A YYYY-MM-DD date shown in the user's locale. */
function localDate(date: string): string {
  const [y, m, d] = date.split('-').map(Number);
  return new Date(y, m - 1, d).toLocaleDateString(undefined, { weekday: 'short', year: 'numeric', month: 'short', day: 'numeric' });
}

/** How long typing in a date waits before availability is asked for. */
const DATE_DEBOUNCE_MS = 300;

function useToasts() {
  const [toasts, setToasts] = useState<Toast[]>([]);
  const next = useRef(1);
  const push = useCallback((kind: Toast['kind'], text: string) => {
    const id = next.current++;
    // One outage, one message: a toast already showing is not repeated.
    setToasts((t) => (t.some((x) => x.text === text) ? t : [...t.slice(-3), { id, kind, text }]));
    setTimeout(() => setToasts((t) => t.filter((x) => x.id !== id)), 6000);
  }, []);
  return { toasts, push };
}

export function App() {
  const { api, credentials } = useMemo(() => {
    const api = new BookingApi();
    const credentials = new ServerCredentials(api);
    api.useCredentials((userId) => credentials.headers(userId));
    return { api, credentials };
  }, []);
  const tracker = useMemo(() => new IntentTracker(api), [api]);
  const [authMode, setAuthMode] = useState<AuthMode>('none');
  const [token, setToken] = useState('');
  useEffect(() => {
    credentials.authMode().then(setAuthMode);
  }, [credentials]);
  const { toasts, push } = useToasts();

  const [user, setUser] = useState(DEMO_USERS[0]);
  const [resources, setResources] = useState<Resource[]>([]);
  const [date, setDate] = useState(() => isoDate(new Date(Date.now() + 7 * 86400000)));
  const [resource, setResource] = useState('');
  const [available, setAvailable] = useState<string[] | null>(null);
  const [availabilityError, setAvailabilityError] = useState('');
  const [catalogueError, setCatalogueError] = useState('');
  /** A booking whose answer never arrived and that the service does not show yet: its intent (and key) is kept. */
  const [unconfirmed, setUnconfirmed] = useState<BookingPayload | null>(null);
  const availability = useRef(new Latest());
  const today = isoDate(new Date());
  const [submitting, setSubmitting] = useState(false);
  const [status, setStatus] = useState('');
  const [bookings, setBookings] = useState<Booking[]>([]);
  const [loadingList, setLoadingList] = useState(false);
  const [filterResource, setFilterResource] = useState('');
  const [filterDate, setFilterDate] = useState('');
  const [showCancelled, setShowCancelled] = useState(false);
  const [cancelling, setCancelling] = useState<string | null>(null);

  const nameOf = useCallback((id: string) => resources.find((r) => r.id === id)?.name ?? id, [resources]);

  const loadCatalogue = useCallback(async () => {
    setCatalogueError('');
    const r = await api.resources();
    if (r.ok) setResources(r.data);
    else setCatalogueError(describeProblem(r.problem));
  }, [api]);

  useEffect(() => {
    void loadCatalogue();
  }, [loadCatalogue]);

  const refreshAvailability = useCallback(async () => {
    const { signal, isLatest } = availability.current.begin();
    setAvailabilityError('');
    if (!isBookableDate(date, today)) {
      setAvailable(null);
      return;
    }
    setAvailable(null);
    const r = await api.available(date, { signal });
    if (!isLatest()) return; // an answer for a date no longer shown
    if (r.ok) setAvailable(r.data.availableResources);
    else setAvailabilityError(describeProblem(r.problem));
  }, [api, date, today]);

  const refreshBookings = useCallback(async () => {
    setLoadingList(true);
    const r = await api.listBookings(user, { resourceId: filterResource, date: filterDate, status: showCancelled ? 'all' : 'confirmed' });
    setLoadingList(false);
    if (r.ok) setBookings(r.data.bookings);
    else push('error', describeProblem(r.problem));
  }, [api, user, filterResource, filterDate, showCancelled, push]);

  useEffect(() => {
    setAvailable(null);
    // Typing a date changes it per keystroke: ask once it rests.
    const timer = setTimeout(() => void refreshAvailability(), DATE_DEBOUNCE_MS);
    return () => clearTimeout(timer);
  }, [refreshAvailability]);

  useEffect(() => {
    void refreshBookings();
  }, [refreshBookings]);

  // A change of the form is a new intent (a new key on the next submit).
  useEffect(() => {
    tracker.reset();
    setUnconfirmed(null);
  }, [tracker, user, date, resource]);

  useEffect(() => {
    // A room that is taken now cannot be chosen, unless it is the one of
    // an unconfirmed booking: it may be taken by that very booking.
    if (resource && available && !available.includes(resource) && !unconfirmed) setResource('');
  }, [available, resource, unconfirmed]);

  async function submit(payload: BookingPayload) {
    const what = `${nameOf(payload.resourceId)} on ${localDate(payload.date)}`;
    setSubmitting(true);
    setStatus('Booking…');
    const result = await tracker.submit(payload, { progress: (n, max) => setStatus(`No answer yet; retrying ${n}/${max}…`) });
    if (result.ok) {
      const note = result.replayed ? ' (your earlier request had already booked it)' : '';
      push(result.replayed ? 'info' : 'success', `Booked ${what}${note}.`);
      setUnconfirmed(null);
      setResource('');
    } else if (isDefinitive(result)) {
      push('error', `${what}: ${describeProblem(result.problem)}`);
      setUnconfirmed(null);
    } else {
      // No answer after every retry: the booking may exist. Ask the service
      // before saying anything; keep the key for a retry if it cannot say.
      setStatus('Checking whether the booking was made…');
      const found = await findBooking(api, payload);
      if (found) {
        tracker.reset();
        push('success', `Booked ${what} (confirmed after a network problem).`);
        setUnconfirmed(null);
        setResource('');
      } else {
        setUnconfirmed(payload);
      }
    }
    setSubmitting(false);
    setStatus('');
    await Promise.all([refreshAvailability(), refreshBookings()]);
  }

  async function book(e: React.FormEvent) {
    e.preventDefault();
    if (!resource || !isBookableDate(date, today)) return;
    await submit({ userId: user, resourceId: resource, date });
  }

  async function cancel(b: Booking) {
    if (!window.confirm(`Cancel ${nameOf(b.resourceId)} on ${localDate(b.date)}?`)) return;
    setCancelling(b.id);
    const result = await api.cancelBooking(b.id, user);
    setCancelling(null);
    if (result.ok) push('success', `Cancelled ${nameOf(b.resourceId)} on ${localDate(b.date)}.`);
    else push('error', describeProblem(result.problem));
    await Promise.all([refreshAvailability(), refreshBookings()]);
  }

  return (
    <div className="app">
      <header>
        <h1>Room booking</h1>
        {authMode === 'jwt' ? (
          <label className="user">
            Bearer token{user ? ` (signed in as ${user})` : ''}
            <input
              type="password"
              value={token}
              autoComplete="off"
              placeholder="paste an access token"
              onChange={(e) => {
                setToken(e.target.value);
                credentials.bearer = e.target.value.trim();
                setUser(tokenSubject(e.target.value.trim()) ?? '');
              }}
            />
          </label>
        ) : (
          <label className="user">
            Signed in as{authMode === 'dev' ? ' (demo token)' : ''}
            <select value={user} onChange={(e) => setUser(e.target.value)} aria-label="User">
              {DEMO_USERS.map((u) => (
                <option key={u} value={u}>
                  {u}
                </option>
              ))}
            </select>
          </label>
        )}
      </header>

      <main>
        <section aria-labelledby="book-heading" className="card">
          <h2 id="book-heading">Book a room</h2>
          <form onSubmit={book}>
            <label>
              Date
              <input type="date" value={date} min={today} onChange={(e) => setDate(e.target.value)} required name="date" />
            </label>
            {catalogueError && (
              <p className="inline-error" role="alert">
                The rooms could not be loaded: {catalogueError}{' '}
                <button type="button" className="secondary" onClick={() => void loadCatalogue()}>
                  Retry
                </button>
              </p>
            )}
            <fieldset disabled={!isBookableDate(date, today) || available === null}>
              <legend>Room {isBookableDate(date, today) ? `on ${localDate(date)}` : ''}</legend>
              {!isBookableDate(date, today) && <p className="muted">Choose a date from today on.</p>}
              {isBookableDate(date, today) && available === null && !availabilityError && <p className="muted">Loading availability…</p>}
              {availabilityError && (
                <p className="inline-error" role="alert">
                  Availability could not be loaded: {availabilityError}{' '}
                  <button type="button" className="secondary" onClick={() => void refreshAvailability()}>
                    Retry
                  </button>
                </p>
              )}
              <div className="rooms">
                {resources.map((r) => {
                  const taken = available !== null && !available.includes(r.id);
                  return (
                    <label key={r.id} className={`room ${taken ? 'taken' : ''} ${resource === r.id ? 'chosen' : ''}`}>
                      <input type="radio" name="resource" value={r.id} checked={resource === r.id} disabled={taken} onChange={() => setResource(r.id)} />
                      <span>{r.name}</span>
                      {taken && <span className="badge">booked</span>}
                    </label>
                  );
                })}
              </div>
            </fieldset>
            <button type="submit" disabled={submitting || !resource} aria-busy={submitting}>
              {submitting ? 'Booking…' : 'Book'}
            </button>
            <span className="muted" role="status">
              {status}
            </span>
            {unconfirmed && !submitting && (
              <div className="inline-error" role="alert" data-testid="unconfirmed">
                We could not confirm the booking of {nameOf(unconfirmed.resourceId)} on {localDate(unconfirmed.date)}: the service did not answer. It may
                have been made. Retrying sends the same request again and cannot book twice.{' '}
                <button type="button" onClick={() => void submit(unconfirmed)}>
                  Retry
                </button>
              </div>
            )}
          </form>
        </section>

        <section aria-labelledby="list-heading" className="card">
          <h2 id="list-heading">My bookings</h2>
          <div className="filters">
            <label>
              Room
              <select value={filterResource} onChange={(e) => setFilterResource(e.target.value)}>
                <option value="">All rooms</option>
                <ResourceOptions resources={resources} />
              </select>
            </label>
            <label>
              Date
              <input type="date" value={filterDate} onChange={(e) => setFilterDate(e.target.value)} />
            </label>
            <label className="inline">
              <input type="checkbox" checked={showCancelled} onChange={(e) => setShowCancelled(e.target.checked)} />
              Show cancelled
            </label>
          </div>
          {loadingList && <p className="muted">Loading…</p>}
          {!loadingList && bookings.length === 0 && <p className="muted">No bookings.</p>}
          <ul className="bookings" aria-label="Bookings">
            {bookings.map((b) => (
              <li key={b.id} className={b.status} data-booking-id={b.id}>
                <div>
                  <strong>{nameOf(b.resourceId)}</strong> · {localDate(b.date)}
                  <div className="muted small">
                    {b.status === 'cancelled' ? 'Cancelled' : 'Confirmed'} · booked {new Date(b.createdAt).toLocaleString()}
                  </div>
                </div>
                {b.status === 'confirmed' && (
                  <button type="button" className="secondary" onClick={() => cancel(b)} disabled={cancelling === b.id} aria-label={`Cancel ${nameOf(b.resourceId)} on ${localDate(b.date)}`}>
                    {cancelling === b.id ? 'Cancelling…' : 'Cancel'}
                  </button>
                )}
              </li>
            ))}
          </ul>
        </section>

        <RacePanel api={api} resources={resources} onDone={() => Promise.all([refreshAvailability(), refreshBookings()])} />
      </main>

      <div className="toasts" aria-live="polite">
        {toasts.map((t) => (
          <div key={t.id} className={`toast ${t.kind}`} role={t.kind === 'error' ? 'alert' : 'status'}>
            {t.text}
          </div>
        ))}
      </div>
    </div>
  );
}

function ResourceOptions({ resources }: { resources: Resource[] }) {
  return (
    <>
      {resources.map((r) => (
        <option key={r.id} value={r.id}>
          {r.name}
        </option>
      ))}
    </>
  );
}

type RaceRow = { n: number; user: string; key: string; result: ApiResult<{ booking: Booking }> };

/** Fires N concurrent requests for one slot and shows every answer and the final state. */
function RacePanel({ api, resources, onDone }: { api: BookingApi; resources: Resource[]; onDone: () => Promise<unknown> }) {
  const [count, setCount] = useState(5);
  const [mode, setMode] = useState<'same-key' | 'different-users'>('different-users');
  const [resource, setResource] = useState('room_C');
  const [date, setDate] = useState(() => isoDate(new Date(Date.now() + 14 * 86400000)));
  const [running, setRunning] = useState(false);
  const [rows, setRows] = useState<RaceRow[]>([]);
  const [confirmed, setConfirmed] = useState<number | null>(null);

  async function race() {
    setRunning(true);
    setRows([]);
    setConfirmed(null);
    const sharedKey = newIdempotencyKey();
    const racers = Array.from({ length: count }, (_, i) => ({
      n: i + 1,
      user: mode === 'same-key' ? 'user_alice' : `racer_${i + 1}`,
      key: mode === 'same-key' ? sharedKey : newIdempotencyKey(),
    }));
    // Credentials first (a token per racer under --auth dev), then one
    // attempt each, all at once: the raw answers are the point.
    const auths = await Promise.all(racers.map((r) => api.authHeaders(r.user)));
    const results = await Promise.all(
      racers.map((r, i) => api.once<{ booking: Booking }>('POST', '/api/bookings', { userId: r.user, resourceId: resource, date }, { 'Idempotency-Key': r.key, ...auths[i] })),
    );
    setRows(racers.map((r, i) => ({ ...r, result: results[i] })));
    const users = [...new Set(racers.map((r) => r.user))];
    const lists = await Promise.all(users.map((u) => api.listBookings(u, { resourceId: resource, date })));
    setConfirmed(lists.reduce((n, l) => n + (l.ok ? l.data.bookings.length : 0), 0));
    setRunning(false);
    await onDone();
  }

  return (
    <section aria-labelledby="race-heading" className="card race">
      <h2 id="race-heading">Race it</h2>
      <p className="muted">Fire several booking requests for one slot at the same moment and watch the guarantees hold.</p>
      <div className="filters">
        <label>
          Requests
          <input type="number" min={2} max={50} value={count} onChange={(e) => setCount(Math.max(2, Math.min(50, Number(e.target.value) || 2)))} />
        </label>
        <label>
          Mode
          <select value={mode} onChange={(e) => setMode(e.target.value as typeof mode)}>
            <option value="different-users">Different users, different keys</option>
            <option value="same-key">One user, one key (double click)</option>
          </select>
        </label>
        <label>
          Room
          <select value={resource} onChange={(e) => setResource(e.target.value)}>
            <ResourceOptions resources={resources} />
          </select>
        </label>
        <label>
          Date
          <input type="date" value={date} onChange={(e) => setDate(e.target.value)} />
        </label>
      </div>
      <button type="button" onClick={race} disabled={running} aria-busy={running}>
        {running ? 'Racing…' : `Race ${count} requests`}
      </button>
      {rows.length > 0 && (
        <table>
          <caption className="muted small">Answers</caption>
          <thead>
            <tr>
              <th>#</th>
              <th>User</th>
              <th>Answer</th>
              <th>Booking</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.n}>
                <td>{r.n}</td>
                <td>{r.user}</td>
                <td className={r.result.ok ? 'ok' : 'err'}>
                  {r.result.status || 'no answer'} {r.result.ok ? (r.result.replayed ? 'replayed' : 'created') : r.result.problem.code}
                </td>
                <td className="small">{r.result.ok ? r.result.data.booking.id.slice(0, 8) : ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {confirmed !== null && (
        <p className={`result ${confirmed === 1 ? 'ok' : 'err'}`} data-testid="race-result">
          Confirmed bookings for this slot: <strong>{confirmed}</strong>
        </p>
      )}
    </section>
  );
}
