import { Browser, expect, Locator, Page, test } from "@playwright/test";
import { call, demoKnobs, FABRIKAM, knobs, pageAs, signIn } from "./demo";

// Fabrikam's operator: Contoso must stay without runs for backup_sets.spec.ts.
const TENANT = FABRIKAM;
/** Queues a run adding the first `n` policies to a new backup set; its id and the set's. */
async function queueRun(page: Page, n: number) {
  const set = await call(page, "backup-sets/create", {
    tenant: TENANT,
    name: `E2E cancel ${Date.now()}`,
    description: "",
  });
  const policies = await call(page, "policies/list", { tenant: TENANT, backup_set_id: String(set.id) });
  const ids = policies.rows.slice(0, n).map((row: { id: number }) => row.id);
  const run = await call(page, "runs/add-policies", {
    tenant: TENANT,
    backup_set_id: String(set.id),
    policy_ids: ids.join(","),
  });
  return { runId: run.run_id as number, setId: set.id as number };
}

test.beforeEach(async ({ page }) => {
  await signIn(page, "operator@fabrikam.example");
});

test.afterEach(async ({ page }) => {
  // The demo's own latency and no forced failures again, for the specs that follow.
  await demoKnobs(page);
});

test("cancel a slow run from its page: items not started end skipped, the toast says so", async ({ page }) => {
  test.setTimeout(90_000);
  // Each Graph answer takes 3 s: the run is still going whenever the test gets to cancel it.
  await knobs(page, { latency_ms: 3_000, latency_jitter_ms: 0 });
  const { runId } = await queueRun(page, 20);
  await page.goto(`/t/${TENANT}/runs/${runId}`);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await expect(page.getByTestId("run-status")).toHaveText(/Queued|Running/);

  await page.getByTestId("cancel-run").click();
  await expect(page.getByTestId("cancel-confirm")).toContainText(`Cancel run #${runId}?`);
  await page.getByRole("button", { name: "Yes, cancel run" }).click();

  await expect(page.getByTestId("toast").filter({ hasText: `Run #${runId} cancelled` })).toBeVisible();
  await expect(page.getByTestId("run-status")).toHaveText("Cancelled");
  await expect(page.getByTestId("processed")).toHaveText("20 / 20");
  await expect(page.getByTestId("cancel-run")).toHaveCount(0);
  // Most items never started; they are skipped as cancelled (the captures in flight finish).
  const detail = await call(page, "runs/get", { tenant: TENANT, id: String(runId), outcome: "skipped" });
  expect(detail.items.total).toBeGreaterThanOrEqual(12);
  expect(detail.items.rows.every((row: { reason_code: string }) => row.reason_code === "cancelled")).toBe(true);
});

test("cancel from the run panel of the backup set", async ({ page }) => {
  test.setTimeout(90_000);
  await knobs(page, { latency_ms: 3_000, latency_jitter_ms: 0 });
  const { runId, setId } = await queueRun(page, 20);
  await page.goto(`/t/${TENANT}/backup-sets/${setId}`);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  const row = page.getByTestId("run-row").filter({ hasText: `Run #${runId}` });
  await row.getByTestId("cancel-run").click();
  await row.getByRole("button", { name: "Yes, cancel run" }).click();
  await expect(page.getByTestId("toast").filter({ hasText: `Run #${runId} cancelled` })).toBeVisible();
  await expect(row).toHaveAttribute("data-status", "cancelled");
  // Announced once: the panel does not add its own "Cancelled: run #…" for a cancel made here.
  await expect(page.getByTestId("toast").filter({ hasText: `#${runId}` })).toHaveCount(1);
});

