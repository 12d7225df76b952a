import { expect, test } from "@playwright/test";
import { expectAccessible } from "./axe";
import { CONTOSO, FABRIKAM, finishedRun, openHydrated, signIn, submitSignIn } from "./demo";

// Fabrikam's operator, like add_policies.spec.ts: backup_sets.spec.ts expects Contoso to start
// without backup sets and runs, so nothing here is created in Contoso. The pages as a readonly
// member sees them (disabled actions with their reason) are scanned in capabilities.spec.ts.

test("every page has no serious or critical axe violation", async ({ page }) => {
  test.setTimeout(120_000);
  await openHydrated(page, "/sign-in");
  await expectAccessible(page, "sign-in");
  await submitSignIn(page, "operator@contoso.example", "wrong password!");
  await expect(page.getByRole("alert").filter({ hasText: "incorrect" })).toBeVisible();
  await expectAccessible(page, "sign-in with an error");

  await signIn(page, "operator@fabrikam.example");
  await openHydrated(page, "/");
  await expectAccessible(page, "tenants");

  const { runId, setId } = await finishedRun(page, FABRIKAM);
  await openHydrated(page, `/t/${FABRIKAM}/backup-sets`);
  await expect(page.getByTestId("backup-sets")).toBeVisible();
  await expectAccessible(page, "backup sets");

  await openHydrated(page, `/t/${FABRIKAM}/backup-sets/${setId}`);
  await expect(page.getByTestId("backup-items").locator("tbody tr")).toHaveCount(2);
  await expect(page.getByTestId("run-row")).toHaveCount(1);
  await expectAccessible(page, "backup set");
  await page.getByRole("button", { name: "Add policies" }).click();
  await expect(page.getByTestId("policy-picker").getByTestId("policy-row").first()).toBeVisible();
  await expectAccessible(page, "backup set with the picker open");

  await openHydrated(page, `/t/${FABRIKAM}/runs`);
  await expect(page.getByTestId("runs-table")).toBeVisible();
  await expectAccessible(page, "runs");
  await openHydrated(page, `/t/${FABRIKAM}/runs/${runId}`);
  await expect(page.getByTestId("run-status")).toHaveText("Succeeded");
  await expectAccessible(page, "run detail");
  await page.getByTestId("notification-bell").click();
  await expect(page.getByTestId("notification-panel")).toBeVisible();
  await expectAccessible(page, "run detail with the notifications open");

  const notFound = await page.goto("/no/such/page");
  expect(notFound?.status()).toBe(404);
  await expectAccessible(page, "not found");
  const denied = await page.goto(`/t/${CONTOSO}/backup-sets`);
  expect(denied?.status()).toBe(403);
  await expectAccessible(page, "access denied");
});
