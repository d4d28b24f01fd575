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
  const dismiss = useCallback((id: number) => setToasts((t) => t.filter((x) => x.id !== id)), []);
  const push = useCallback(
    (kind: Toast['kind'], text: string) => {
      const id = next.current++;
      // One outage, one message: a toast already showing is not repeated.
      setToasts((t) => (t.some((x) => x.text === text) ? t : [...t.slice(-3), { id, kind, text }]));
      // An error stays until it is dismissed: it must not vanish before it is read.
      if (kind !== 'error') setTimeout(() => dismiss(id), 6000);
    },
    [dismiss],
  );
  const clear = useCallback(() => setToasts([]), []);
  return { toasts, push, dismiss, clear };
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
  const { toasts, push, dismiss, clear } = useToasts();
  /** The last action's outcome; focus moves here after Book and Cancel (their buttons may disappear). */
  const [result, setResult] = useState({ text: '', seq: 0 });
  const resultRef = useRef<HTMLParagraphElement>(null);
  const announce = useCallback(
    (kind: Toast['kind'], text: string) => {
      push(kind, text);
      setResult((r) => ({ text, seq: r.seq + 1 }));
    },
    [push],
  );
  // Once the outcome is on the page (not before: an empty region is hidden).
  useEffect(() => {
    if (result.seq > 0) resultRef.current?.focus();
  }, [result.seq]);
  /** The booking a cancel waits to be confirmed for (an accessible dialog, not window.confirm). */
  const [confirming, setConfirming] = useState<Booking | null>(null);
  const dialogRef = useRef<HTMLDialogElement>(null);
  const [showAllUpcoming, setShowAllUpcoming] = useState(false);
  /** Bumped whenever bookings may have changed (the week view reloads). */
  const [version, setVersion] = useState(0);

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

  // Messages about another user's bookings do not outlive the change of user.
  useEffect(() => {
    clear();
    setResult((r) => ({ text: '', seq: r.seq }));
  }, [user, clear]);

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
      announce(result.replayed ? 'info' : 'success', `Booked ${what}${note}.`);
      setUnconfirmed(null);
      setResource('');
    } else if (isDefinitive(result)) {
      announce('error', `${what}: ${describeProblem(result.problem)}`);
      setUnconfirmed(null);
    } else {
      // No answer after every retry: the booking may exist. Ask the service
      // before saying anything; keep the key for a retry if it cannot say.
      setStatus('Checking whether the booking was made…');
      const found = await findBooking(api, payload);
      if (found) {
        tracker.reset();
        announce('success', `Booked ${what} (confirmed after a network problem).`);
        setUnconfirmed(null);
        setResource('');
      } else {
        setUnconfirmed(payload);
      }
    }
    setSubmitting(false);
    setStatus('');
    setVersion((v) => v + 1);
    await Promise.all([refreshAvailability(), refreshBookings()]);
  }

  async function book(e: React.FormEvent) {
    e.preventDefault();
    if (!resource || !isBookableDate(date, today)) return;
    await submit({ userId: user, resourceId: resource, date });
  }

  function askToCancel(b: Booking) {
    setConfirming(b);
    requestAnimationFrame(() => dialogRef.current?.showModal());
  }

  async function cancel(b: Booking) {
    dialogRef.current?.close();
    setConfirming(null);
    const what = `${nameOf(b.resourceId)} on ${localDate(b.date)}`;
    setCancelling(b.id);
    const result = await api.cancelBooking(b.id, user);
    setCancelling(null);
    if (result.ok) announce('success', `Cancelled ${what}.`);
    else announce('error', `${what}: ${describeProblem(result.problem)}`);
    setVersion((v) => v + 1);
    await Promise.all([refreshAvailability(), refreshBookings()]);
  }

  const upcoming = bookings.filter((b) => b.date >= today).sort((a, b) => a.date.localeCompare(b.date) || a.createdAt.localeCompare(b.createdAt));
  const past = bookings.filter((b) => b.date < today).sort((a, b) => b.date.localeCompare(a.date));
  const shownUpcoming = showAllUpcoming ? upcoming : upcoming.slice(0, UPCOMING_PAGE);

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
            <select value={user} onChange={(e) => setUser(e.target.value)}>
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
            {catalogueError && <LoadError what="The rooms" problem={catalogueError} onRetry={loadCatalogue} />}
            <fieldset disabled={!isBookableDate(date, today) || available === null}>
              <legend>Room {isBookableDate(date, today) ? `on ${localDate(date)}` : ''}</legend>
              {!isBookableDate(date, today) && <p className="muted">Choose a date from today on.</p>}
              {isBookableDate(date, today) && available === null && !availabilityError && <p className="muted">Loading availability…</p>}
              {availabilityError && <LoadError what="Availability" problem={availabilityError} onRetry={refreshAvailability} />}
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
            <button type="submit" disabled={submitting || !resource} aria-busy={submitting} aria-describedby="book-hint">
              {submitting ? 'Booking…' : 'Book'}
            </button>
            {!resource && !submitting && (
              <span id="book-hint" className="muted small">
                {' '}
                Choose a free room to book.
              </span>
            )}
            <span className="muted" role="status">
              {status}
            </span>
            <p className="result" ref={resultRef} tabIndex={-1} data-testid="last-result">
              {result.text}
            </p>
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
              Filter by room
              <select value={filterResource} onChange={(e) => setFilterResource(e.target.value)}>
                <option value="">All rooms</option>
                <ResourceOptions resources={resources} />
              </select>
            </label>
            <label>
              Filter by date
              <input type="date" value={filterDate} onChange={(e) => setFilterDate(e.target.value)} />
            </label>
            <label className="inline">
              <input type="checkbox" checked={showCancelled} onChange={(e) => setShowCancelled(e.target.checked)} />
              Show cancelled
            </label>
          </div>
          {loadingList && <p className="muted">Loading…</p>}
          {!loadingList && bookings.length === 0 && <p className="muted">No bookings.</p>}
          {upcoming.length > 0 && <h3 className="small">Upcoming</h3>}
          <ul className="bookings" aria-label="Upcoming bookings">
            {shownUpcoming.map((b) => (
              <BookingItem key={b.id} b={b} nameOf={nameOf} cancelling={cancelling} onCancel={askToCancel} />
            ))}
          </ul>
          {upcoming.length > shownUpcoming.length && (
            <button type="button" className="secondary neutral" onClick={() => setShowAllUpcoming(true)}>
              Show {upcoming.length - shownUpcoming.length} more
            </button>
          )}
          {past.length > 0 && (
            <details className="past">
              <summary>Past bookings ({past.length})</summary>
              <ul className="bookings" aria-label="Past bookings">
                {past.map((b) => (
                  <BookingItem key={b.id} b={b} nameOf={nameOf} cancelling={cancelling} onCancel={askToCancel} />
                ))}
              </ul>
            </details>
          )}
        </section>

        <WeekView
          api={api}
          resources={resources}
          user={user}
          around={isBookableDate(date, today) ? date : today}
          today={today}
          version={version}
          onPick={(day, room) => {
            setDate(day);
            setResource(room);
          }}
        />

        <RacePanel
          api={api}
          resources={resources}
          onDone={() => {
            setVersion((v) => v + 1);
            return Promise.all([refreshAvailability(), refreshBookings()]);
          }}
        />
      </main>

      <dialog ref={dialogRef} aria-labelledby="cancel-heading" onClose={() => setConfirming(null)}>
        {confirming && (
          <form method="dialog">
            <h2 id="cancel-heading">
              Cancel {nameOf(confirming.resourceId)} on {localDate(confirming.date)}?
            </h2>
            <p>The room becomes free for others to book.</p>
            <div className="dialog-buttons">
              <button type="button" onClick={() => void cancel(confirming)}>
                Yes, cancel it
              </button>
              <button type="submit" className="secondary neutral" autoFocus>
                Keep it
              </button>
            </div>
          </form>
        )}
      </dialog>

      <div className="toasts" aria-live="polite">
        {toasts.map((t) => (
          <div key={t.id} className={`toast ${t.kind}`} role={t.kind === 'error' ? 'alert' : 'status'}>
            {t.text}
            {t.kind === 'error' && (
              <button type="button" className="dismiss" aria-label="Dismiss" onClick={() => dismiss(t.id)}>
                ×
              </button>
            )}
          </div>
        ))}
      </div>
    </div>
  );
}

