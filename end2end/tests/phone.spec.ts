import { expect, test } from "@playwright/test";
import { CONTOSO, openHydrated, signIn } from "./demo";
import { visitEveryPage } from "./tour";

// A phone held upright (390 × 844 CSS pixels, as an iPhone 12–15): no page may be wider than the
// viewport, so nothing scrolls the whole page sideways (wide tables scroll inside themselves).
test.use({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });

test("no page is wider than a 390 px phone", async ({ page }) => {
  test.setTimeout(120_000);
  await visitEveryPage(page, async (what) => {
    const { scrollWidth, innerWidth } = await page.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth,
    }));
    expect(scrollWidth, `${what}: page width at a ${innerWidth} px viewport`).toBeLessThanOrEqual(innerWidth);
  });
});

test("a policy version's Raw JSON scrolls inside its box on a 390 px phone", async ({ page }) => {
  await signIn(page, "operator@contoso.example");
  await openHydrated(page, `/t/${CONTOSO}/policies?search=edited%20twice`);
  await page.getByRole("link", { name: /edited twice/ }).click();
  await page.getByTestId("versions").locator("tbody tr").first().getByRole("link", { name: "View" }).click();
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await page.getByRole("tab", { name: "Raw JSON" }).click();
  const raw = page.locator("pre.raw-json");
  await expect(raw).toBeVisible();
  const { scrollWidth, innerWidth, rawScrolls, rawOverflow, rawRight } = await page.evaluate(() => {
    const pre = document.querySelector("pre.raw-json") as HTMLElement;
    return {
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth,
      rawScrolls: pre.scrollWidth > pre.clientWidth,
      rawOverflow: getComputedStyle(pre).overflowX,
      rawRight: pre.getBoundingClientRect().right,
    };
  });
  // The JSON has lines wider than the phone: they scroll inside the box, not the page (a phone
  // browser zooms out to a wider page, so the widths are compared with the phone's 390 px).
  expect(rawScrolls).toBe(true);
  expect(["auto", "scroll"]).toContain(rawOverflow);
  expect(rawRight).toBeLessThanOrEqual(390);
  expect(innerWidth).toBe(390);
  expect(scrollWidth).toBeLessThanOrEqual(innerWidth);
});
