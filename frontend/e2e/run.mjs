// End-to-end tests in a real browser: Debian's Chromium driven by
// playwright-core (no browser download), against a running `booking serve`
// that serves the built front end. BASE_URL names it; screenshots go to
// SCREENSHOT_DIR (default e2e/screenshots).
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const axeSource = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
/** axe-core on the page as it is now: no violation of any rule it checks. */
async function accessible(p, state) {
  await p.addScriptTag({ path: axeSource });
  const found = await p.evaluate(async () => (await window.axe.run(document, { resultTypes: ['violations'] })).violations.map((v) => `${v.id} (${v.nodes.length}): ${v.help} at ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`));
  assert.deepEqual(found, [], `axe-core, ${state}:\n  ${found.join('\n  ')}`);
}

const base = process.env.BASE_URL;
if (!base) {
  console.error('BASE_URL is required (a running `booking serve --static-dir frontend/dist`)');
  process.exit(2);
}
const shots = process.env.SCREENSHOT_DIR ?? 'e2e/screenshots';
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

let passed = 0;
let failed = 0;
async function step(name, fn) {
  try {
    await fn();
    passed += 1;
    console.log(`ok - ${name}`);
  } catch (e) {
    failed += 1;
    console.log(`not ok - ${name}\n  ${String(e?.stack ?? e).split('\n').join('\n  ')}`);
  }
}

