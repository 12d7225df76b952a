import { expect, test } from "@playwright/test";
import { call, FABRIKAM, openHydrated, signIn } from "./demo";

// Confirmations and the picker with the keyboard: a question that opens focuses its safe answer,
// Escape closes it, and the focus goes back to the button that opened it. Fabrikam only
// (backup_sets.spec.ts expects Contoso without backup sets), and nothing is changed.

test("a confirmation focuses its safe answer, Escape closes it and the focus goes back", async ({ page }) => {
  await signIn(page, "admin@contoso.example");
  const before = await call(page, "members/list", { tenant: FABRIKAM });
  const removals: string[] = [];
  page.on("request", (request) => {
    if (request.url().includes("/api/members/remove")) removals.push(request.url());
  });
  await openHydrated(page, `/t/${FABRIKAM}/members`);
  const remove = page.getByTestId("remove-member").first();
  await remove.focus();
  await page.keyboard.press("Enter");
  const question = page.getByRole("alertdialog");
  await expect(question).toBeVisible();
  // The safe answer has the focus: a second Enter keeps the member.
  await expect(question.getByRole("button", { name: "No, keep it" })).toBeFocused();
  await page.keyboard.press("Escape");
  await expect(question).toHaveCount(0);
  await expect(page.getByTestId("remove-member").first()).toBeFocused();
  // Enter twice (a double press, a repeating key): asked, then kept; nobody is removed.
  const members = await page.getByTestId("remove-member").count();
  await page.keyboard.press("Enter");
  await page.keyboard.press("Enter");
  await expect(question).toHaveCount(0);
  await expect(page.getByTestId("remove-member")).toHaveCount(members);
  await expect(page.getByTestId("remove-member").first()).toBeFocused();
  // The rows are still there while a removal would be on its way: ask the server too.
  expect(removals).toEqual([]);
  expect(await call(page, "members/list", { tenant: FABRIKAM })).toEqual(before);
});

test("closing the policy picker gives the focus back to Add policies", async ({ page }) => {
  await signIn(page, "operator@fabrikam.example");
  const set = await call(page, "backup-sets/create", {
    tenant: FABRIKAM,
    name: `E2E keyboard ${Date.now()}`,
    description: "",
  });
  await openHydrated(page, `/t/${FABRIKAM}/backup-sets/${set.id}`);
  const open = page.getByRole("button", { name: "Add policies" });
  await open.focus();
  await page.keyboard.press("Enter");
  const picker = page.getByTestId("policy-picker");
  await expect(picker.getByTestId("policy-row").first()).toBeVisible();
  await picker.locator('tbody input[type="checkbox"]').first().focus();
  await page.keyboard.press("Escape");
  await expect(picker).toHaveCount(0);
  await expect(open).toBeFocused();
  // The Close button too.
  await page.keyboard.press("Enter");
  await expect(picker.getByTestId("policy-row").first()).toBeVisible();
  await picker.getByRole("button", { name: "Close" }).click();
  await expect(picker).toHaveCount(0);
  await expect(open).toBeFocused();
});
