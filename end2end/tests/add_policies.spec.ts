import { expect, Page, test } from "@playwright/test";
import { call, FABRIKAM, finishedRun, openNewBackupSet, openPicker, selectRows, signIn } from "./demo";

// Fabrikam, with its operator: backup_sets.spec.ts expects Contoso to start without backup
// sets and runs, and every spec shares one server and database.
const TENANT = FABRIKAM;

/** The number of runs the runs monitor lists for the tenant. */
async function countRuns(page: Page) {
  await page.goto(`/t/${TENANT}/runs`);
  await expect(page.getByRole("heading", { name: "Runs" })).toBeVisible();
  return page.locator("table.data-table tbody tr").count();
}

test.beforeEach(async ({ page }) => {
  await signIn(page, "operator@fabrikam.example");
});

test("a toast leaves by itself after its time, but not while the pointer is over it or focus is in it", async ({ page }) => {
  test.setTimeout(120_000);
  // The page's timers on Playwright's clock: time flows as usual, and the test moves it past
  // the toast's lifetime (10 s) at once instead of waiting for it.
  await page.clock.install();
  await openNewBackupSet(page, TENANT, "E2E toast");
  const picker = await selectRows(page, 1);
  await picker.getByRole("button", { name: "Add selected" }).click();
  const queued = page.getByTestId("toast").filter({ hasText: "Queued: 1 policy" });
  await expect(queued).toBeVisible();
  // Held by the pointer: still there after its lifetime.
  await queued.hover();
  await page.clock.runFor(11_000);
  await expect(queued).toBeVisible();
  // Held by the keyboard's focus, the pointer gone elsewhere.
  await queued.getByRole("link", { name: "View run" }).focus();
  await page.mouse.move(0, 0);
  await page.clock.runFor(11_000);
  await expect(queued).toBeVisible();
  // Let go: it leaves within its lifetime. At once, by the clock the test moves (the page's own
  // timer would take 10 s), so the checks above did run past the lifetime.
  await page.evaluate(() => (document.activeElement as HTMLElement | null)?.blur());
  await page.clock.runFor(11_000);
  await expect(queued).toBeHidden({ timeout: 2_000 });
});

test("select policies, add them, follow the toast to the run and watch it succeed", async ({ page }) => {
  test.setTimeout(120_000);
  const name = await openNewBackupSet(page, TENANT, "E2E add");
  const picker = await selectRows(page, 3);
  await picker.getByRole("button", { name: "Add selected" }).click();

  const toast = page.getByTestId("toast").filter({ hasText: "Queued: 3 policies" });
  await expect(toast).toBeVisible();
  await expect(page.getByTestId("run-row")).toHaveCount(1);
  await toast.getByRole("link", { name: "View run" }).click();

  await expect(page).toHaveURL(new RegExp(`/t/${TENANT}/runs/\\d+$`));
  await expect(page.getByTestId("run-status")).toHaveText("Succeeded", { timeout: 60_000 });
  await expect(page.getByTestId("processed")).toHaveText("3 / 3");
  await expect(page.getByTestId("succeeded")).toHaveText("3");
  await expect(page.getByTestId("run-items").locator("tbody tr")).toHaveCount(3);
  await expect(page.getByTestId("backup-set-link")).toHaveText(name);
});

test("double-clicking Add selected starts one run", async ({ page }) => {
  test.setTimeout(90_000);
  const runsBefore = await countRuns(page);
  const name = await openNewBackupSet(page, TENANT, "E2E double");
  const picker = await selectRows(page, 2);
  await picker.getByRole("button", { name: "Add selected" }).dblclick();

  await expect(page.getByTestId("toast").filter({ hasText: "Queued: 2 policies" })).toBeVisible();
  await expect(page.getByTestId("run-row")).toHaveCount(1);

  // The panel polls until the run ends, says so, and the set's items reload.
  await expect(page.getByTestId("toast").filter({ hasText: "Finished:" })).toContainText(
    "Succeeded — 2 added, 0 failed, 0 skipped",
    { timeout: 60_000 },
  );
  await expect(page.getByTestId("item-count")).toHaveText("2");
  await expect(page.getByTestId("backup-items").locator("tbody tr")).toHaveCount(2);

  // The runs monitor has exactly one more run than before, and so has the set.
  expect(await countRuns(page)).toBe(runsBefore + 1);
  await page.goto(`/t/${TENANT}/backup-sets`);
  await page.getByRole("link", { name }).click();
  await expect(page.getByTestId("run-row")).toHaveCount(1);
});

