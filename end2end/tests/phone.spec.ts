import { expect, Page, test } from "@playwright/test";
import { expectAccessible } from "./axe";
import { call, CONTOSO, FABRIKAM, finishedRun, openHydrated, pageAs, signIn } from "./demo";
import { visitEveryPage } from "./tour";

// A phone held upright (390 × 844 CSS pixels, as an iPhone 12–15): no page may be wider than the
// viewport, so nothing scrolls the whole page sideways (wide tables scroll inside themselves).
const PHONE_WIDTH = 390;
test.use({ viewport: { width: PHONE_WIDTH, height: 844 }, isMobile: true, hasTouch: true });

// The tour's pages include a tenant named with the longest name allowed (the tenant switcher)
// and names with no break point (a backup set's, repeated on its run's page). Each page is
// scanned by axe at this width too: tables that scroll inside themselves must be reachable by
// keyboard (scrollable-region-focusable).
test("no page is wider than a 390 px phone", async ({ page }) => {
  test.setTimeout(240_000);
  await visitEveryPage(page, async (what) => {
    await expectAccessible(page, `${what} (${PHONE_WIDTH} px)`);
    const { scrollWidth, innerWidth } = await page.evaluate(() => ({
      scrollWidth: document.documentElement.scrollWidth,
      innerWidth: window.innerWidth,
    }));
    // A phone browser zooms out to fit a wider page (innerWidth grows with it), so the widths
    // are compared with the phone's 390 px.
    expect(scrollWidth, `${what}: page width at a ${PHONE_WIDTH} px viewport`).toBeLessThanOrEqual(PHONE_WIDTH);
    expect(innerWidth, `${what}: the layout viewport`).toBe(PHONE_WIDTH);
    await expectWithinViewport(page, ".notification-panel", what);
  });
});

/**
 * Fails when an element matching `selector` sticks out of the viewport on either side: the
 * page's scrollWidth only grows with what sticks out on the right.
 */
async function expectWithinViewport(page: Page, selector: string, what: string) {
  const boxes = await page.locator(selector).evaluateAll((elements) =>
    elements.map((element) => {
      const { left, right } = element.getBoundingClientRect();
      return { left, right };
    }),
  );
  for (const { left, right } of boxes) {
    expect(left, `${what}: ${selector}'s left edge`).toBeGreaterThanOrEqual(0);
    expect(right, `${what}: ${selector}'s right edge`).toBeLessThanOrEqual(PHONE_WIDTH);
  }
}

test("the notification panel fits a 390 px phone", async ({ page }) => {
  await signIn(page, "operator@fabrikam.example");
  await finishedRun(page, FABRIKAM);
  await openHydrated(page, `/t/${FABRIKAM}/backup-sets`);
  await page.getByTestId("notification-bell").click();
  await expect(page.getByTestId("notification-panel").getByTestId("notification").first()).toBeVisible();
  await expectWithinViewport(page, ".notification-panel", "backup sets with the notifications open");
});

test("a policy version on a 390 px phone: nested settings indented, the selected tab marked, Raw JSON scrolling inside its box", async ({ page }) => {
  await signIn(page, "operator@contoso.example");
  await openHydrated(page, `/t/${CONTOSO}/policies?search=edited%20twice`);
  await page.getByRole("link", { name: /edited twice/ }).click();
  await page.getByTestId("versions").locator("tbody tr").first().getByRole("link", { name: "View" }).click();
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  // The version has settings nested one level: those rows are indented further (by CSS classes;
  // a style attribute would be refused by the page's CSP and leave every row flush).
  const indents = await page
    .getByTestId("settings-panel")
    .locator("th[scope=row]")
    .evaluateAll((cells) => cells.map((cell) => parseFloat(getComputedStyle(cell).paddingLeft)));
  expect(indents.length).toBeGreaterThan(1);
  expect(Math.max(...indents)).toBeGreaterThan(Math.min(...indents));
  await page.getByRole("tab", { name: "Raw JSON" }).click();
  const raw = page.locator("pre.raw-json");
  await expect(raw).toBeVisible();
  // The selected tab looks selected: it is drawn unlike the other.
  const look = (name: string) =>
    page.getByRole("tab", { name }).evaluate((tab) => {
      const style = getComputedStyle(tab);
      return `${style.color} ${style.borderBottomColor} ${style.fontWeight}`;
    });
  await expect(page.getByRole("tab", { name: "Raw JSON" })).toHaveAttribute("aria-selected", "true");
  expect(await look("Raw JSON")).not.toBe(await look("Settings"));
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

test("a user name with no break point fits the header of a 390 px phone", async ({ page, browser }) => {
  // An account of its own, named through Fabrikam's invitation (names may be 100 characters
  // long); it leaves the tenant again, so other specs find its members unchanged.
  const owner = await pageAs(browser, "admin@contoso.example");
  const email = `e2e-long-name-${Date.now()}@example.com`;
  const name = `Administrator_Northwind_Traders_Endpoint_Management_${Date.now()}`;
  const invited = await call(owner, "members/add", { tenant: FABRIKAM, email, role: "readonly" });
  try {
    await openHydrated(page, invited.Invited.link);
    await page.getByLabel("Your name").fill(name);
    await page.getByLabel("Password", { exact: true }).fill("a long enough password here");
    await page.getByLabel("Password again").fill("a long enough password here");
    await page.getByRole("button", { name: "Create account and sign in" }).click();
    await expect(page).toHaveURL(new RegExp(`/t/${FABRIKAM}/backup-sets$`));
    for (const [what, path] of [
      ["a tenant page", `/t/${FABRIKAM}/backup-sets`],
      ["the start page", "/"],
    ]) {
      await openHydrated(page, path);
      await expect(page.getByTestId("user-name")).toHaveText(name);
      const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
      expect(scrollWidth, `${what}: page width at a ${PHONE_WIDTH} px viewport`).toBeLessThanOrEqual(PHONE_WIDTH);
      await expectWithinViewport(page, ".user-name", what);
    }
  } finally {
    const members = await call(owner, "members/list", { tenant: FABRIKAM });
    const joined = members.find((m: { email: string }) => m.email === email);
    if (joined) {
      await call(owner, "members/remove", { tenant: FABRIKAM, user_id: String(joined.user_id) });
    } else {
      const invitations = await call(owner, "invitations/list", { tenant: FABRIKAM });
      const open = invitations.find((i: { email: string }) => i.email === email);
      if (open) {
        await call(owner, "invitations/revoke", { tenant: FABRIKAM, id: String(open.id) });
      }
    }
    await owner.context().close();
  }
});