/** Monday of the week of `day` (YYYY-MM-DD), as YYYY-MM-DD. */
function mondayOf(day: string): string {
  const [y, m, d] = day.split('-').map(Number);
  const date = new Date(Date.UTC(y, m - 1, d));
  date.setUTCDate(date.getUTCDate() - ((date.getUTCDay() + 6) % 7));
  return date.toISOString().slice(0, 10);
}

function addDays(day: string, n: number): string {
  const [y, m, d] = day.split('-').map(Number);
  return new Date(Date.UTC(y, m - 1, d + n)).toISOString().slice(0, 10);
}

type Cell = 'free' | 'booked' | 'yours' | 'past';

/**
 * Availability at a glance: rooms × the days of one week, free, booked or
 * yours. It follows the booking form's date and can be moved by week; a
 * free cell fills the form. Requests for a week that is no longer shown
 * are aborted and their answers ignored.
 */
function WeekView({ api, resources, user, around, today, version, onPick }: { api: BookingApi; resources: Resource[]; user: string; around: string; today: string; version: number; onPick: (day: string, room: string) => void }) {
  const [monday, setMonday] = useState(() => mondayOf(around));
  useEffect(() => setMonday(mondayOf(around)), [around]);
  const days = useMemo(() => Array.from({ length: 7 }, (_, i) => addDays(monday, i)), [monday]);
  const [cells, setCells] = useState<Record<string, Cell> | null>(null);
  const [error, setError] = useState('');
  const latest = useRef(new Latest());

  const load = useCallback(async () => {
    const { signal, isLatest } = latest.current.begin();
    setCells(null);
    setError('');
    const future = days.filter((d) => d >= today);
    const [answers, mine] = await Promise.all([
      Promise.all(future.map((d) => api.available(d, { signal }))),
      user ? api.listBookings(user, { status: 'confirmed' }) : Promise.resolve(null),
    ]);
    if (!isLatest()) return;
    const failed = answers.find((a) => !a.ok);
    if (failed && !failed.ok) {
      setError(describeProblem(failed.problem));
      return;
    }
    const yours = new Set(mine && mine.ok ? mine.data.bookings.map((b) => `${b.date}/${b.resourceId}`) : []);
    const next: Record<string, Cell> = {};
    for (const d of days) {
      const i = future.indexOf(d);
      const answer = i >= 0 ? answers[i] : undefined;
      for (const r of resources) {
        const key = `${d}/${r.id}`;
        if (!answer || !answer.ok) next[key] = 'past';
        else if (answer.data.availableResources.includes(r.id)) next[key] = 'free';
        else next[key] = yours.has(key) ? 'yours' : 'booked';
      }
    }
    setCells(next);
  }, [api, days, resources, today, user]);

  useEffect(() => {
    void load();
  }, [load, version]);

  const label = (d: string) => new Date(`${d}T00:00:00`).toLocaleDateString(undefined, { weekday: 'short', day: 'numeric', month: 'short' });
  return (
    <section aria-labelledby="week-heading" className="card week">
      <h2 id="week-heading">Week at a glance</h2>
      <div className="week-nav">
        <button type="button" className="secondary neutral" onClick={() => setMonday(addDays(monday, -7))} disabled={monday <= mondayOf(today)}>
          Previous week
        </button>
        <span className="muted">
          {localDate(days[0])} – {localDate(days[6])}
        </span>
        <button type="button" className="secondary neutral" onClick={() => setMonday(addDays(monday, 7))}>
          Next week
        </button>
      </div>
      {error && <LoadError what="The week" problem={error} onRetry={load} />}
      {!error && cells === null && <p className="muted">Loading the week…</p>}
      {cells && (
        <div className="week-scroll">
          <table data-testid="week">
            <caption className="muted small">Free rooms are buttons: choosing one fills the booking form.</caption>
            <thead>
              <tr>
                <th scope="col">Room</th>
                {days.map((d) => (
                  <th scope="col" key={d}>
                    {label(d)}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {resources.map((r) => (
                <tr key={r.id}>
                  <th scope="row">{r.name}</th>
                  {days.map((d) => {
                    const cell = cells[`${d}/${r.id}`];
                    return (
                      <td key={d} className={`cell ${cell}`} data-cell={`${d}/${r.id}`}>
                        {cell === 'free' ? (
                          <button type="button" className="secondary neutral" onClick={() => onPick(d, r.id)} aria-label={`free: book ${r.name} on ${localDate(d)}`}>
                            free
                          </button>
                        ) : cell === 'yours' ? (
                          'yours'
                        ) : cell === 'booked' ? (
                          'booked'
                        ) : (
                          '–'
                        )}
                      </td>
                    );
                  })}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

/** A load that failed, said where it happened, until Retry succeeds. */
function LoadError({ what, problem, onRetry }: { what: string; problem: string; onRetry: () => Promise<unknown> }) {
  return (
    <p className="inline-error" role="alert">
      {what} could not be loaded: {problem}{' '}
      <button type="button" className="secondary" onClick={() => void onRetry()}>
        Retry
      </button>
    </p>
  );
}

/** Upcoming bookings shown before "Show more". */
const UPCOMING_PAGE = 10;

function BookingItem({ b, nameOf, cancelling, onCancel }: { b: Booking; nameOf: (id: string) => string; cancelling: string | null; onCancel: (b: Booking) => void }) {
  return (
    <li className={b.status} data-booking-id={b.id}>
      <div>
        <strong>{nameOf(b.resourceId)}</strong> · {localDate(b.date)}
        <div className="small detail">
          {b.status === 'cancelled' ? 'Cancelled' : 'Confirmed'} · booked {new Date(b.createdAt).toLocaleString()}
        </div>
      </div>
      {b.status === 'confirmed' && (
        <button type="button" className="secondary" onClick={() => onCancel(b)} disabled={cancelling === b.id} aria-label={`Cancel ${nameOf(b.resourceId)} on ${localDate(b.date)}`}>
          {cancelling === b.id ? 'Cancelling…' : 'Cancel'}
        </button>
      )}
    </li>
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
/** Answers a race is expected to give besides one booking: shown as expected, not as failures. */
const EXPECTED_IN_A_RACE = new Set(['ALREADY_BOOKED', 'IDEMPOTENCY_IN_PROGRESS', 'RESOURCE_LOCKED']);

function RacePanel({ api, resources, onDone }: { api: BookingApi; resources: Resource[]; onDone: () => Promise<unknown> }) {
  // Typed freely; checked when the field is left (and before a race).
  const [countText, setCountText] = useState('5');
  const count = Math.max(2, Math.min(50, Math.round(Number(countText)) || 2));
  const [slotTaken, setSlotTaken] = useState<boolean | null>(null);
  const [mode, setMode] = useState<'same-key' | 'different-users'>('different-users');
  const [resource, setResource] = useState('room_C');
  const [date, setDate] = useState(() => isoDate(new Date(Date.now() + 14 * 86400000)));
  const [running, setRunning] = useState(false);
  const [rows, setRows] = useState<RaceRow[]>([]);
  const [confirmed, setConfirmed] = useState<number | null>(null);

  const today = isoDate(new Date());
  const dateOk = isBookableDate(date, today);

  async function race() {
    if (!dateOk) return;
    setCountText(String(count));
    setRunning(true);
    setRows([]);
    setConfirmed(null);
    setSlotTaken(null);
    const sharedKey = newIdempotencyKey();
    // Racers are the demo users (their bookings are visible and cancellable).
    const racers = Array.from({ length: count }, (_, i) => ({
      n: i + 1,
      user: mode === 'same-key' ? 'user_alice' : DEMO_USERS[i % DEMO_USERS.length],
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
    const availability = await api.available(date);
    setSlotTaken(availability.ok ? !availability.data.availableResources.includes(resource) : null);
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
          <input type="number" min={2} max={50} value={countText} onChange={(e) => setCountText(e.target.value)} onBlur={() => setCountText(String(count))} />
        </label>
        <label>
          Mode
          <select value={mode} onChange={(e) => setMode(e.target.value as typeof mode)}>
            <option value="different-users">Different users, different keys</option>
            <option value="same-key">One user, one key (double click)</option>
          </select>
        </label>
        <label>
          Race room
          <select value={resource} onChange={(e) => setResource(e.target.value)}>
            <ResourceOptions resources={resources} />
          </select>
        </label>
        <label>
          Race date
          <input type="date" value={date} min={today} onChange={(e) => setDate(e.target.value)} />
        </label>
      </div>
      <button type="button" onClick={race} disabled={running || !dateOk} aria-busy={running} aria-describedby="race-hint">
        {running ? 'Racing…' : `Race ${count} requests`}
      </button>
      {!dateOk && (
        <span id="race-hint" className="muted small">
          {' '}
          Choose a date from today on.
        </span>
      )}
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
                <td className={r.result.ok ? 'ok' : EXPECTED_IN_A_RACE.has(r.result.problem.code) ? 'expected' : 'err'}>
                  {r.result.status || 'no answer'} {r.result.ok ? (r.result.replayed ? 'replayed' : 'created') : r.result.problem.code}
                </td>
                <td className="small" title={r.result.ok ? r.result.data.booking.id : undefined}>
                  {r.result.ok ? `…${r.result.data.booking.id.slice(-12)}` : ''}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {confirmed !== null && (
        <p className={`result ${confirmed === 1 ? 'ok' : confirmed === 0 && slotTaken ? 'expected' : 'err'}`} data-testid="race-result">
          Confirmed bookings for this slot: <strong>{confirmed}</strong>
          {confirmed === 0 && slotTaken && ' (the slot was already booked before the race: every racer was refused, as it should be)'}
        </p>
      )}
    </section>
  );
}
