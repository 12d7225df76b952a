import { expect, Page } from "@playwright/test";
import { CONTOSO, connectTenant, FABRIKAM, finishedRun, openHydrated, signIn, submitSignIn } from "./demo";

/**
 * A tenant name of the longest kind (100 characters, words): a select is as wide as its longest
 * option, so the tenant switcher must not widen the header with it.
 */
export function longTenantName() {
  const words = `Northwind Traders Europe Middle East and Africa Regional Endpoint Management ${Date.now()} `;
  return words.repeat(3).slice(0, 100).trim();
}

/** A backup set name with no break point, as people name things (the run page repeats it). */
export function unbrokenName() {
  return `Win10_Compliance_BitLocker_Required_Production_${Date.now()}`;
}

/**
 * Records the page's Content-Security-Policy violations (an inline style or script the policy
 * refuses, which the browser only reports in its console) in `window.__cspViolations`, for
 * `expectNoCspViolation`. Call before the first navigation.
 */
export async function recordCspViolations(page: Page) {
  await page.addInitScript(() => {
    const seen: string[] = [];
    (window as unknown as { __cspViolations: string[] }).__cspViolations = seen;
    document.addEventListener("securitypolicyviolation", (event) => {
      const where = event.target instanceof Element ? event.target.outerHTML.slice(0, 120) : "";
      seen.push(`${event.violatedDirective}: ${event.sample || event.blockedURI} ${where}`);
    });
  });
}

/** Fails when the current page has had a CSP violation since it loaded. */
export async function expectNoCspViolation(page: Page, what: string) {
  const violations = await page.evaluate(
    () => (window as unknown as { __cspViolations?: string[] }).__cspViolations ?? [],
  );
  expect(violations, `CSP violations on ${what}`).toEqual([]);
}

/**
 * Visits every page of the app, each in a state that shows its content (a finished run, an open
 * picker, an open notification panel, an error), and calls `check` on each with a name for the
 * failure message. The accessibility scans (both colour schemes) and the phone-width pass share
 * this one list, so a new page is checked by all of them once it is added here.
 *
 * Fabrikam's operator, like add_policies.spec.ts: backup_sets.spec.ts expects Contoso to start
 * without backup sets and runs, so nothing here is created in Contoso (its demo history, a
 * policy's versions and their diff, is only read). Each tour connects a tenant of its own, with
 * the longest name a tenant may have, for a restore's preview. The pages as a readonly
 * member sees them (disabled actions with their reason) are scanned in capabilities.spec.ts.
 */

