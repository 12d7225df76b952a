import { expect, test } from "@playwright/test";
import { CONTOSO, submitSignIn } from "./demo";

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