test("a run that ends while its \"Cancel run?\" is open in the run panel leaves the focus on its link", async ({
  page,
}) => {
  test.setTimeout(90_000);
  await knobs(page, { latency_ms: 3_000, latency_jitter_ms: 0 });
  const { runId, setId } = await queueRun(page, 20);
  await page.goto(`/t/${TENANT}/backup-sets/${setId}`);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  const row = page.getByTestId("run-row").filter({ hasText: `Run #${runId}` });
  await row.getByTestId("cancel-run").click();
  await expect(row.getByTestId("cancel-run-keep")).toBeFocused();
  // Graph answers quickly again: the run ends while the question is open.
  await knobs(page, { latency_ms: 30, latency_jitter_ms: 0 });
  await expect(row).toHaveAttribute("data-status", "completed", { timeout: 45_000 });
  await expect(row.getByTestId("cancel-confirm")).toHaveCount(0);
  await expect(row.getByRole("link", { name: `Run #${runId}` })).toBeFocused();
});

test("retry the failed items: the new run succeeds and the two run pages link to each other", async ({ page }) => {
  test.setTimeout(90_000);
  // Every capture fails (as if the policies were deleted), then Intune is back to normal.
  await knobs(page, { rate_404: 1 });
  const { runId } = await queueRun(page, 3);
  await page.goto(`/t/${TENANT}/runs/${runId}`);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await expect(page.getByTestId("run-status")).toHaveText("Failed", { timeout: 30_000 });
  await expect(page.getByTestId("failed")).toHaveText("3");
  await knobs(page, { rate_404: 0 });

  await page.getByRole("button", { name: "Retry 3 failed" }).click();
  const toast = page.getByTestId("toast").filter({ hasText: `(retry of run #${runId})` });
  await expect(toast).toBeVisible();
  const retryId = Number((await toast.textContent())?.match(/Run #(\d+)/)?.[1]);
  expect(retryId).toBeGreaterThan(runId);

  await page.getByTestId("retried-by").getByRole("link", { name: `run #${retryId}` }).click();
  await expect(page).toHaveURL(new RegExp(`/runs/${retryId}$`));
  await expect(page.getByTestId("run-status")).toHaveText("Succeeded", { timeout: 30_000 });
  await expect(page.getByTestId("succeeded")).toHaveText("3");
  await expect(page.getByTestId("retry-run")).toHaveCount(0);
  await page.getByTestId("retry-of").getByRole("link", { name: `run #${runId}` }).click();
  await expect(page).toHaveURL(new RegExp(`/runs/${runId}$`));
});

test("a throttled run says it is waiting for Microsoft Graph, then carries on", async ({ page }) => {
  test.setTimeout(90_000);
  // One request per 5 s window: the others get 429 with Retry-After up to 5 s, until the knob
  // is turned back.
  await knobs(page, { throttle_limit: 1, throttle_window_ms: 5_000, latency_ms: 30, latency_jitter_ms: 0 });
  const { runId } = await queueRun(page, 4);
  await page.goto(`/t/${TENANT}/runs/${runId}`);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await expect(page.getByTestId("graph-wait")).toContainText("Waiting for Microsoft Graph (throttled)", {
    timeout: 20_000,
  });
  await knobs(page, { throttle_limit: 1000, throttle_window_ms: 20_000 });
  await expect(page.getByTestId("run-status")).toHaveText("Succeeded", { timeout: 60_000 });
  await expect(page.getByTestId("graph-wait")).toHaveCount(0);
  await expect(page.getByTestId("graph-throttled")).toHaveText(/^[1-9]\d*$/);
});

test("an open \"Cancel run?\" in the run panel survives polls, keeps the focus and answers the keyboard", async ({
  page,
}) => {
  test.setTimeout(90_000);
  await knobs(page, { latency_ms: 3_000, latency_jitter_ms: 0 });
  const { runId, setId } = await queueRun(page, 20);
  await page.goto(`/t/${TENANT}/backup-sets/${setId}`);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  const row = page.getByTestId("run-row").filter({ hasText: `Run #${runId}` });
  await row.getByTestId("cancel-run").click();
  const confirm = row.getByTestId("cancel-confirm");
  await expect(confirm).toBeVisible();
  await expect(row.getByTestId("cancel-run-keep")).toBeFocused();
  // The panel polls every 1.5 s while the run is active: the question is still open after
  // several polls, and the focus is still on its safe answer.
  await page.waitForTimeout(4_000);
  await expect(row).toHaveAttribute("data-status", /pending|running/);
  await expect(confirm).toBeVisible();
  await expect(row.getByTestId("cancel-run-keep")).toBeFocused();
  // Escape closes it and gives the focus back to "Cancel run".
  await page.keyboard.press("Escape");
  await expect(confirm).toHaveCount(0);
  await expect(row.getByTestId("cancel-run")).toBeFocused();
  // Enter opens it again with "Keep running" focused: a second Enter keeps the run. Opened
  // once more, Shift+Tab reaches "Yes, cancel run" (the answer before it) and Enter cancels.
  await page.keyboard.press("Enter");
  await expect(row.getByTestId("cancel-run-keep")).toBeFocused();
  await page.keyboard.press("Enter");
  await expect(confirm).toHaveCount(0);
  await expect(row).toHaveAttribute("data-status", /pending|running/);
  await expect(row.getByTestId("cancel-run")).toBeFocused();
  await page.keyboard.press("Enter");
  await expect(row.getByTestId("cancel-run-keep")).toBeFocused();
  await page.keyboard.press("Shift+Tab");
  await expect(row.getByTestId("cancel-run-confirm")).toBeFocused();
  await page.keyboard.press("Enter");
  await expect(page.getByTestId("toast").filter({ hasText: `Run #${runId} cancelled` })).toBeVisible();
  await expect(row).toHaveAttribute("data-status", "cancelled");
});

test("a poll that fails does not stop the polling: the run page still shows the run's end", async ({ page }) => {
  test.setTimeout(90_000);
  await knobs(page, { latency_ms: 500, latency_jitter_ms: 0 });
  const { runId } = await queueRun(page, 6);
  // Every poll of the run fails until the route is lifted, as while the server restarts.
  let failed = 0;
  await page.route(/\/api\/runs\/version$/, (route) => {
    failed += 1;
    return route.abort();
  });
  await page.goto(`/t/${TENANT}/runs/${runId}`);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await expect(page.getByTestId("run-status")).toHaveText(/Queued|Running/);
  // Said quietly, beside the run last read (which stays).
  await expect(page.getByTestId("poll-trouble")).toBeVisible();
  await expect(page.getByTestId("poll-trouble")).toHaveAttribute("role", "status");
  await expect(page.getByTestId("run-status")).toHaveText(/Queued|Running/);
  await page.unroute(/\/api\/runs\/version$/);
  expect(failed).toBeGreaterThanOrEqual(1);
  await expect(page.getByTestId("run-status")).toHaveText("Succeeded", { timeout: 45_000 });
  await expect(page.getByTestId("poll-trouble")).toHaveCount(0);
});

test("a run panel poll that fails once is retried", async ({ page }) => {
  test.setTimeout(90_000);
  await knobs(page, { latency_ms: 500, latency_jitter_ms: 0 });
  const { runId, setId } = await queueRun(page, 6);
  let aborted = 0;
  await page.route(
    /\/api\/runs\/for-backup-set\/version$/,
    (route) => {
      aborted += 1;
      return route.abort();
    },
    { times: 1 },
  );
  await page.goto(`/t/${TENANT}/backup-sets/${setId}`);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  const row = page.getByTestId("run-row").filter({ hasText: `Run #${runId}` });
  await expect.poll(() => aborted, { timeout: 15_000 }).toBe(1);
  await expect(row).toHaveAttribute("data-status", "completed", { timeout: 45_000 });
  await expect(page.getByTestId("poll-trouble")).toHaveCount(0);
});

/**
 * Holds every cancel request before it reaches the server until `release()` is called (the run
 * page and the panel poll every 1.5 s meanwhile); `count` says how many were sent.
 */
async function heldCancels(page: Page) {
  let release = () => {};
  const released = new Promise<void>((resolve) => (release = resolve));
  const sent = { count: 0, release: () => release() };
  await page.route("**/api/runs/cancel", async (route) => {
    sent.count += 1;
    await released;
    await route.continue();
  });
  return sent;
}

/** A poll of the run page or the run panel: the version of what it shows. */
const POLL = /\/api\/runs\/(for-backup-set\/)?version$/;

/** Counts the polls the page sends from now on. */
function countPolls(page: Page) {
  const polls = { count: 0 };
  page.on("request", (request) => {
    if (POLL.test(request.url())) {
      polls.count += 1;
    }
  });
  return polls;
}

/**
 * Answers "Yes, cancel run" in `area` while the cancel is held, and checks that the polls in
 * between leave it pending (not offered again) and that its answer is announced.
 */
async function cancelThroughPolls(page: Page, area: Locator, runId: number) {
  const sent = await heldCancels(page);
  await area.getByTestId("cancel-run").click();
  await area.getByRole("button", { name: "Yes, cancel run" }).click();
  const polls = countPolls(page);
  // Polls answer while the cancel is held: the question stays pending, not offered again.
  await expect.poll(() => polls.count, { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
  expect(sent.count).toBe(1);
  await expect(area.getByTestId("cancel-run-confirm")).toBeDisabled();
  sent.release();
  await expect(page.getByTestId("toast").filter({ hasText: `Run #${runId} cancelled` })).toBeVisible();
  expect(sent.count).toBe(1);
}

test("a cancel on its way survives the run page's polls: still pending, then announced", async ({ page }) => {
  test.setTimeout(90_000);
  await knobs(page, { latency_ms: 3_000, latency_jitter_ms: 0 });
  const { runId } = await queueRun(page, 20);
  await page.goto(`/t/${TENANT}/runs/${runId}`);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await expect(page.getByTestId("run-status")).toHaveText(/Queued|Running/);
  await cancelThroughPolls(page, page.locator("main"), runId);
  await expect(page.getByTestId("run-status")).toHaveText("Cancelled");
});

test("a cancel on its way survives the run panel's polls: still pending, then announced", async ({ page }) => {
  test.setTimeout(90_000);
  await knobs(page, { latency_ms: 3_000, latency_jitter_ms: 0 });
  const { runId, setId } = await queueRun(page, 20);
  await page.goto(`/t/${TENANT}/backup-sets/${setId}`);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  const row = page.getByTestId("run-row").filter({ hasText: `Run #${runId}` });
  await expect(row).toHaveAttribute("data-status", /pending|running/);
  await cancelThroughPolls(page, row, runId);
  await expect(row).toHaveAttribute("data-status", "cancelled");
});

test("a cancel that fails after polls says why, on the run page", async ({ page }) => {
  test.setTimeout(90_000);
  await knobs(page, { latency_ms: 3_000, latency_jitter_ms: 0 });
  const { runId } = await queueRun(page, 20);
  // The cancel is lost on the way, 4 s after it was sent.
  await page.route("**/api/runs/cancel", async (route) => {
    await new Promise((resolve) => setTimeout(resolve, 4_000));
    await route.abort();
  });
  await page.goto(`/t/${TENANT}/runs/${runId}`);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await page.getByTestId("cancel-run").click();
  await page.getByRole("button", { name: "Yes, cancel run" }).click();
  await expect(page.locator(".cancel-run").getByRole("alert")).toContainText("Could not reach the server");
  await expect(page.getByTestId("run-status")).toHaveText(/Queued|Running/);
  // Cancel the run for good, so it does not hold the worker for the specs that follow.
  await call(page, "runs/cancel", { tenant: TENANT, id: String(runId) });
});

/** Makes a new account an operator of Fabrikam through an invitation; its page and user id. */
async function newOperator(browser: Browser, owner: Page) {
  const email = `e2e-removed-${Date.now()}@example.com`;
  const invited = await call(owner, "members/add", { tenant: TENANT, email, role: "operator" });
  const page = await (await browser.newContext()).newPage();
  await page.goto(invited.Invited.link);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await page.getByLabel("Your name").fill("Rem Oved");
  await page.getByLabel("Password", { exact: true }).fill("rem's long enough password");
  await page.getByLabel("Password again").fill("rem's long enough password");
  await page.getByRole("button", { name: "Create account and sign in" }).click();
  await expect(page).toHaveURL(new RegExp(`/t/${TENANT}/backup-sets$`));
  const members = await call(owner, "members/list", { tenant: TENANT });
  const userId = members.find((m: { email: string }) => m.email === email).user_id as number;
  return { page, userId };
}

/** Counts the polls (`poll`, by URL) of `page` that were sent after one was refused with `status`. */
function pollsAfterRefusal(page: Page, poll: RegExp = POLL, status = 403) {
  const seen = { refused: false, after: 0 };
  page.on("request", (request) => {
    if (seen.refused && poll.test(request.url())) {
      seen.after += 1;
    }
  });
  page.on("response", (response) => {
    if (poll.test(response.url()) && response.status() === status) {
      seen.refused = true;
    }
  });
  return seen;
}

test("a member removed while their run page and run panel are open: both say so and stop polling", async ({
  page,
  browser,
}) => {
  test.setTimeout(120_000);
  const owner = await pageAs(browser, "admin@contoso.example");
  const operator = await newOperator(browser, owner);
  await knobs(page, { latency_ms: 3_000, latency_jitter_ms: 0 });
  const { runId, setId } = await queueRun(page, 20);
  try {
    const runPage = operator.page;
    await runPage.goto(`/t/${TENANT}/runs/${runId}`);
    await expect(runPage.locator("body[data-hydrated]")).toHaveCount(1);
    await expect(runPage.getByTestId("run-status")).toHaveText(/Queued|Running/);
    await expect(runPage.getByTestId("cancel-run")).toBeVisible();
    await expect(runPage.getByTestId("download-csv")).toBeVisible();
    const panelPage = await runPage.context().newPage();
    await panelPage.goto(`/t/${TENANT}/backup-sets/${setId}`);
    await expect(panelPage.locator("body[data-hydrated]")).toHaveCount(1);
    const row = panelPage.getByTestId("run-row").filter({ hasText: `Run #${runId}` });
    await expect(row.getByTestId("cancel-run")).toBeVisible();
    const runPolls = pollsAfterRefusal(runPage);
    const panelPolls = pollsAfterRefusal(panelPage);

    await call(owner, "members/remove", { tenant: TENANT, user_id: String(operator.userId) });

    await expect(runPage.getByRole("alert").filter({ hasText: "not a member" }).first()).toBeVisible();
    await expect(runPage.getByTestId("run-status")).toHaveCount(0);
    await expect(runPage.getByTestId("cancel-run")).toHaveCount(0);
    await expect(runPage.getByTestId("download-csv")).toHaveCount(0);
    const panel = panelPage.getByTestId("run-panel");
    await expect(panel.getByRole("alert").filter({ hasText: "not a member" })).toBeVisible();
    await expect(panel.getByTestId("run-row")).toHaveCount(0);
    await expect(panel.getByTestId("poll-trouble")).toHaveCount(0);
    expect(runPolls.refused && panelPolls.refused).toBe(true);
    // A poll that failed is tried again after 3 s, then 6 s: none is, once refused.
    await runPage.waitForTimeout(5_000);
    expect(runPolls.after).toBe(0);
    expect(panelPolls.after).toBe(0);
  } finally {
    await operator.page.context().close();
    await owner.context().close();
    await call(page, "runs/cancel", { tenant: TENANT, id: String(runId) });
  }
});

/** A poll of a run button's row ("Capture now", "Sync from Intune", "Compare with Intune"). */
const ACTIVITY = /\/api\/runs\/activity$/;

/**
 * Starts "Capture now" on the last policy of the list while each Graph answer takes 5 s, and
 * waits until the row shows the run; the row and the run's id.
 */
/** A policy's page with Graph slowed to 5 s a request; its "Capture now" row. */
async function slowPolicy(page: Page) {
  await knobs(page, { latency_ms: 5_000, latency_jitter_ms: 0 });
  await page.goto(`/t/${TENANT}/policies`);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await page.getByTestId("policies-table").locator("tbody").getByRole("link").last().click();
  return page.getByTestId("capture-now");
}

async function slowCapture(page: Page) {
  const capture = await slowPolicy(page);
  await capture.getByRole("button", { name: "Capture now" }).click();
  const active = capture.getByTestId("run-active");
  await expect(active).toBeVisible();
  const runId = Number((await active.getByRole("link").textContent())?.match(/run #(\d+)/)?.[1]);
  expect(runId).toBeGreaterThan(0);
  return { capture, runId };
}

/**
 * Cancels run `runId` (it may have ended) with Graph at the demo's pace again, and waits until it
 * has settled: a capture in flight is still recorded after the cancel, and until then the
 * policy's Capture now stays disabled, which the next test would meet.
 */
async function cancelQuietly(page: Page, runId: number) {
  await demoKnobs(page);
  await page.request.post("/api/runs/cancel", {
    form: { tenant: TENANT, id: String(runId) },
    headers: { Origin: new URL(page.url()).origin },
  });
  await expect
    .poll(async () => (await call(page, "runs/get", { tenant: TENANT, id: String(runId) })).settled, { timeout: 60_000 })
    .toBe(true);
}

test("a run button's poll that fails for a passing reason keeps its row, with a quiet note", async ({ page }) => {
  test.setTimeout(90_000);
  const { capture, runId } = await slowCapture(page);
  // Polls that do not arrive (a server restart): the row stays, with a quiet note.
  await page.route(ACTIVITY, (route) => route.abort());
  await expect(capture.getByTestId("poll-trouble")).toBeVisible();
  await expect(capture.getByTestId("run-active")).toBeVisible();
  await expect(capture.getByRole("alert")).toHaveCount(0);
  await page.unroute(ACTIVITY);
  await cancelQuietly(page, runId);
});

test("a run button whose read after a start fails says so instead of the old row", async ({ page }) => {
  test.setTimeout(90_000);
  const capture = await slowPolicy(page);
  await expect(capture.getByTestId("run-active")).toHaveCount(0);
  // The start is answered; the reads after it do not arrive. The old row (no run, the button
  // enabled) would hide the run just started: the error shows while the reads are tried again.
  await page.route(ACTIVITY, (route) => route.abort());
  await capture.getByRole("button", { name: "Capture now" }).click();
  await expect(capture.getByRole("alert")).toBeVisible();
  await expect(capture.getByRole("button", { name: "Capture now" })).toHaveCount(0);
  await page.unroute(ACTIVITY);
  await page.reload();
  const active = capture.getByTestId("run-active");
  await expect(active).toBeVisible();
  const runId = Number((await active.getByRole("link").textContent())?.match(/run #(\d+)/)?.[1]);
  await cancelQuietly(page, runId);
});

test("a run button's poll stops once the user is signed out", async ({ page }) => {
  test.setTimeout(90_000);
  const { capture, runId } = await slowCapture(page);
  // Signed out (in another tab, say): the next poll is refused, and none follows it.
  const polls = pollsAfterRefusal(page, ACTIVITY, 401);
  await call(page, "auth/sign-out", {});
  try {
    await expect(capture.getByRole("alert")).toContainText("Please sign in.");
    await expect(capture.getByTestId("run-active")).toHaveCount(0);
    expect(polls.refused).toBe(true);
    // A poll that failed is tried again after 3 s, then 6 s: none is, once refused.
    await page.waitForTimeout(12_000);
    expect(polls.after).toBe(0);
  } finally {
    await signIn(page, "operator@fabrikam.example");
    await cancelQuietly(page, runId);
  }
});

test("the run page's polls leave the keyboard focus on an item's link", async ({ page }) => {
  test.setTimeout(90_000);
  await knobs(page, { latency_ms: 3_000, latency_jitter_ms: 0 });
  const { runId } = await queueRun(page, 20);
  try {
    await page.goto(`/t/${TENANT}/runs/${runId}`);
    await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
    await expect(page.getByTestId("run-status")).toHaveText(/Queued|Running/);
    const link = page.getByTestId("run-items").locator("tbody").getByRole("link").first();
    await link.focus();
    await expect(link).toBeFocused();
    // The page polls every 1.5 s while the run is going: two polls and more, focus kept.
    await page.waitForTimeout(4_000);
    await expect(page.getByTestId("run-status")).toHaveText(/Queued|Running/);
    await expect(link).toBeFocused();
  } finally {
    await call(page, "runs/cancel", { tenant: TENANT, id: String(runId) });
  }
});

test("a run button's polls leave the keyboard focus on its run's link", async ({ page }) => {
  test.setTimeout(90_000);
  const { capture, runId } = await slowCapture(page);
  try {
    const link = capture.getByTestId("run-active").getByRole("link");
    await link.focus();
    await expect(link).toBeFocused();
    await page.waitForTimeout(4_000);
    await expect(link).toBeFocused();
  } finally {
    await cancelQuietly(page, runId);
  }
});

test("a run button whose first read after a start fails reads again and reports the run's end", async ({ page }) => {
  test.setTimeout(90_000);
  await page.goto(`/t/${TENANT}/policies`);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  const sync = page.getByTestId("sync-inventory");
  const before = (await sync.getByTestId("run-last").count())
    ? await sync.getByTestId("run-last").getByRole("link").textContent()
    : null;
  // The read that follows the start does not arrive; the ones after do.
  await page.route(ACTIVITY, (route) => route.abort(), { times: 1 });
  await sync.getByRole("button", { name: "Sync from Intune" }).click();
  await expect(sync.getByTestId("run-last")).toContainText("Succeeded", { timeout: 30_000 });
  await expect(sync.getByTestId("run-last").getByRole("link")).not.toHaveText(before ?? "");
  await expect(page.getByTestId("toast").filter({ hasText: "Sync inventory" })).toBeVisible();
  await expect(sync.getByRole("alert")).toHaveCount(0);
});

test("a quick retry from the run panel is announced and its items are listed", async ({ page }) => {
  test.setTimeout(90_000);
  // The capture fails (as if the policy were deleted), then Intune is back to normal.
  await knobs(page, { rate_404: 1, latency_ms: 30, latency_jitter_ms: 0 });
  const { runId, setId } = await queueRun(page, 1);
  await page.goto(`/t/${TENANT}/backup-sets/${setId}`);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  const row = page.getByTestId("run-row").filter({ hasText: `Run #${runId}` });
  await expect(row).toHaveAttribute("data-status", "failed", { timeout: 30_000 });
  const items = page.getByTestId("item-count");
  await expect(items).toHaveText("0");
  await knobs(page, { rate_404: 0 });
  // The panel's reads after the retry are slow: the retry has ended before it lists it.
  await page.route(/\/api\/runs\/for-backup-set/, async (route) => {
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    await route.continue();
  });
  await row.getByRole("button", { name: "Retry 1 failed" }).click();
  const queued = page.getByTestId("toast").filter({ hasText: `(retry of run #${runId})` });
  await expect(queued).toBeVisible();
  const retryId = Number((await queued.textContent())?.match(/Run #(\d+)/)?.[1]);
  expect(retryId).toBeGreaterThan(runId);
  await expect(page.getByTestId("toast").filter({ hasText: `Finished: run #${retryId}` })).toBeVisible({
    timeout: 30_000,
  });
  await expect(items).toHaveText("1");
});

test("a policy's versions that cannot be read again say why", async ({ page }) => {
  test.setTimeout(90_000);
  await page.goto(`/t/${TENANT}/policies`);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await page.getByTestId("policies-table").locator("tbody").getByRole("link").last().click();
  const capture = page.getByTestId("capture-now");
  await expect(capture.getByRole("button", { name: "Capture now" })).toBeEnabled();
  await expect(page.getByRole("alert")).toHaveCount(0);
  // The versions read after the capture (the page reads them again when it ends) fails.
  await page.route("**/api/policies/versions", (route) => route.fulfill({ status: 500, body: "boom" }));
  await capture.getByRole("button", { name: "Capture now" }).click();
  await expect(page.getByTestId("toast").filter({ hasText: "Capture policy" })).toBeVisible({ timeout: 30_000 });
  await expect(page.getByRole("alert")).toBeVisible();
});