export async function visitEveryPage(page: Page, checkPage: (what: string) => Promise<void>) {
  // Every page is also checked for what its CSP refused (an inline style shows as unstyled).
  await recordCspViolations(page);
  const check = async (what: string) => {
    await expectNoCspViolation(page, what);
    await checkPage(what);
  };
  await openHydrated(page, "/sign-in");
  await check("sign-in");
  await submitSignIn(page, "operator@contoso.example", "wrong password!");
  await expect(page.getByRole("alert").filter({ hasText: "incorrect" })).toBeVisible();
  await check("sign-in with an error");

  await signIn(page, "operator@fabrikam.example");
  await openHydrated(page, "/");
  await check("tenants");

  const { runId, setId } = await finishedRun(page, FABRIKAM, unbrokenName());
  await openHydrated(page, `/t/${FABRIKAM}/backup-sets`);
  await expect(page.getByTestId("backup-sets")).toBeVisible();
  await check("backup sets");

  await openHydrated(page, `/t/${FABRIKAM}/backup-sets/${setId}`);
  await expect(page.getByTestId("backup-items").locator("tbody tr")).toHaveCount(2);
  await expect(page.getByTestId("run-row")).toHaveCount(1);
  await check("backup set");
  await page.getByRole("button", { name: "Add policies" }).click();
  await expect(page.getByTestId("policy-picker").getByTestId("policy-row").first()).toBeVisible();
  await check("backup set with the picker open");

  await openHydrated(page, `/t/${FABRIKAM}/runs`);
  await expect(page.getByTestId("runs-table")).toBeVisible();
  await check("runs");
  await openHydrated(page, `/t/${FABRIKAM}/runs/${runId}`);
  await expect(page.getByTestId("run-status")).toHaveText("Succeeded");
  await check("run detail");
  await page.getByTestId("notification-bell").click();
  await expect(page.getByTestId("notification-panel")).toBeVisible();
  await check("run detail with the notifications open");

  const notFound = await page.goto("/no/such/page");
  expect(notFound?.status()).toBe(404);
  await check("not found");
  const denied = await page.goto(`/t/${CONTOSO}/backup-sets`);
  expect(denied?.status()).toBe(403);
  await check("access denied");

  // A policy with versions, each version's two tabs and a diff: the demo history of Contoso,
  // read by its readonly member (nothing is changed there).
  await signIn(page, "readonly@contoso.example");
  await openHydrated(page, `/t/${CONTOSO}/policies?search=edited%20twice`);
  await expect(page.getByTestId("policies-table").getByRole("link", { name: /edited twice/ })).toBeVisible();
  await check("policies");
  await page.getByRole("link", { name: /edited twice/ }).click();
  const versions = page.getByTestId("versions").locator("tbody tr");
  await expect(versions).toHaveCount(3);
  await check("policy");
  await versions.first().getByRole("link", { name: "View" }).click();
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await expect(page.getByTestId("settings-panel").getByTestId("readable-section").first()).toBeVisible();
  await check("policy version: Settings");
  await page.getByRole("tab", { name: "Raw JSON" }).click();
  await expect(page.locator("pre.raw-json")).toBeVisible();
  await check("policy version: Raw JSON");
  await page.goBack();
  await versions.first().getByRole("link", { name: "Compare with previous" }).click();
  await expect(page.getByTestId("change")).toHaveCount(1);
  await check("diff of two versions");

  // The owner's pages, as the demo admin (owner of Fabrikam and instance admin). Nothing is
  // changed in the demo tenants: what a run changes happens in a tenant of the tour's own.
  await signIn(page, "admin@contoso.example");
  await openHydrated(page, "/tenants/connect");
  await expect(page.getByRole("button", { name: "Connect tenant" })).toBeEnabled();
  await check("connect a tenant");
  await openHydrated(page, `/t/${FABRIKAM}/settings`);
  await expect(page.getByTestId("connection-facts")).toBeVisible();
  await check("tenant settings");
  await openHydrated(page, `/t/${FABRIKAM}/members`);
  await expect(page.getByTestId("members")).toBeVisible();
  await check("members");
  await page.getByTestId("remove-member").first().click();
  await expect(page.getByRole("alertdialog")).toBeVisible();
  await check("members with a removal to confirm");
  await openHydrated(page, `/t/${FABRIKAM}/audit`);
  await expect(page.getByTestId("audit-log")).toBeVisible();
  await check("audit log");
  // A tenant of the admin's own with the longest name, where a restore is previewed (a run, so
  // neither demo tenant: other specs count their runs and the admin's notifications).
  const tenant = await connectTenant(page, longTenantName());
  const own = await finishedRun(page, tenant, unbrokenName());
  await openHydrated(page, `/t/${tenant}/policies`);
  await expect(page.getByTestId("policies-table")).toBeVisible();
  await check("policies of a tenant with a long name");
  await openHydrated(page, `/t/${tenant}/restore/new?source=set-${own.setId}`);
  await page.getByRole("button", { name: "Select all 2 matching" }).click();
  await expect(page.getByTestId("scope-count")).toHaveText("2 of 2 policies selected");
  await check("restore with its rows ticked");
  await page.getByRole("button", { name: "Run preview (dry-run)" }).click();
  await expect(page.getByTestId("preview-status")).toContainText("Preview of 2 policies", { timeout: 30_000 });
  await check("restore with a preview run");
  await openHydrated(page, `/t/${tenant}/runs/${own.runId}`);
  await expect(page.getByTestId("run-status")).toHaveText("Succeeded");
  await check("run detail in a tenant with a long name");

  await openHydrated(page, "/invite#token=0000");
  await expect(page.getByRole("alert").filter({ hasText: "not valid" })).toBeVisible();
  await check("an invitation link that is not valid");
}
