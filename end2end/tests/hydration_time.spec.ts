import { expect, Page, test, TestInfo } from "@playwright/test";
import { FABRIKAM, finishedRun, signIn } from "./demo";

// Figures for docs/benchmarks.md, not pass/fail timings: the time from navigation until the app
// marks `<body data-hydrated>` (once the page, and the chunk of the bundle it needs, is
// interactive). The median of several loads is printed and attached to the test result.

/** Records the moment of the mark, seen by an observer that runs before the page's own
 * scripts (init scripts run through DevTools, outside the page's CSP). */
async function observeHydration(page: Page) {
  await page.addInitScript(() => {
    new MutationObserver((_, observer) => {
      if (document.body?.hasAttribute("data-hydrated")) {
        (window as unknown as { hydratedAt: number }).hydratedAt = performance.now();
        observer.disconnect();
      }
    }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-hydrated"] });
  });
}

/** Loads `path` `loads` times and reports the median time to hydration under `label`. */
async function measure(page: Page, testInfo: TestInfo, label: string, path: string, loads: number) {
  const samples: number[] = [];
  for (let i = 0; i < loads; i++) {
    await page.goto(path);
    await expect(page.locator("body[data-hydrated]")).toHaveCount(1, { timeout: 60_000 });
    samples.push(await page.evaluate(() => (window as unknown as { hydratedAt: number }).hydratedAt));
  }
  samples.sort((a, b) => a - b);
  const line = `${label}: median ${Math.round(samples[Math.floor(loads / 2)])} ms ` +
    `(min ${Math.round(samples[0])}, max ${Math.round(samples[loads - 1])}; ${loads} loads)`;
  console.log(line);
  await testInfo.attach(label, { body: line, contentType: "text/plain" });
}

/** A signed-in page with a backup set to show, the hydration observer and a DevTools session. */
async function prepare(page: Page) {
  await signIn(page, "operator@fabrikam.example");
  const { setId } = await finishedRun(page, FABRIKAM);
  await observeHydration(page);
  return { setPath: `/t/${FABRIKAM}/backup-sets/${setId}`, cdp: await page.context().newCDPSession(page) };
}

test("time to hydration of the backup set page, CPU throttled 4×", async ({ page }, testInfo) => {
  test.setTimeout(120_000);
  const { setPath, cdp } = await prepare(page);
  await cdp.send("Emulation.setCPUThrottlingRate", { rate: 4 });
  await measure(page, testInfo, "hydration of the backup set page, CPU 4× slower", setPath, 5);
  await cdp.send("Emulation.setCPUThrottlingRate", { rate: 1 });
});

// A first visit, where the bundle's size counts: the browser's cache is off and the network is
// Chrome's emulation of a 10 Mbit/s line with 40 ms of latency.
test("time to hydration on a first visit over a 10 Mbit/s, 40 ms network", async ({ page }, testInfo) => {
  test.setTimeout(180_000);
  const { setPath, cdp } = await prepare(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false,
    latency: 40,
    downloadThroughput: 10_000_000 / 8,
    uploadThroughput: 5_000_000 / 8,
  });
  await measure(page, testInfo, "first visit of the start page, 10 Mbit/s, 40 ms", "/", 3);
  await measure(page, testInfo, "first visit of the backup set page, 10 Mbit/s, 40 ms", setPath, 3);
  await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
});
