import { expect, test } from "@playwright/test";
import { expectAccessible } from "./axe";
import { CONTOSO, FABRIKAM, finishedRun, openHydrated, openNewBackupSet, selectRows, signIn } from "./demo";
import { visitEveryPage } from "./tour";

// axe-core on every page, in the light and in the dark colour scheme (style/main.css switches on
// prefers-color-scheme, so contrast is checked for both palettes): one tour, each page scanned in
// both (the stylesheet has no transitions, so a scheme applies at once).
test("every page has no serious or critical axe violation, light or dark", async ({ page }) => {
  test.setTimeout(300_000);
  await visitEveryPage(page, async (what) => {
    for (const colorScheme of ["light", "dark"] as const) {
      await page.emulateMedia({ colorScheme });
      await expectAccessible(page, `${what} (${colorScheme})`);
    }
  });
});

// axe leaves text of one or two characters to a person ("too short to determine if it is actual
// text"), which is what the bell's unread badge shows: its contrast is computed here, in both
// schemes, with WCAG's formula (4.5:1 for its small bold text).
test("the bell's unread badge is legible in both colour schemes", async ({ page }) => {
  await signIn(page, "operator@fabrikam.example");
  await finishedRun(page, FABRIKAM);
  for (const colorScheme of ["light", "dark"] as const) {
    await page.emulateMedia({ colorScheme });
    await openHydrated(page, `/t/${FABRIKAM}/backup-sets`);
    const badge = page.getByTestId("notification-count");
    await expect(badge).toBeVisible();
    const [color, background] = await badge.evaluate((element) => {
      const style = getComputedStyle(element);
      return [style.color, style.backgroundColor];
    });
    expect(contrast(color, background), `${color} on ${background} (${colorScheme})`).toBeGreaterThanOrEqual(4.5);
  }
});

// The focus ring (WCAG 1.4.11: 3:1 against what surrounds it), in both schemes: drawn at all, and
// on a link of the page, on one of the header (a dark background of its own), on a link of the
// notification panel (a light panel inside that header) and on a toast's link (dark in both
// schemes).
test("the focus ring stands out in both colour schemes", async ({ page }) => {
  test.setTimeout(120_000);
  await signIn(page, "operator@fabrikam.example");
  // A finished run, so the bell's panel lists a notification with a link.
  await finishedRun(page, FABRIKAM, `E2E focus ${Date.now()}`);
  // A submit from the picker, so the page shows a toast with its link.
  await openNewBackupSet(page, FABRIKAM, "E2E focus");
  const picker = await selectRows(page, 1);
  await picker.getByRole("button", { name: "Add selected" }).click();
  const toastLink = page.getByTestId("toast").first().getByRole("link", { name: "View run" });
  await expect(toastLink).toBeVisible();
  // The panel opened from the keyboard, so a focus moved into it draws its ring.
  await page.getByTestId("notification-bell").focus();
  await page.keyboard.press("Enter");
  const panelLink = page.getByTestId("notification-panel").locator("a").first();
  await expect(panelLink).toBeVisible();
  for (const colorScheme of ["light", "dark"] as const) {
    await page.emulateMedia({ colorScheme });
    // The toast first: focus in the list holds it past its lifetime.
    for (const link of [toastLink, page.locator("main a").first(), page.locator(".app-header a.brand"), panelLink]) {
      // Focused before any click, so :focus-visible draws the ring as for the keyboard.
      await link.focus();
      expect(await link.evaluate((element) => element.matches(":focus-visible"))).toBe(true);
      const [style, width, ring, background] = await link.evaluate((element) => {
        let behind: Element | null = element;
        let colour = "rgba(0, 0, 0, 0)";
        while (behind && /rgba\(.*, 0\)|transparent/.test(colour)) {
          colour = getComputedStyle(behind).backgroundColor;
          behind = behind.parentElement;
        }
        const own = getComputedStyle(element);
        return [own.outlineStyle, own.outlineWidth, own.outlineColor, colour];
      });
      const what = `${style} ${width} ${ring} ring on ${background} (${colorScheme})`;
      // An outline of style none still computes a colour (the text's): the ring must be drawn.
      expect(style, what).not.toBe("none");
      expect(parseFloat(width), what).toBeGreaterThanOrEqual(2);
      expect(contrast(ring, background), what).toBeGreaterThanOrEqual(3);
    }
  }
});

// A disabled button is not busy: the busy cursor is for a button marked aria-busy (members.rs),
// not for one that waits for a choice, such as Execute before any preview.
test("a disabled button shows no busy cursor, a busy one does", async ({ page }) => {
  await signIn(page, "manager@contoso.example");
  await openHydrated(page, `/t/${CONTOSO}/backup-sets`);
  await page.getByRole("link", { name: "Baseline (demo)" }).click();
  await page.getByTestId("restore-set").click();
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  const execute = page.getByRole("button", { name: "Execute" });
  await expect(execute).toBeDisabled();
  const cursor = await execute.evaluate((element) => getComputedStyle(element).cursor);
  expect(cursor).not.toBe("progress");
  const busy = await page.evaluate(() => {
    const button = document.createElement("button");
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    document.querySelector("main")!.append(button);
    const cursor = getComputedStyle(button).cursor;
    button.remove();
    return cursor;
  });
  expect(busy).toBe("progress");
});

/** WCAG 2 contrast ratio of two opaque `rgb(r, g, b)` colours. */
function contrast(a: string, b: string): number {
  const luminance = (css: string) => {
    const [r, g, b] = (css.match(/\d+(\.\d+)?/g) ?? []).slice(0, 3).map((part) => {
      const c = Number(part) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const [light, dark] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (light + 0.05) / (dark + 0.05);
}
