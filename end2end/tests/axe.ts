import AxeBuilder from "@axe-core/playwright";
import { expect, Page } from "@playwright/test";

/**
 * Runs axe-core on the current page (every rule axe ships) and fails on any serious or critical
 * violation, listing each with the elements it found.
 *
 * The pages' Content-Security-Policy admits only our own and nonced scripts, so a `<script>`
 * added to the page would be refused. AxeBuilder does not add one: it passes axe's source to
 * `page.evaluate`, which runs through the browser's DevTools protocol, outside the page's CSP.
 * The scan therefore runs against the policy users get, without `bypassCSP`.
 */
export async function expectAccessible(page: Page, what: string) {
  const results = await new AxeBuilder({ page }).analyze();
  const blocking = results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  expect(blocking, `axe on ${what}`).toEqual([]);
}
