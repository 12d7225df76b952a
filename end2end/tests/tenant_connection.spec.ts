import { expect, Page, test } from "@playwright/test";
import { call, demoKnobs, FABRIKAM, knobs, openHydrated, pageAs, signIn } from "./demo";

// Fabrikam, checked by the demo admin (its owner): Contoso must stay without runs for
// backup_sets.spec.ts. This file sorts after notifications.spec.ts on purpose: each check
// notifies the admin in Fabrikam, whose notifications that spec counts.

/** Sets up Fabrikam's app registration in the demo simulator (`{}`: all granted). */
async function fabrikamApp(page: Page, app: Record<string, unknown>) {
  await knobs(page, { apps: { [FABRIKAM]: app } });
}

/** Checks Fabrikam's connection (the demo admin owns it) and waits until the check has ended. */
async function checkFabrikam(page: Page) {
  await call(page, "tenants/check-connection", { tenant: FABRIKAM });
  await expect
    .poll(async () => (await call(page, "tenants/connection-check", { tenant: FABRIKAM })).active_run, {
      timeout: 15_000,
    })
    .toBeNull();
}

test.beforeEach(async ({ page }) => {
  await signIn(page, "admin@contoso.example");
});

test.afterEach(async ({ page }) => {
  // Fabrikam with every permission, a token endpoint that answers, and a passing last check again.
  await knobs(page, { token_unavailable: null });
  await fabrikamApp(page, {});
  await checkFabrikam(page);
});

test("a tenant never checked asks for a check; a wrong secret blocks runs until a check passes", async ({ page }) => {
  await openHydrated(page, `/t/${FABRIKAM}/backup-sets`);
  const banner = page.getByTestId("connection-banner");
  await expect(banner).toHaveAttribute("data-kind", "never-checked");
  await expect(banner).toContainText("This tenant has never been checked — check its connection");

  await fabrikamApp(page, { token_error: "wrong_secret" });
  await checkFabrikam(page);
  const status = await call(page, "tenants/connection-check", { tenant: FABRIKAM });
  expect(status.last.report.outcome).toBe("auth_failed");
  expect(status.last.report.token.code).toBe(7000215);

  await openHydrated(page, `/t/${FABRIKAM}/backup-sets`);
  await expect(banner).toHaveAttribute("data-kind", "auth-failed");
  await expect(banner).toContainText("Authentication failed at the last check");
  await expect(banner).toContainText("The client secret is wrong");

  // Capture runs are refused with the way out.
  const set = await call(page, "backup-sets/create", { tenant: FABRIKAM, name: `E2E blocked ${Date.now()}`, description: "" });
  const policies = await call(page, "policies/list", { tenant: FABRIKAM, backup_set_id: String(set.id) });
  const refused = await page.request.post("/api/runs/add-policies", {
    form: { tenant: FABRIKAM, backup_set_id: String(set.id), policy_ids: String(policies.rows[0].id) },
    headers: { Origin: new URL(page.url()).origin },
  });
  expect(refused.status()).toBe(409);
  expect(await refused.text()).toContain("Check the connection on the tenant's settings page after fixing the secret.");

  // Fixed: a passing check takes the banner away.
  await fabrikamApp(page, {});
  await checkFabrikam(page);
  await openHydrated(page, `/t/${FABRIKAM}/backup-sets`);
  await expect(page.getByRole("heading", { name: "Backup sets" })).toBeVisible();
  await expect(banner).toHaveCount(0);
});

test("a check that passes in the settings page takes the banner above the page away, without a reload", async ({
  page,
}) => {
  await fabrikamApp(page, { token_error: "wrong_secret" });
  await checkFabrikam(page);
  await openHydrated(page, `/t/${FABRIKAM}/settings`);
  const banner = page.getByTestId("connection-banner");
  await expect(banner).toHaveAttribute("data-kind", "auth-failed");

  await fabrikamApp(page, {});
  const url = page.url();
  await page.getByTestId("check-connection").click();
  await expect(banner).toHaveCount(0, { timeout: 15_000 });
  expect(page.url()).toBe(url);
});

test("a check started in the settings page says how it ended in a toast that leads to its run", async ({ page }) => {
  await openHydrated(page, `/t/${FABRIKAM}/settings`);
  await page.getByTestId("check-connection").click();
  const toast = page.getByTestId("toast").filter({ hasText: "Connection check:" });
  await expect(toast).toContainText("Connection check: Connected", { timeout: 15_000 });
  const status = await call(page, "tenants/connection-check", { tenant: FABRIKAM });
  const link = toast.getByRole("link", { name: "View run" });
  await expect(link).toHaveAttribute("href", `/t/${FABRIKAM}/runs/${status.last.run_id}`);
  await link.click();
  await expect(page).toHaveURL(new RegExp(`/t/${FABRIKAM}/runs/${status.last.run_id}$`));
  await expect(page.getByTestId("run-status")).toBeVisible();
});

