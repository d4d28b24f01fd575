// End-to-end tests in a real browser: Debian's Chromium driven by
// playwright-core (no browser download), against a running `booking serve`
// that serves the built front end. BASE_URL names it; screenshots go to
// SCREENSHOT_DIR (default e2e/screenshots).
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import assert from 'node:assert/strict';

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
async function api(path) {
  const r = await fetch(`${base}${path}`, { headers: await authAs('user_alice') });
  return r.json();
}

const date = '2030-06-15';
const page = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
page.on('dialog', (d) => d.accept());

async function chooseDate(value) {
  await page.getByLabel('Date', { exact: true }).first().fill(value);
}

try {
  await page.goto(base);
  await page.getByRole('heading', { name: 'Room booking' }).waitFor();

  if (authMode === 'dev') {
    await step('the service refuses requests without a token', async () => {
      const r = await fetch(`${base}/api/bookings/user_alice`);
      assert.equal(r.status, 401);
    });
  }

  await step('book a room', async () => {
    await chooseDate(date);
    await page.getByRole('radio', { name: 'Conference Room A' }).check();
    await page.getByRole('button', { name: 'Book', exact: true }).click();
    await page.getByRole('status').filter({ hasText: 'Booked Conference Room A' }).waitFor();
    await page.locator('.bookings li', { hasText: 'Conference Room A' }).first().waitFor();
    await page.screenshot({ path: `${shots}/01-booked.png`, fullPage: true });
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
    await page.getByRole('button', { name: /^Cancel Conference Room A/ }).click();
    await page.getByRole('status').filter({ hasText: 'Cancelled Conference Room A' }).waitFor();
    await page.waitForFunction(() => document.querySelector('input[value="room_A"]')?.disabled === false);
    await page.screenshot({ path: `${shots}/02-cancelled.png`, fullPage: true });
  });

  await step('rebook the freed slot', async () => {
    await page.getByRole('radio', { name: 'Conference Room A' }).check();
    await page.getByRole('button', { name: 'Book', exact: true }).click();
    await page.getByRole('status').filter({ hasText: 'Booked Conference Room A' }).last().waitFor();
    const list = await api(`/api/bookings/user_alice?resourceId=room_A&date=${date}&status=all`);
    assert.deepEqual(list.bookings.map((b) => b.status).sort(), ['cancelled', 'confirmed']);
  });

  await step('the race panel shows exactly one confirmed booking', async () => {
    const race = page.locator('section.race');
    await race.getByLabel('Requests').fill('8');
    await race.getByLabel('Room').selectOption('room_C');
    await race.getByLabel('Date').fill('2030-07-01');
    await race.getByRole('button', { name: /^Race/ }).click();
    const result = page.getByTestId('race-result');
    await result.waitFor();
    assert.match(await result.innerText(), /Confirmed bookings for this slot: 1$/);
    const created = await race.locator('td.ok').count();
    assert.equal(created, 1, 'one 201 among 8 racers');
    const avail = await api('/api/resources/available?date=2030-07-01');
    assert.ok(!avail.availableResources.includes('room_C'));
    await page.screenshot({ path: `${shots}/03-race.png`, fullPage: true });
  });

  await step('same-key race: one booking, the rest replays or in progress', async () => {
    const race = page.locator('section.race');
    await race.getByLabel('Mode').selectOption('same-key');
    await race.getByLabel('Date').fill('2030-07-02');
    await race.getByRole('button', { name: /^Race/ }).click();
    await page.getByTestId('race-result').waitFor();
    assert.match(await page.getByTestId('race-result').innerText(), /: 1$/);
    const answers = await race.locator('tbody td:nth-child(3)').allInnerTexts();
    assert.ok(answers.every((a) => /created|replayed|IDEMPOTENCY_IN_PROGRESS/.test(a)), answers.join(', '));
  });

  await step('an error code is shown to the user', async () => {
    await page.getByLabel('User', { exact: true }).selectOption('user_bob');
    await chooseDate('2030-09-01');
    await page.getByRole('radio', { name: 'Conference Room B' }).check();
    // Someone else takes the slot after the form showed it free.
    const r = await fetch(`${base}/api/bookings`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...(await authAs('user_diana')) }, body: JSON.stringify({ userId: 'user_diana', resourceId: 'room_B', date: '2030-09-01' }) });
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
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `no horizontal scrolling (overflow ${overflow}px)`);
    await phone.screenshot({ path: `${shots}/04-phone.png`, fullPage: true });
    await phone.close();
  });

  await step('keyboard: the form is usable without a mouse', async () => {
    await page.getByLabel('User', { exact: true }).selectOption('user_charlie');
    await chooseDate('2030-08-01');
    await page.getByRole('radio', { name: 'Conference Room D' }).focus();
    await page.keyboard.press('Space');
    await page.getByRole('button', { name: 'Book', exact: true }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('status').filter({ hasText: 'Booked Conference Room D' }).waitFor();
  });
} finally {
  await browser.close();
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
