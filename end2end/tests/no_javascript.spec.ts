import { expect, test } from "@playwright/test";
import { FABRIKAM, signIn } from "./demo";

// Before the bundle has hydrated the page (or without JavaScript), a form posts what the server
// rendered: its hidden fields carry their values in the HTML.

test("form fields carry their values in the HTML, before (or without) JavaScript", async ({ page, browser }) => {
  const anonymous = await browser.newContext({ javaScriptEnabled: false });
  const signInPage = await anonymous.newPage();
  await signInPage.goto(`/sign-in?next=${encodeURIComponent(`/t/${FABRIKAM}/runs`)}`);
  await expect(signInPage.locator('input[type="hidden"][name="next"]')).toHaveValue(`/t/${FABRIKAM}/runs`);
  await anonymous.close();

  // The pages' forms stream in with their data: read the HTML the server sends, as a page
  // before hydration has it.
  await signIn(page, "admin@contoso.example");
  for (const path of ["backup-sets", "members", "settings"]) {
    const html = await (await page.request.get(`/t/${FABRIKAM}/${path}`)).text();
    const inputs = html.match(/<input[^>]*name="tenant"[^>]*>/g) ?? [];
    expect(inputs.length, path).toBeGreaterThan(0);
    for (const input of inputs) expect(input, path).toContain(`value="${FABRIKAM}"`);
  }
  const audit = await (await page.request.get(`/t/${FABRIKAM}/audit?action=run.cancel`)).text();
  expect(audit.match(/<input[^>]*name="action"[^>]*>/)?.[0]).toContain('value="run.cancel"');
});
