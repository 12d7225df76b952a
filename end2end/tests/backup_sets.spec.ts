import { expect, Page, test } from "@playwright/test";
import { CONTOSO, openHydrated, signIn } from "./demo";

/** Marks the current document; the mark survives client-side updates but not a page load. */
async function markDocument(page: Page) {
  await page.evaluate(() => ((window as any).__sameDocument = true));
}

async function stillSameDocument(page: Page) {
  return page.evaluate(() => (window as any).__sameDocument === true);
}

test.beforeEach(async ({ page }, testInfo) => {
  if (!testInfo.title.startsWith("anonymous")) await signIn(page, "operator@contoso.example");
});

test("the start page lists the user's tenants and leads to a tenant", async ({ page }) => {
  await openHydrated(page, "/");
  await expect(page.getByTestId("user-name")).toHaveText("Oli Operator");
  await expect(page.getByRole("link", { name: "Contoso (demo)" })).toBeVisible();
  await expect(page.getByRole("link", { name: "Fabrikam (demo)" })).toHaveCount(0);
  await page.getByRole("link", { name: "Contoso (demo)" }).click();
  await expect(page).toHaveURL(new RegExp(`/t/${CONTOSO}/backup-sets$`));
  await expect(page.getByTestId("tenant-switcher")).toHaveValue(CONTOSO);
  // The demo's history: a baseline set captured a week ago (src/server/seed.rs).
  await expect(page.getByRole("link", { name: "Baseline (demo)" })).toBeVisible();
});

test("creating a backup set shows it in the list without reloading the page", async ({ page }) => {
  // A name of this run's own: the demo database is shared by every spec and every repeat.
  const name = `Before the Windows 12 rollout ${Date.now()}`;
  await openHydrated(page, `/t/${CONTOSO}/backup-sets`);
  await markDocument(page);

  await page.getByLabel("Name").fill(name);
  await page.getByLabel("Description (optional)").fill("All Windows baselines");
  await page.getByRole("button", { name: "Create backup set" }).click();

  const table = page.getByTestId("backup-sets");
  const link = table.getByRole("link", { name, exact: true });
  await expect(link).toBeVisible();
  await expect(page.getByRole("status").filter({ hasText: "Created" })).toContainText(name);
  await expect(page.getByLabel("Name")).toHaveValue("");
  expect(await stillSameDocument(page)).toBe(true);

  // The set's own page, reached by keyboard.
  await link.focus();
  await page.keyboard.press("Enter");
  await expect(page.getByTestId("backup-set-name")).toHaveText(name);
  await expect(page.getByText("No policies in this set yet")).toBeVisible();
});

test("a bad name is explained next to the field and nothing is created", async ({ page }) => {
  await openHydrated(page, `/t/${CONTOSO}/backup-sets`);
  await markDocument(page);
  const before = await page.getByTestId("backup-sets").locator("tbody tr").count();

  await page.getByLabel("Name").fill("   ");
  await page.getByRole("button", { name: "Create backup set" }).click();

  await expect(page.locator("#backup-set-name-error")).toHaveText("Enter a name for the backup set.");
  await expect(page.getByLabel("Name")).toHaveAttribute("aria-invalid", "true");
  expect(await stillSameDocument(page)).toBe(true);
  await page.reload();
  await expect(page.getByTestId("backup-sets").locator("tbody tr")).toHaveCount(before);
});

test("the runs page has an empty state and unknown pages say so", async ({ page }) => {
  await openHydrated(page, `/t/${CONTOSO}/runs?type=backup_set.drift_check`);
  await expect(page.getByRole("heading", { name: "Runs" })).toBeVisible();
  // The demo's drift check of its baseline, queued by the demo data (so by no one), is among
  // the drift checks, whatever other specs ran before.
  const driftChecks = page.getByTestId("runs-table").locator("tbody tr");
  const demoCheck = driftChecks
    .filter({ hasText: "Check backup set for drift" })
    .filter({ has: page.locator("td:nth-child(5)", { hasText: /^—$/ }) });
  await expect(demoCheck).toHaveCount(1);
  // No spec cancels a drift check: this filter matches nothing.
  await openHydrated(page, `/t/${CONTOSO}/runs?status=cancelled&type=backup_set.drift_check`);
  await expect(page.getByText("No runs match these filters")).toBeVisible();

  const response = await page.goto("/no/such/page");
  expect(response?.status()).toBe(404);
  await expect(page.getByRole("heading", { name: "Page not found" })).toBeVisible();
});
