import { test } from "@playwright/test";
import { expectAccessible } from "./axe";
import { visitEveryPage } from "./tour";

// axe-core on every page, in the light and in the dark colour scheme (style/main.css switches on
// prefers-color-scheme, so contrast is checked for both palettes).
for (const colorScheme of ["light", "dark"] as const) {
  test(`every page has no serious or critical axe violation (${colorScheme})`, async ({ page }) => {
    test.setTimeout(120_000);
    await page.emulateMedia({ colorScheme });
    await visitEveryPage(page, (what) => expectAccessible(page, `${what} (${colorScheme})`));
  });
}
