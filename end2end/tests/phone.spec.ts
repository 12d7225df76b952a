import { expect, test } from "@playwright/test";
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
