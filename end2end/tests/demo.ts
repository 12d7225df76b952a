import { expect, Page } from "@playwright/test";

/** The demo tenants and password seeded by `serve --demo` (src/server/seed.rs). */
export const CONTOSO = "6f1c2a3b-0000-4000-8000-00000000c0de";
export const FABRIKAM = "9a7d4e21-0000-4000-8000-0000000fab01";
export const PASSWORD = "tenantatlas-demo";

/** Opens a page and waits until the wasm bundle has hydrated it. */
export async function openHydrated(page: Page, path: string) {
  await page.goto(path);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
}

/** Fills and submits the sign-in form of the current (hydrated) sign-in page. */
export async function submitSignIn(page: Page, email: string, password = PASSWORD) {
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await page.getByLabel("E-mail").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

/** Signs a demo user in through the sign-in page and waits for the start page. */
export async function signIn(page: Page, email: string) {
  await page.goto("/sign-in");
  await submitSignIn(page, email);
  await expect(page.getByRole("heading", { name: "Your tenants" })).toBeVisible();
}
