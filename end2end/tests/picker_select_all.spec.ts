import { expect, Page, Route, test } from "@playwright/test";
import { FABRIKAM, openNewBackupSet, openPicker, signIn } from "./demo";

// "Select all N matching": an answer that comes after the member changed the selection or the
// filter is dropped, and while the selection is exactly what it gave, Add selected sends the
// filter (`all_matching`) for the server to resolve at submit time. Fabrikam, as in
// add_policies.spec.ts (Contoso must start without backup sets and runs).
const TENANT = FABRIKAM;

/** Creates a backup set with a unique name, opens it and opens its picker. */
async function newPicker(page: Page, prefix: string) {
  await openNewBackupSet(page, TENANT, prefix);
  return openPicker(page);
}

/** Holds the answers to "Select all" back until the returned function is called. */
async function holdSelectAll(page: Page) {
  let release = () => {};
  const released = new Promise<void>((resolve) => (release = resolve));
  const answered: Promise<void>[] = [];
  await page.route("**/api/policies/matching-ids", async (route: Route) => {
    await released;
    // The picker may have given up the request meanwhile.
    answered.push(route.continue().catch(() => {}));
  });
  return async () => {
    release();
    await expect.poll(() => answered.length).toBeGreaterThan(0);
    await Promise.all(answered);
    // Time for the page to take the answer, were it to take it.
    await page.waitForTimeout(1_000);
  };
}

test.beforeEach(async ({ page }) => {
  await signIn(page, "operator@fabrikam.example");
});

test("a Select all answer that comes after Clear selection or a filter change is dropped", async ({ page }) => {
  const picker = await newPicker(page, "E2E late select all");
  const count = picker.getByTestId("selection-count");
  const firstBox = picker.locator('tbody input[type="checkbox"]:not([disabled])').first();

  // Clear selection while the answer is on its way.
  let release = await holdSelectAll(page);
  await firstBox.check();
  await expect(count).toHaveText("1 policy selected");
  await picker.getByRole("button", { name: /^Select all \d+ matching/ }).click();
  await expect(count).toHaveText("Selecting all matching policies…");
  await picker.getByRole("button", { name: "Clear selection" }).click();
  await expect(count).toHaveText("No policies selected");
  await release();
  await expect(count).toHaveText("No policies selected");
  await expect(picker.getByRole("button", { name: "Add selected" })).toBeDisabled();
  await page.unroute("**/api/policies/matching-ids");

  // A filter change while the answer is on its way: the selection stays what it was.
  release = await holdSelectAll(page);
  await firstBox.check();
  await expect(count).toHaveText("1 policy selected");
  await picker.getByRole("button", { name: /^Select all \d+ matching/ }).click();
  await expect(count).toHaveText("Selecting all matching policies…");
  await picker.getByLabel("Type").selectOption("compliance");
  await expect(count).toHaveText("1 policy selected");
  await release();
  await expect(count).toHaveText("1 policy selected");
});

test("Add selected after Select all sends the filter; after an edit, the ids", async ({ page }) => {
  test.setTimeout(60_000);
  const picker = await newPicker(page, "E2E all matching");
  const pager = picker.getByRole("navigation", { name: "Pages" });
  await expect(pager).toContainText("96 policies");
  await picker.getByLabel("Type").selectOption("compliance");
  await expect(pager).not.toContainText("96 policies");
  const selectAll = picker.getByRole("button", { name: /^Select all \d+ matching$/ });
  const matching = Number((await selectAll.textContent())?.match(/\d+/)?.[0]);
  expect(matching).toBeGreaterThan(1);

  // After an edit (one row off and on again) the same policies go as a list of ids. That
  // submit is stopped on its way: only what it sends matters here.
  await selectAll.click();
  await expect(picker.getByTestId("selection-count")).toHaveText(`${matching} policies selected`);
  const firstBox = picker.locator('tbody input[type="checkbox"]:not([disabled])').first();
  await firstBox.uncheck();
  await firstBox.check();
  await expect(picker.getByTestId("selection-count")).toHaveText(`${matching} policies selected`);
  await page.route("**/api/runs/add-policies", (route) => route.abort());
  const listed = page.waitForRequest("**/api/runs/add-policies");
  await picker.getByRole("button", { name: "Add selected" }).click();
  const ids = new URLSearchParams((await listed).postData() ?? "");
  expect(ids.get("all_matching")).toBe("false");
  expect(ids.get("policy_ids")?.split(",")).toHaveLength(matching);
  await page.unroute("**/api/runs/add-policies");
  await expect(picker.getByRole("button", { name: "Add selected" })).toBeEnabled();

  // Selected all again: exactly what it gave, so the filter goes, and the run has them all.
  await selectAll.click();
  await expect(picker.getByTestId("selection-count")).toHaveText(`${matching} policies selected`);
  const submitted = page.waitForRequest("**/api/runs/add-policies");
  await picker.getByRole("button", { name: "Add selected" }).click();
  const form = new URLSearchParams((await submitted).postData() ?? "");
  expect(form.get("all_matching")).toBe("true");
  expect(form.get("policy_type")).toBe("compliance");
  expect(form.get("policy_ids") ?? "").toBe("");
  await expect(page.getByTestId("toast").filter({ hasText: `Queued: ${matching} policies` })).toBeVisible();
});