// Under `--auth dev` the test reads Alice's bookings with her own token.
const authMode = (await (await fetch(`${base}/api/auth/config`)).json()).mode;
console.log(`# auth mode: ${authMode}`);
async function authAs(userId) {
  if (authMode !== 'dev') return {};
  const minted = await fetch(`${base}/api/auth/dev-token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ userId }),
  });
  return { Authorization: `Bearer ${(await minted.json()).token}` };
}
async function apiAs(userId, path) {
  const r = await fetch(`${base}${path}`, { headers: await authAs(userId) });
  return r.json();
}
const api = (path) => apiAs('user_alice', path);

// Dates of this run: a window of its own far in the future, so the suite
// passes against a database that already holds earlier runs' bookings.
const runStart = Date.UTC(2031, 0, 1) + Math.floor(Math.random() * 20_000) * 86_400_000;
const D = (offset) => new Date(runStart + offset * 86_400_000).toISOString().slice(0, 10);
console.log(`# dates from ${D(0)}`);
const date = D(0);
const page = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
page.on('dialog', (d) => d.accept());

async function chooseDate(value) {
  await page.getByLabel('Date', { exact: true }).first().fill(value);
}
// Availability is asked for once the date rests; until it answers the rooms are disabled.
const roomsReady = () => page.waitForFunction(() => document.querySelector('input[value="room_D"]') && !document.querySelector('fieldset')?.disabled);

try {
  await page.goto(base);
  await page.getByRole('heading', { name: 'Room booking' }).waitFor();

  if (authMode === 'dev') {
    await step('the service refuses requests without a token', async () => {
      const r = await fetch(`${base}/api/bookings/user_alice`);
      assert.equal(r.status, 401);
    });
  }

  await step('no accessibility violation on first load', async () => {
    await page.getByRole('radio', { name: 'Conference Room A' }).waitFor();
    await accessible(page, 'first load');
  });

  await step('book a room', async () => {
    await chooseDate(date);
    await page.getByRole('radio', { name: 'Conference Room A' }).check();
    await page.getByRole('button', { name: 'Book', exact: true }).click();
    await page.getByTestId('last-result').filter({ hasText: 'Booked Conference Room A' }).waitFor();
    await page.locator('.bookings li', { hasText: 'Conference Room A' }).first().waitFor();
    await page.screenshot({ path: `${shots}/01-booked.png`, fullPage: true });
    // Focus moved to the outcome (the Book button's room is no longer chosen).
    assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('data-testid')), 'last-result');
  });

  await step('the week at a glance shows the booking as yours, and a free cell fills the form', async () => {
    const week = page.getByTestId('week');
    await week.locator(`td[data-cell="${date}/room_A"]`).filter({ hasText: 'yours' }).waitFor();
    await week.locator(`td[data-cell="${date}/room_D"] button`).click();
    await page.waitForFunction(() => document.querySelector('input[value="room_D"]')?.checked === true);
    await page.getByRole('radio', { name: 'Conference Room D' }).uncheck().catch(() => {});
  });

  await step('no accessibility violation on the page with a booking', async () => {
    await accessible(page, 'after a booking');
  });

  await step('the booked slot is shown and disabled', async () => {
    const roomA = page.getByRole('radio', { name: 'Conference Room A' });
    await page.waitForFunction(() => document.querySelector('input[value="room_A"]')?.disabled === true);
    assert.equal(await roomA.isDisabled(), true);
    assert.ok(await page.locator('.room.taken', { hasText: 'Conference Room A' }).isVisible());
  });

  await step('a double click makes one booking', async () => {
    await page.getByRole('radio', { name: 'Conference Room B' }).check();
    await page.getByRole('button', { name: 'Book', exact: true }).dblclick();
    await page.locator('.bookings li', { hasText: 'Conference Room B' }).first().waitFor();
    await page.waitForTimeout(500);
    const list = await api(`/api/bookings/user_alice?resourceId=room_B&date=${date}&status=all`);
    assert.equal(list.bookings.length, 1, JSON.stringify(list));
  });

  await step('cancel, and the slot is free again', async () => {
    // This run's booking (the list may hold earlier runs' bookings of room A).
    const mine = await api(`/api/bookings/user_alice?resourceId=room_A&date=${date}`);
    assert.equal(mine.bookings.length, 1, JSON.stringify(mine));
    // A user with many bookings narrows the list to the date.
    await page.getByLabel('Filter by date').fill(date);
    await page.locator(`li[data-booking-id="${mine.bookings[0].id}"]`).getByRole('button', { name: /^Cancel Conference Room A/ }).click();
    const dialog = page.getByRole('dialog', { name: /^Cancel Conference Room A/ });
    await dialog.waitFor();
    await accessible(page, 'the cancel dialog');
    await dialog.getByRole('button', { name: 'Yes, cancel it' }).click();
    await page.getByTestId('last-result').filter({ hasText: 'Cancelled Conference Room A' }).waitFor();
    await page.getByLabel('Filter by date').fill('');
    await page.waitForFunction(() => document.querySelector('input[value="room_A"]')?.disabled === false);
    await page.screenshot({ path: `${shots}/02-cancelled.png`, fullPage: true });
  });

  await step('rebook the freed slot', async () => {
    await page.getByRole('radio', { name: 'Conference Room A' }).check();
    await page.getByRole('button', { name: 'Book', exact: true }).click();
    await page.getByTestId('last-result').filter({ hasText: 'Booked Conference Room A' }).waitFor();
    const list = await api(`/api/bookings/user_alice?resourceId=room_A&date=${date}&status=all`);
    assert.deepEqual(list.bookings.map((b) => b.status).sort(), ['cancelled', 'confirmed']);
    // Cancelled bookings, shown, must be as readable as the rest.
    await page.getByLabel('Show cancelled').check();
    await page.locator('.bookings li.cancelled').first().waitFor();
    await accessible(page, 'with cancelled bookings shown');
    await page.getByLabel('Show cancelled').uncheck();
  });

  await step('the race panel shows exactly one confirmed booking', async () => {
    const race = page.locator('section.race');
    await race.getByLabel('Requests').fill('8');
    await race.getByLabel('Race room').selectOption('room_C');
    await race.getByLabel('Race date').fill(D(16));
    await race.getByRole('button', { name: /^Race/ }).click();
    const result = page.getByTestId('race-result');
    await result.waitFor();
    assert.match(await result.innerText(), /Confirmed bookings for this slot: 1$/);
    const created = await race.locator('td.ok').count();
    assert.equal(created, 1, 'one 201 among 8 racers');
    const avail = await api(`/api/resources/available?date=${D(16)}`);
    assert.ok(!avail.availableResources.includes('room_C'));
    await page.screenshot({ path: `${shots}/03-race.png`, fullPage: true });
  });

  await step('same-key race: one booking, the rest replays or in progress', async () => {
    const race = page.locator('section.race');
    await race.getByLabel('Mode').selectOption('same-key');
    await race.getByLabel('Race date').fill(D(17));
    await race.getByRole('button', { name: /^Race/ }).click();
    await page.getByTestId('race-result').waitFor();
    assert.match(await page.getByTestId('race-result').innerText(), /: 1$/);
    const answers = await race.locator('tbody td:nth-child(3)').allInnerTexts();
    assert.ok(answers.every((a) => /created|replayed|IDEMPOTENCY_IN_PROGRESS/.test(a)), answers.join(', '));
  });

  await step('an error code is shown to the user', async () => {
    await page.getByLabel('Signed in as').selectOption('user_bob');
    await chooseDate(D(78));
    await page.getByRole('radio', { name: 'Conference Room B' }).check();
    // Someone else takes the slot after the form showed it free.
    const r = await fetch(`${base}/api/bookings`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...(await authAs('user_diana')) }, body: JSON.stringify({ userId: 'user_diana', resourceId: 'room_B', date: D(78) }) });
    assert.equal(r.status, 201);
    await page.getByRole('button', { name: 'Book', exact: true }).click();
    await page.getByRole('alert').filter({ hasText: 'Someone already booked this room for that date.' }).waitFor();
    await page.waitForFunction(() => document.querySelector('input[value="room_B"]')?.disabled === true);
    await page.screenshot({ path: `${shots}/05-already-booked.png`, fullPage: true });
  });

  await step('phone layout', async () => {
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true });
    await phone.goto(base);
    await phone.getByRole('heading', { name: 'Room booking' }).waitFor();
    await phone.getByRole('radio', { name: 'Conference Room A' }).waitFor();
    await accessible(phone, 'the phone layout');
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `no horizontal scrolling (overflow ${overflow}px)`);
    await phone.screenshot({ path: `${shots}/04-phone.png`, fullPage: true });
    await phone.close();
  });

  await step('keyboard: the form is usable without a mouse', async () => {
    await page.getByLabel('Signed in as').selectOption('user_charlie');
    await chooseDate(D(47));
    await roomsReady();
    await page.getByRole('radio', { name: 'Conference Room D' }).focus();
    await page.keyboard.press('Space');
    await page.getByRole('button', { name: 'Book', exact: true }).focus();
    await page.keyboard.press('Enter');
    await page.getByTestId('last-result').filter({ hasText: 'Booked Conference Room D' }).waitFor();
  });

  // --- under failing networks (request interception) ----------------------
  async function bookDirect(userId, resourceId, day) {
    const r = await fetch(`${base}/api/bookings`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...(await authAs(userId)) }, body: JSON.stringify({ userId, resourceId, date: day }) });
    assert.equal(r.status, 201);
  }

  await step('a late answer for the previous date never shows under the new one', async () => {
    const [d1, d2] = [D(200), D(201)];
    await bookDirect('user_diana', 'room_A', d2);
    const slow = `**/api/resources/available?date=${d1}`;
    await page.route(slow, async (route) => {
      await new Promise((r) => setTimeout(r, 1500));
      await route.continue().catch(() => {}); // aborted by the newer request: fine
    });
    await chooseDate(d1);
    await page.waitForTimeout(450); // past the debounce: d1's request is in flight
    await chooseDate(d2);
    await page.waitForFunction(() => document.querySelector('input[value="room_A"]')?.disabled === true);
    await page.waitForTimeout(1600); // d1's answer (room A free) would arrive now
    assert.equal(await page.getByRole('radio', { name: 'Conference Room A' }).isDisabled(), true);
    await page.unroute(slow);
  });

  await step('every answer lost after the commit: the app finds the booking instead of reporting a failure', async () => {
    const day = D(210);
    await chooseDate(day);
    await roomsReady();
    let sent = 0;
    await page.route('**/api/bookings', async (route) => {
      if (route.request().method() !== 'POST') return route.continue();
      sent += 1;
      await route.fetch(); // the service books and answers; the answer is lost
      await route.abort('connectionreset');
    });
    await page.getByRole('radio', { name: 'Conference Room B' }).check();
    await page.getByRole('button', { name: 'Book', exact: true }).click();
    await page.getByTestId('last-result').filter({ hasText: 'confirmed after a network problem' }).waitFor({ timeout: 30_000 });
    await page.unroute('**/api/bookings');
    assert.ok(sent >= 2, `retried with its key (${sent} attempts)`);
    const list = await apiAs('user_charlie', `/api/bookings/user_charlie?resourceId=room_B&date=${day}&status=all`);
    assert.equal(list.bookings.length, 1, JSON.stringify(list));
    assert.equal(await page.getByTestId('unconfirmed').count(), 0);
  });

  await step('an outage during a booking: "could not confirm", then Retry books once with the same key', async () => {
    const day = D(220);
    await chooseDate(day);
    await roomsReady();
    const keys = [];
    await page.route('**/api/bookings', async (route) => {
      if (route.request().method() !== 'POST') return route.continue();
      keys.push(route.request().headers()['idempotency-key']);
      await route.abort('connectionrefused');
    });
    await page.getByRole('radio', { name: 'Conference Room C' }).check();
    await page.getByRole('button', { name: 'Book', exact: true }).click();
    const unconfirmed = page.getByTestId('unconfirmed');
    await unconfirmed.waitFor({ timeout: 30_000 });
    assert.match(await unconfirmed.innerText(), /could not confirm the booking of Conference Room C/);
    await page.screenshot({ path: `${shots}/06-unconfirmed.png`, fullPage: true });
    await accessible(page, 'a booking that could not be confirmed');
    await page.unroute('**/api/bookings');
    const retried = [];
    page.on('request', (r) => {
      if (r.method() === 'POST' && r.url().endsWith('/api/bookings')) retried.push(r.headers()['idempotency-key']);
    });
    await unconfirmed.getByRole('button', { name: 'Retry' }).click();
    await page.getByTestId('last-result').filter({ hasText: 'Booked Conference Room C' }).waitFor({ timeout: 15_000 });
    assert.ok(keys.length >= 2 && new Set([...keys, ...retried]).size === 1, `one key throughout: ${[...keys, ...retried]}`);
    const list = await apiAs('user_charlie', `/api/bookings/user_charlie?resourceId=room_C&date=${day}&status=all`);
    assert.equal(list.bookings.length, 1, JSON.stringify(list));
  });

  await step('a failed catalogue load says so and recovers on Retry', async () => {
    const fresh = await browser.newPage();
    await fresh.route('**/api/resources', (route) =>
      route.fulfill({ status: 503, contentType: 'application/problem+json', body: JSON.stringify({ success: false, status: 503, code: 'DEPENDENCY_UNAVAILABLE', detail: 'down', error: 'down' }) }),
    );
    await fresh.goto(base);
    const alert = fresh.getByRole('alert').filter({ hasText: 'The rooms could not be loaded' });
    await alert.waitFor({ timeout: 30_000 });
    await fresh.unroute('**/api/resources');
    await alert.getByRole('button', { name: 'Retry' }).click();
    await fresh.getByRole('radio', { name: 'Conference Room A' }).waitFor();
    await fresh.close();
  });
} finally {
  await browser.close();
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