test("a check whose first status read after the start is dropped still says how it ended", async ({ page }) => {
  await openHydrated(page, `/t/${FABRIKAM}/settings`);
  const area = page.getByTestId("connection-check");
  await expect(page.getByTestId("check-connection")).toBeEnabled();

  // A network blip drops the first status read after the start; the later ones go through.
  let dropped = 0;
  await page.route(
    "**/api/tenants/connection-check",
    (route) => {
      dropped += 1;
      return route.abort();
    },
    { times: 1 },
  );
  const started = page.waitForResponse((r) => r.url().endsWith("/api/tenants/check-connection"));
  await page.getByTestId("check-connection").click();
  const runId = (await (await started).json()).run_id;

  // The page says it could not refresh, tries again, and sees the check end.
  await expect(area.getByTestId("poll-trouble")).toBeVisible();
  const toast = page.getByTestId("toast").filter({ hasText: "Connection check:" });
  await expect(toast).toContainText("Connection check: Connected", { timeout: 15_000 });
  await expect(toast.getByRole("link", { name: "View run" })).toHaveAttribute("href", `/t/${FABRIKAM}/runs/${runId}`);
  expect(dropped).toBe(1);
  await expect(area.getByTestId("check-report").getByRole("link", { name: `run #${runId}` })).toBeVisible();
  await expect(area.getByTestId("poll-trouble")).toHaveCount(0);
});

test("a check that cannot finish is not told as the standing authentication failure it leaves", async ({ page }) => {
  test.setTimeout(90_000);
  await fabrikamApp(page, { token_error: "wrong_secret" });
  await checkFabrikam(page);
  const failed = (await call(page, "tenants/connection-check", { tenant: FABRIKAM })).last.run_id;
  await openHydrated(page, `/t/${FABRIKAM}/settings`);
  const area = page.getByTestId("connection-check");
  await expect(area.getByTestId("check-report")).toHaveAttribute("data-outcome", "auth_failed");

  // The secret is fixed, but the token endpoint cannot be reached: the next check proves
  // nothing, and the server keeps the authentication failure as the tenant's last check.
  await fabrikamApp(page, {});
  await knobs(page, { token_unavailable: { status: 503, times: 1_000_000, retry_after_secs: 0 } });
  const started = page.waitForResponse((r) => r.url().endsWith("/api/tenants/check-connection"));
  await page.getByTestId("check-connection").click();
  const runId = (await (await started).json()).run_id;
  expect(runId).toBeGreaterThan(failed);

  // The toast tells the check it started as unfinished, and leads to that check's run.
  const toast = page.getByTestId("toast").filter({ hasText: "Connection check:" });
  await expect(toast).toContainText(
    `Connection check: did not finish. The last completed check (run #${failed}): Authentication failed`,
    { timeout: 60_000 },
  );
  await expect(toast).not.toContainText("Connection check: Authentication failed");
  await expect(toast.getByRole("link", { name: "View run" })).toHaveAttribute("href", `/t/${FABRIKAM}/runs/${runId}`);
  // The page says so above the standing report, which stays the earlier check's.
  const unfinished = area.getByTestId("check-unfinished");
  await expect(unfinished).toContainText("did not finish");
  await expect(unfinished.getByRole("link", { name: `run #${runId}` })).toHaveAttribute(
    "href",
    `/t/${FABRIKAM}/runs/${runId}`,
  );
  const report = area.getByTestId("check-report");
  await expect(report).toHaveAttribute("data-outcome", "auth_failed");
  await expect(report.getByRole("link", { name: `run #${failed}` })).toBeVisible();
  const status = await call(page, "tenants/connection-check", { tenant: FABRIKAM });
  expect(status.last.run_id).toBe(failed);
  expect(status.active_run).toBeNull();
});

test("a check whose poll is refused for good says why instead of \"Checking…\" for ever", async ({ page, browser }) => {
  test.setTimeout(90_000);
  // Each Graph answer takes 3 s: the check is still running when its poll is refused.
  await knobs(page, { latency_ms: 3_000, latency_jitter_ms: 0 });
  const owner = await pageAs(browser, "admin@contoso.example");
  try {
    await openHydrated(owner, `/t/${FABRIKAM}/settings`);
    const area = owner.getByTestId("connection-check");
    await owner.getByTestId("check-connection").click();
    await expect(area.getByTestId("check-running")).toBeVisible();
    // Signed out (elsewhere, as the session ended): the next poll is answered 401.
    await owner.context().clearCookies();
    await expect(area.getByRole("alert").filter({ hasText: "Please sign in." })).toBeVisible({ timeout: 15_000 });
    await expect(area.getByTestId("check-running")).toHaveCount(0);
  } finally {
    await owner.context().close();
    await demoKnobs(page);
  }
});

test("Disconnect and Reconnect, once confirmed, leave the focus on the button that takes their place", async ({
  page,
}) => {
  await openHydrated(page, `/t/${FABRIKAM}/settings`);
  try {
    await page.getByTestId("disconnect-tenant").click();
    await page.getByTestId("disconnect-tenant-confirm").click();
    await expect(page.getByTestId("connection-status")).toContainText("Disconnected");
    await expect(page.getByTestId("reconnect-tenant")).toBeFocused();
    await page.getByTestId("reconnect-tenant").click();
    await page.getByTestId("reconnect-tenant-confirm").click();
    await expect(page.getByTestId("connection-status")).toHaveText("Connected");
    await expect(page.getByTestId("disconnect-tenant")).toBeFocused();
  } finally {
    const settings = await call(page, "tenants/settings", { tenant: FABRIKAM });
    if (settings.disconnected) {
      await call(page, "tenants/reconnect", { tenant: FABRIKAM });
    }
  }
});
