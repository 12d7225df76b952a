import { expect, test } from "@playwright/test";
import { call, demoKnobs, FABRIKAM, knobs, openHydrated, signIn } from "./demo";

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

test("an open question keeps Tab and Shift+Tab between its answers until Escape", async ({ page }) => {
  test.setTimeout(60_000);
  await signIn(page, "operator@fabrikam.example");
  // A slow run stays active while its "Cancel run #N?" is open.
  await knobs(page, { latency_ms: 3_000, latency_jitter_ms: 0 });
  try {
    const set = await call(page, "backup-sets/create", {
      tenant: FABRIKAM,
      name: `E2E trap ${Date.now()}`,
      description: "",
    });
    const policies = await call(page, "policies/list", { tenant: FABRIKAM, backup_set_id: String(set.id) });
    const ids = policies.rows.slice(0, 20).map((row: { id: number }) => row.id);
    const run = await call(page, "runs/add-policies", {
      tenant: FABRIKAM,
      backup_set_id: String(set.id),
      policy_ids: ids.join(","),
    });
    await openHydrated(page, `/t/${FABRIKAM}/backup-sets/${set.id}`);
    const row = page.getByTestId("run-row").filter({ hasText: `Run #${run.run_id}` });
    await row.getByTestId("cancel-run").click();
    const question = row.getByTestId("cancel-confirm");
    await expect(question).toHaveAttribute("role", "alertdialog");
    // Not aria-modal: the rest of the page stays usable, so no screen reader may hide it.
    await expect(question).not.toHaveAttribute("aria-modal", /.*/);
    const keep = row.getByTestId("cancel-run-keep");
    const yes = row.getByTestId("cancel-run-confirm");
    await expect(keep).toBeFocused();
    // Tab from the last answer goes round to the first, never out of the open question.
    await page.keyboard.press("Tab");
    await expect(yes).toBeFocused();
    await page.keyboard.press("Tab");
    await expect(keep).toBeFocused();
    await page.keyboard.press("Shift+Tab");
    await expect(yes).toBeFocused();
    await page.keyboard.press("Shift+Tab");
    await expect(keep).toBeFocused();
    // Escape still closes it and gives the focus back; the run was not cancelled.
    await page.keyboard.press("Escape");
    await expect(question).toHaveCount(0);
    await expect(row.getByTestId("cancel-run")).toBeFocused();
    await expect(row).toHaveAttribute("data-status", /pending|running/);
  } finally {
    await demoKnobs(page);
  }
});

test("a confirmation keeps Tab and Shift+Tab between its answers", async ({ page }) => {
  await signIn(page, "admin@contoso.example");
  await openHydrated(page, `/t/${FABRIKAM}/members`);
  await page.getByTestId("remove-member").first().click();
  const ask = page.getByRole("alertdialog");
  await expect(ask).not.toHaveAttribute("aria-modal", /.*/);
  const no = ask.getByRole("button", { name: "No, keep it" });
  await expect(no).toBeFocused();
  await page.keyboard.press("Tab");
  await expect(page.getByTestId("remove-member-confirm").first()).toBeFocused();
  await page.keyboard.press("Tab");
  await expect(no).toBeFocused();
  await page.keyboard.press("Shift+Tab");
  await page.keyboard.press("Shift+Tab");
  await expect(no).toBeFocused();
  await page.keyboard.press("Escape");
  await expect(ask).toHaveCount(0);
});
