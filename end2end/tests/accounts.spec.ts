import { expect, test } from "@playwright/test";
import { CONTOSO, FABRIKAM, submitSignIn } from "./demo";

test("anonymous visitors are sent to sign-in and back to the page they asked for", async ({ page }) => {
  await page.goto(`/t/${CONTOSO}/runs`);
  await expect(page).toHaveURL(/\/sign-in\?next=/);
  await submitSignIn(page, "operator@contoso.example", "wrong password!");
  await expect(page.getByRole("alert").filter({ hasText: "incorrect" })).toBeVisible();
  await submitSignIn(page, "operator@contoso.example");
  await expect(page).toHaveURL(new RegExp(`/t/${CONTOSO}/runs$`));
  await expect(page.getByRole("heading", { name: "Runs" })).toBeVisible();
});

test("an operator sees only their tenant; another tenant's pages answer 403", async ({ page }) => {
  await page.goto("/sign-in");
  await submitSignIn(page, "operator@contoso.example");
  await expect(page.getByRole("heading", { name: "Your tenants" })).toBeVisible();
  await expect(page.locator(".tenant-list li")).toHaveCount(1);
  const response = await page.goto(`/t/${FABRIKAM}/backup-sets`);
  expect(response?.status()).toBe(403);
  await expect(page.getByRole("heading", { name: "Access denied" })).toBeVisible();
});

test("a readonly member sees the create form disabled with the reason, and the server refuses too", async ({ page }) => {
  await page.goto("/sign-in");
  await submitSignIn(page, "readonly@contoso.example");
  await expect(page.getByRole("heading", { name: "Your tenants" })).toBeVisible();
  await page.goto(`/t/${CONTOSO}/backup-sets`);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await expect(page.getByTestId("read-only-notice")).toContainText("read-only");
  await expect(page.getByRole("button", { name: "Create backup set" })).toBeDisabled();

  // Calling the server function directly, with the readonly session, is refused.
  const origin = new URL(page.url()).origin;
  const status = await page.evaluate(async ([tenant, origin]) => {
    const body = new URLSearchParams({ tenant, name: "sneaky", description: "" });
    const response = await fetch(`${origin}/api/backup-sets/create`, { method: "POST", body });
    return response.status;
  }, [CONTOSO, origin]);
  expect(status).toBe(403);
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