test("a run that ends before the panel first sees it still says so and reloads the items", async ({ page }) => {
  await openNewBackupSet(page, TENANT, "E2E quick");
  // The panel's reads of its runs are held back until the run is known to have ended.
  let release = () => {};
  const ended = new Promise<void>((resolve) => (release = resolve));
  await page.route(/\/api\/runs\/for-backup-set(\/version)?$/, async (route) => {
    await ended;
    await route.continue();
  });
  const picker = await selectRows(page, 1);
  await picker.getByRole("button", { name: "Add selected" }).click();
  const queued = page.getByTestId("toast").filter({ hasText: "Queued: 1 policy" });
  await expect(queued).toBeVisible();
  const runId = (await queued.getByRole("link", { name: "View run" }).getAttribute("href"))!.split("/").pop()!;
  await expect
    .poll(async () => (await call(page, "runs/get", { tenant: TENANT, id: runId })).status, { timeout: 30_000 })
    .toBe("Completed");
  release();
  await expect(page.getByTestId("toast").filter({ hasText: "Finished:" })).toContainText(
    "Succeeded — 1 added, 0 failed, 0 skipped",
    { timeout: 30_000 },
  );
  await expect(page.getByTestId("item-count")).toHaveText("1");
});

test("the picker searches, filters, pages, selects all matching and works from the keyboard", async ({ page }) => {
  await openNewBackupSet(page, TENANT, "E2E picker");
  await page.getByRole("button", { name: "Add policies" }).click();
  const picker = page.getByTestId("policy-picker");
  const pager = picker.getByRole("navigation", { name: "Pages" });
  await expect(pager).toContainText("Page 1 of 2 · 96 policies");
  await expect(picker.getByRole("button", { name: "Add selected" })).toBeDisabled();
  await expect(picker.getByTestId("selection-count")).toHaveText("No policies selected");

  await pager.getByRole("button", { name: "Next" }).click();
  await expect(pager).toContainText("Page 2 of 2");
  await expect(picker.getByTestId("policy-row")).toHaveCount(46);

  await picker.getByLabel("Search by name").fill("0001");
  await expect(pager).toContainText("Page 1 of 1 · 1 policies");
  await picker.getByLabel("Search by name").fill("");
  // Back to every policy before filtering by type, so the count below is the type's.
  await expect(pager).toContainText("96 policies");
  await picker.getByLabel("Type").selectOption("compliance");
  const selectAll = picker.getByRole("button", { name: /^Select all \d+ matching$/ });
  // The count is read once the filtered page has arrived, not from the page before it.
  await expect(pager).not.toContainText("96 policies");
  const matching = Number((await selectAll.textContent())?.match(/\d+/)?.[0]);
  expect(matching).toBeGreaterThan(0);
  expect(matching).toBeLessThan(96);
  await selectAll.click();
  await expect(picker.getByTestId("selection-count")).toHaveText(`${matching} policies selected`);
  await picker.getByRole("button", { name: "Clear selection" }).click();
  await expect(picker.getByTestId("selection-count")).toHaveText("No policies selected");

  // Keyboard: Space ticks a focused row, Escape closes the picker.
  await picker.locator('tbody input[type="checkbox"]').first().focus();
  await page.keyboard.press("Space");
  await expect(picker.getByTestId("selection-count")).toHaveText("1 policy selected");
  await expect(picker.getByRole("button", { name: "Add selected" })).toBeEnabled();
  await page.keyboard.press("Escape");
  await expect(page.getByTestId("policy-picker")).toHaveCount(0);
});

test("\"Select all N matching\" selects N: the policies already in the set are counted apart", async ({ page }) => {
  test.setTimeout(60_000);
  const { setId } = await finishedRun(page, TENANT);
  const list = await call(page, "policies/list", { tenant: TENANT, backup_set_id: String(setId) });
  await page.goto(`/t/${TENANT}/backup-sets/${setId}`);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await page.getByRole("button", { name: "Add policies" }).click();
  const picker = page.getByTestId("policy-picker");
  const selectAll = picker.getByTestId("select-all-matching");
  const addable = list.total - 2;
  await expect(selectAll).toHaveText(`Select all ${addable} matching (2 already in the set)`);
  await selectAll.click();
  await expect(picker.getByTestId("selection-count")).toContainText(`${addable} policies selected`);
});

test("Add selected waits for \"Select all N matching\": the selection it would add is not the chosen one until the answer", async ({
  page,
}) => {
  await openNewBackupSet(page, TENANT, "E2E select all");
  // The server's answer to "Select all" is held back until the test lets it through.
  let release = () => {};
  const released = new Promise<void>((resolve) => (release = resolve));
  await page.route("**/api/policies/matching-ids", async (route) => {
    await released;
    await route.continue();
  });
  const adds: string[] = [];
  page.on("request", (request) => {
    if (request.url().includes("/api/runs/add-policies")) adds.push(request.url());
  });
  const picker = await selectRows(page, 1);
  const addSelected = picker.getByTestId("add-selected");
  await expect(addSelected).toBeEnabled();
  const selectAll = picker.getByTestId("select-all-matching");
  const matching = Number((await selectAll.textContent())?.match(/\d+/)?.[0]);
  expect(matching).toBeGreaterThan(1);

  await selectAll.click();
  await expect(selectAll).toHaveText("Selecting…");
  await expect(picker.getByTestId("selection-count")).toHaveText("Selecting all matching policies…");
  await expect(addSelected).toBeDisabled();
  await addSelected.click({ force: true });
  expect(adds).toEqual([]);

  release();
  await expect(picker.getByTestId("selection-count")).toHaveText(`${matching} policies selected`);
  await expect(addSelected).toBeEnabled();
  expect(adds).toEqual([]);
});

