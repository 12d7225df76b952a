import { expect, Page } from "@playwright/test";
import { CONTOSO, FABRIKAM, finishedRun, openHydrated, signIn, submitSignIn } from "./demo";

/**
 * Visits every page of the app, each in a state that shows its content (a finished run, an open
 * picker, an open notification panel, an error), and calls `check` on each with a name for the
 * failure message. The accessibility scans (both colour schemes) and the phone-width pass share
 * this one list, so a new page is checked by all of them once it is added here.
 *
 * Fabrikam's operator, like add_policies.spec.ts: backup_sets.spec.ts expects Contoso to start
 * without backup sets and runs, so nothing here is created in Contoso. The pages as a readonly
 * member sees them (disabled actions with their reason) are scanned in capabilities.spec.ts.
 */
export async function visitEveryPage(page: Page, check: (what: string) => Promise<void>) {
  await openHydrated(page, "/sign-in");
  await check("sign-in");
  await submitSignIn(page, "operator@contoso.example", "wrong password!");
  await expect(page.getByRole("alert").filter({ hasText: "incorrect" })).toBeVisible();
  await check("sign-in with an error");

  await signIn(page, "operator@fabrikam.example");
  await openHydrated(page, "/");
  await check("tenants");

  const { runId, setId } = await finishedRun(page, FABRIKAM);
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

  // The owner's pages, as the demo admin (owner of Fabrikam and instance admin). Nothing is
  // changed: new_deployment.spec.ts changes things, in a tenant of its own.
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
  await openHydrated(page, "/invite#token=0000");
  await expect(page.getByRole("alert").filter({ hasText: "not valid" })).toBeVisible();
  await check("an invitation link that is not valid");
}
