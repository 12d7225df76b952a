import { expect, test } from "@playwright/test";
import { CONTOSO, FABRIKAM, openHydrated, signIn, submitSignIn } from "./demo";

test("anonymous visitors are sent to sign-in and back to the page they asked for", async ({ page }) => {
  await page.goto(`/t/${CONTOSO}/runs`);
  await expect(page).toHaveURL(/\/sign-in\?next=/);
  await submitSignIn(page, "operator@contoso.example", "wrong password!");
  await expect(page.getByRole("alert").filter({ hasText: "incorrect" })).toBeVisible();
  await submitSignIn(page, "operator@contoso.example");
  await expect(page).toHaveURL(new RegExp(`/t/${CONTOSO}/runs$`));
  await expect(page.getByRole("heading", { name: "Runs" })).toBeVisible();
});

test("signing out ends the session", async ({ page }) => {
  await page.goto("/sign-in");
  await submitSignIn(page, "operator@contoso.example");
  await expect(page.getByRole("heading", { name: "Your tenants" })).toBeVisible();
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/sign-in/);
  await page.goto(`/t/${CONTOSO}/backup-sets`);
  await expect(page).toHaveURL(/\/sign-in\?next=/);
});

test("an arrow key in the tenant switcher only chooses; Switch goes to the tenant chosen", async ({ page }) => {
  // The demo admin is a member of Contoso and Fabrikam.
  await signIn(page, "admin@contoso.example");
  await openHydrated(page, `/t/${CONTOSO}/backup-sets`);
  const url = page.url();
  const navigations: string[] = [];
  page.on("request", (request) => {
    if (request.isNavigationRequest()) navigations.push(request.url());
  });
  // A mark in this document: a page load would take it away.
  await page.evaluate(() => ((window as unknown as { stayed: boolean }).stayed = true));

  // Chromium on Linux fires `change` for an arrow key on a closed select: it only chooses.
  const switcher = page.getByTestId("tenant-switcher");
  await switcher.focus();
  await page.keyboard.press("ArrowDown");
  await expect(switcher).toHaveValue(FABRIKAM);
  await expect(switcher).toBeFocused();
  expect(await page.evaluate(() => (window as unknown as { stayed?: boolean }).stayed)).toBe(true);
  expect(page.url()).toBe(url);
  expect(navigations).toEqual([]);

  // From the keyboard: Tab to Switch, Enter.
  await page.keyboard.press("Tab");
  await expect(page.getByTestId("switch-tenant")).toBeFocused();
  await expect(page.getByRole("button", { name: "Switch tenant" })).toBeVisible();
  await page.keyboard.press("Enter");
  await expect(page).toHaveURL(new RegExp(`/t/${FABRIKAM}/backup-sets$`));
  await expect(page.getByTestId("tenant-switcher")).toHaveValue(FABRIKAM);
});

test("a member of one tenant has the switcher without a Switch button", async ({ page }) => {
  await signIn(page, "operator@contoso.example");
  await openHydrated(page, `/t/${CONTOSO}/backup-sets`);
  await expect(page.getByTestId("tenant-switcher")).toHaveValue(CONTOSO);
  await expect(page.getByTestId("switch-tenant")).toHaveCount(0);
});

test("the switcher shows the tenant of a URL that spells its id in capitals", async ({ page }) => {
  await signIn(page, "admin@contoso.example");
  const switcher = page.getByTestId("tenant-switcher");
  // Each of the two: one of them is not the switcher's first option.
  for (const tenant of [CONTOSO, FABRIKAM]) {
    await openHydrated(page, `/t/${tenant.toUpperCase()}/backup-sets`);
    await expect(switcher).toHaveValue(tenant);
  }
  // Switch goes to the tenant shown: chosen again, Contoso.
  await switcher.selectOption(CONTOSO);
  await page.getByTestId("switch-tenant").click();
  await expect(page).toHaveURL(new RegExp(`/t/${CONTOSO}/backup-sets$`));
});
