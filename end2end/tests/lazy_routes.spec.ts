import { expect, Page, test } from "@playwright/test";
import { FABRIKAM, finishedRun, openHydrated, signIn } from "./demo";

// The bundle is split at the lazy routes, in page areas (docs/build.md): a page's first visit
// loads the main module and the chunks of the page's area, which the server-rendered page
// preloads; a client-side navigation to another area fetches that area's chunks; every file of
// the bundle lives in a folder named after its content and is cached for a year.

/** The wasm files the page requests from now on (path only). */
function wasmRequests(page: Page): string[] {
  const seen: string[] = [];
  page.on("request", (request) => {
    const path = new URL(request.url()).pathname;
    if (path.endsWith(".wasm")) seen.push(path);
  });
  return seen;
}

const name = (path: string) => path.split("/").pop() ?? path;

test("a page loads its area's chunks, preloaded by the server, and a navigation fetches the next area's", async ({ page }) => {
  test.setTimeout(90_000);
  await signIn(page, "operator@fabrikam.example");
  const { setId } = await finishedRun(page, FABRIKAM);

  const requested = wasmRequests(page);
  const response = await page.goto(`/t/${FABRIKAM}/backup-sets/${setId}`);
  const html = await response!.text();
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);

  // The server named the backups area's chunk among its preloads (the splitter's prefetch map),
  // and not the runs area's.
  const preloaded = [...html.matchAll(/<link [^>]*>/g)]
    .map((m) => m[0])
    .filter((link) => link.includes('rel="preload"'))
    .map((link) => link.match(/href="([^"]+\.wasm)"/)?.[1] ?? "");
  const ownChunk = preloaded.find((href) => /split_backup_pages_/.test(href));
  expect(ownChunk, `preloads: ${preloaded.join(", ")}`).toBeTruthy();
  expect(preloaded.some((href) => /split_run_pages_/.test(href))).toBe(false);

  // The browser fetched the main module and the area's chunk, nothing of the runs area.
  expect(requested.map(name)).toContain("tenantatlas.wasm");
  expect(requested.map(name)).toContain(name(ownChunk!));
  expect(requested.some((path) => /split_run_pages_/.test(path))).toBe(false);

  // A client-side navigation to the runs page fetches the runs area's chunk, not the main module.
  const before = requested.length;
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Runs", exact: true }).click();
  await expect(page).toHaveURL(new RegExp(`/t/${FABRIKAM}/runs$`));
  await expect(page.getByTestId("runs-table")).toBeVisible();
  const fetched = requested.slice(before);
  expect(fetched.some((path) => /split_run_pages_/.test(path)), fetched.join(", ")).toBe(true);
  expect(fetched.map(name)).not.toContain("tenantatlas.wasm");
  // The page behind the chunk is interactive: a filter changes the URL.
  await page.getByLabel("Status").selectOption("completed");
  await expect(page).toHaveURL(/\?status=completed$/);
});

test("the bundle's files live in a content-named folder, precompressed and cached for a year", async ({ page, request }) => {
  const response = await page.goto("/sign-in");
  const html = await response!.text();
  const wasm = html.match(/href="(\/pkg\/b-[0-9a-f]{16,}\/tenantatlas\.wasm)"/)?.[1];
  expect(wasm, "the page links the main module in a content-named folder").toBeTruthy();
  for (const encoding of ["br", "gzip"]) {
    const file = await request.get(wasm!, { headers: { "accept-encoding": encoding } });
    expect(file.status()).toBe(200);
    expect(file.headers()["content-encoding"]).toBe(encoding);
    expect(file.headers()["cache-control"]).toBe("public, max-age=31536000, immutable");
  }
  // The stylesheet keeps its name and is revalidated.
  const css = await request.get("/pkg/tenantatlas.css");
  expect(css.headers()["cache-control"]).toBe("no-cache");
});

test("when an area's chunk cannot be fetched, the page says it stopped and a reload brings the page", async ({ page }) => {
  await signIn(page, "operator@fabrikam.example");
  await openHydrated(page, `/t/${FABRIKAM}/backup-sets`);
  // The runs area's own chunk fails, as after a dropped connection.
  const runsChunk = /\/split_run_pages_[^/]*\.wasm$/;
  await page.route(runsChunk, (route) => route.abort("connectionfailed"));
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Runs", exact: true }).click();
  const stopped = page.getByRole("alert").filter({ hasText: "This page stopped working" });
  await expect(stopped).toBeVisible();
  // The link reloads from the server, which renders the page the navigation was going to.
  await page.unroute(runsChunk);
  await stopped.getByRole("link", { name: "Reload the page" }).click();
  await expect(page).toHaveURL(new RegExp(`/t/${FABRIKAM}/runs$`));
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await expect(stopped).toHaveCount(0);
  await page.getByLabel("Status").selectOption("completed");
  await expect(page).toHaveURL(/\?status=completed$/);
});
