import { expect, test } from "@playwright/test";
import { expectAccessible } from "./axe";
import { call, CONTOSO, FABRIKAM, openHydrated, pageAs, signIn } from "./demo";

// Creates a backup set in Contoso: this file runs after backup_sets.spec.ts (files run in name
// order, one at a time), which expects Contoso to start without backup sets.

const NEEDS_OPERATOR = "Needs operator or above";

test("a readonly member sees the actions they may not take disabled, with the role they need", async ({ page, browser }) => {
  // An operator creates the set, and sees its actions enabled without a note.
  const operator = await pageAs(browser, "operator@contoso.example");
  const name = `Readonly view ${Date.now()}`;
  const set = await call(operator, "backup-sets/create", { tenant: CONTOSO, name, description: "" });
  await openHydrated(operator, `/t/${CONTOSO}/backup-sets/${set.id}`);
  await expect(operator.getByRole("button", { name: "Add policies" })).toBeEnabled();
  await expect(operator.getByText(NEEDS_OPERATOR)).toHaveCount(0);
  await operator.context().close();

  await signIn(page, "readonly@contoso.example");
  await openHydrated(page, `/t/${CONTOSO}/backup-sets`);
  const create = page.getByRole("button", { name: "Create backup set" });
  await expect(create).toBeDisabled();
  // A disabled button takes no focus, so the reason is text beside it, tied to it for readers.
  await expect(create).toHaveAccessibleDescription(NEEDS_OPERATOR);
  await expect(page.getByTestId("create-backup-set").getByText(NEEDS_OPERATOR)).toBeVisible();
  await expect(page.getByLabel("Name")).toBeDisabled();
  await expectAccessible(page, "backup sets as readonly");

  await page.getByRole("link", { name }).click();
  await expect(page.getByTestId("backup-set-name")).toHaveText(name);
  const add = page.getByRole("button", { name: "Add policies" });
  await expect(add).toBeDisabled();
  await expect(add).toHaveAccessibleDescription(NEEDS_OPERATOR);
  await expect(page.locator("#add-policies-needs")).toHaveText(NEEDS_OPERATOR);
  await expect(page.getByTestId("drift-check").getByText(NEEDS_OPERATOR)).toBeVisible();
  await add.click({ force: true });
  await expect(page.getByTestId("policy-picker")).toHaveCount(0);
  await expectAccessible(page, "backup set as readonly");

  // The server refuses the same actions, with the same reason.
  const origin = new URL(page.url()).origin;
  for (const [endpoint, form] of [
    ["backup-sets/create", { tenant: CONTOSO, name: "sneaky", description: "" }],
    ["runs/add-policies", { tenant: CONTOSO, backup_set_id: String(set.id), policy_ids: "1" }],
  ] as const) {
    const response = await page.request.post(`/api/${endpoint}`, { form, headers: { Origin: origin } });
    expect(response.status(), endpoint).toBe(403);
    expect(await response.text(), endpoint).toContain(NEEDS_OPERATOR);
  }
  // Refused, and nothing written: no set of that name, no run of the set.
  const list: { sets: { name: string }[] } = await call(page, "backup-sets/list", { tenant: CONTOSO });
  expect(list.sets.map((s) => s.name)).toContain(name);
  expect(list.sets.map((s) => s.name)).not.toContain("sneaky");
  expect(await call(page, "runs/for-backup-set", { tenant: CONTOSO, backup_set_id: String(set.id) })).toEqual([]);
});

test("a non-member sees nothing of the tenant", async ({ page }) => {
  await signIn(page, "operator@contoso.example");
  await expect(page.locator(".tenant-list li")).toHaveCount(1);
  await expect(page.locator("body")).not.toContainText("Fabrikam");
  await openHydrated(page, `/t/${CONTOSO}/backup-sets`);
  await expect(page.getByTestId("tenant-switcher").locator("option")).toHaveText(["Contoso (demo)"]);

  for (const path of ["backup-sets", "runs", "runs/1", "backup-sets/1"]) {
    const response = await page.goto(`/t/${FABRIKAM}/${path}`);
    expect(response?.status(), path).toBe(403);
    await expect(page.getByRole("heading", { name: "Access denied" })).toBeVisible();
    await expect(page.locator("body")).not.toContainText("Fabrikam");
  }
  const origin = `${new URL(page.url()).origin}`;
  const response = await page.request.post("/api/backup-sets/list", {
    form: { tenant: FABRIKAM },
    headers: { Origin: origin },
  });
  expect(response.status()).toBe(403);
  expect(await response.text()).not.toContain("Fabrikam");
});

test("a member whose role could not be read is told so, not that they need a role", async ({ page }) => {
  await signIn(page, "admin@contoso.example");
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  // The tenant's page is drawn in the browser, and its read of the signed-in user fails.
  await page.route("**/api/auth/me", (route) => route.abort());
  await page.locator(".tenant-list").getByRole("link").first().click();
  await expect(page).toHaveURL(/\/t\/[^/]+\/backup-sets$/);
  const create = page.getByRole("button", { name: "Create backup set" });
  await expect(create).toHaveAccessibleDescription(/could not be read/);
  await expect(page.getByText(NEEDS_OPERATOR)).toHaveCount(0);
});