test("a failed read of the panel right after Add selected is tried again: the queued run shows", async ({ page }) => {
  test.setTimeout(90_000);
  await openNewBackupSet(page, TENANT, "E2E panel retry");
  await expect(page.getByText("No runs yet. Add policies to start one.")).toBeVisible();
  const picker = await selectRows(page, 3);
  // The panel's read after the submit is dropped once.
  await page.route("**/api/runs/for-backup-set**", (route) => route.abort(), { times: 1 });
  await picker.getByRole("button", { name: "Add selected" }).click();
  await expect(page.getByTestId("toast").filter({ hasText: "Queued: 3 policies" })).toBeVisible();
  await expect(page.getByTestId("run-row")).toHaveCount(1, { timeout: 10_000 });
  await expect(page.getByTestId("toast").filter({ hasText: "Finished:" })).toContainText(
    "Succeeded — 3 added",
    { timeout: 60_000 },
  );
  await expect(page.getByTestId("item-count")).toHaveText("3");
});

test("Escape in the picker's search field clears it and keeps the picker and its selection", async ({ page }) => {
  await openNewBackupSet(page, TENANT, "E2E escape");
  const picker = await selectRows(page, 3);
  const search = picker.getByLabel("Search by name");
  await search.fill("zzz");
  await search.press("Escape");
  await expect(search).toHaveValue("");
  await expect(picker).toBeVisible();
  await expect(picker.getByTestId("selection-count")).toHaveText("3 policies selected");
  // Escape elsewhere in the picker (the field now empty) still closes it.
  await search.press("Escape");
  await expect(picker).toBeHidden();
});

test("the panel lists the set's drift check and does not announce it late after an Add selected", async ({ page }) => {
  test.setTimeout(120_000);
  await openNewBackupSet(page, TENANT, "E2E drift panel");
  let picker = await selectRows(page, 1);
  await picker.getByRole("button", { name: "Add selected" }).click();
  await expect(page.getByTestId("toast").filter({ hasText: "Finished:" })).toContainText("Succeeded", {
    timeout: 60_000,
  });
  await expect(page.getByTestId("run-row")).toHaveCount(1);

  const drift = page.getByTestId("drift-check");
  await drift.getByRole("button", { name: "Compare with Intune" }).click();
  const link = drift.getByTestId("run-last").getByRole("link");
  await expect(link).toBeVisible({ timeout: 30_000 });
  const driftId = ((await link.textContent()) ?? "").replace(/\D/g, "");
  expect(driftId).not.toBe("");
  // The panel lists the drift check too.
  await expect(page.getByTestId("run-row")).toHaveCount(2);
  await expect(page.getByTestId("run-panel").getByRole("link", { name: `Run #${driftId}`, exact: true })).toBeVisible();

  // A later Add selected: its run is announced, the drift check (ended long before) is not.
  picker = await selectRows(page, 1);
  await picker.getByRole("button", { name: "Add selected" }).click();
  await expect(page.getByTestId("run-row")).toHaveCount(3);
  // Its end reloads the items.
  await expect(page.getByTestId("item-count")).toHaveText("2", { timeout: 60_000 });
  await expect(page.getByTestId("toast").filter({ hasText: `Finished: run #${driftId} ` })).toHaveCount(0);
});

test("the picker says it is loading while another page is on its way, and keeps the old rows", async ({ page }) => {
  await openNewBackupSet(page, TENANT, "E2E picker busy");
  const picker = await openPicker(page);
  const pager = picker.getByRole("navigation", { name: "Pages" });
  await expect(pager).toContainText("Page 1 of 2 · 96 policies");
  const results = picker.getByTestId("picker-results");
  const status = picker.getByRole("status").filter({ hasText: "Loading policies…" });
  await expect(results).not.toHaveAttribute("aria-busy", "true");
  await expect(status).toHaveCount(0);
  // Hold the next page's answer until the busy state has been seen.
  let release: () => void = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  await page.route("**/api/policies/list*", async (route) => {
    await held;
    await route.continue();
  });
  await pager.getByRole("button", { name: "Next" }).click();
  await expect(results).toHaveAttribute("aria-busy", "true");
  await expect(status).toBeVisible();
  // The old rows stay meanwhile.
  await expect(picker.getByTestId("policy-row")).toHaveCount(50);
  release();
  await expect(pager).toContainText("Page 2 of 2");
  await expect(picker.getByTestId("policy-row")).toHaveCount(46);
  await expect(results).not.toHaveAttribute("aria-busy", "true");
  await expect(status).toHaveCount(0);
  await page.unroute("**/api/policies/list*");
});
