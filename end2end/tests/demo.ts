import { Browser, expect, Page } from "@playwright/test";

/** The demo tenants and password seeded by `serve --demo` (src/server/seed.rs). */
export const CONTOSO = "6f1c2a3b-0000-4000-8000-00000000c0de";
export const FABRIKAM = "9a7d4e21-0000-4000-8000-0000000fab01";
export const PASSWORD = "tenantatlas-demo";
/**
 * The client secret the demo Graph simulator accepts in the tests (playwright.config.ts passes
 * it with --demo-graph-secret-file): a tenant connected through the UI with it is served by the
 * simulator, which serves any tenant id.
 */
export const SIM_SECRET = "e2e-simulator-client-secret";

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

/** Calls a server function from the signed-in browser context, as the app's forms do. */
export async function call(page: Page, endpoint: string, form: Record<string, string>) {
  const origin = new URL(page.url()).origin;
  const response = await page.request.post(`/api/${endpoint}`, { form, headers: { Origin: origin } });
  expect(response.status(), `${endpoint}: ${await response.text()}`).toBe(200);
  return response.json();
}

/** A page of its own (own cookies) with `email` signed in, beside the test's page. */
export async function pageAs(browser: Browser, email: string) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await signIn(page, email);
  return page;
}

/** Waits until run `runId` of `tenant` has succeeded. */
export async function runCompleted(page: Page, tenant: string, runId: number) {
  await expect
    .poll(async () => (await call(page, "runs/get", { tenant, id: String(runId) })).status, {
      timeout: 60_000,
    })
    .toBe("Completed");
}

/**
 * Connects a new tenant named `name` (the signed-in user must be an instance admin, who becomes
 * its owner) and syncs its inventory: a tenant of the caller's own, served by the demo
 * simulator under a fresh id. Answers its external id.
 */
export async function connectTenant(page: Page, name: string) {
  const tenant = crypto.randomUUID();
  await call(page, "tenants/connect", { tenant, name, client_id: "e2e-app", secret: SIM_SECRET });
  const sync = await call(page, "runs/sync-inventory", { tenant });
  await runCompleted(page, tenant, sync.run_id);
  return tenant;
}

/**
 * Queues a run adding two policies to a new backup set of `tenant` (named `name`) and waits
 * until it has succeeded; answers the run's and the set's ids.
 */
export async function finishedRun(page: Page, tenant: string, name = `E2E runs ${Date.now()}`) {
  const set = await call(page, "backup-sets/create", { tenant, name, description: "" });
  const policies = await call(page, "policies/list", { tenant, backup_set_id: String(set.id) });
  const run = await call(page, "runs/add-policies", {
    tenant,
    backup_set_id: String(set.id),
    policy_ids: `${policies.rows[0].id},${policies.rows[1].id}`,
  });
  await runCompleted(page, tenant, run.run_id);
  return { runId: run.run_id as number, setId: set.id as number };
}

/** Creates a backup set with a unique name in `tenant`, opens it and waits for hydration. */
export async function openNewBackupSet(page: Page, tenant: string, prefix: string) {
  const name = `${prefix} ${Date.now()}`;
  await page.goto(`/t/${tenant}/backup-sets`);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await page.getByLabel("Name").fill(name);
  await page.getByRole("button", { name: "Create backup set" }).click();
  await page.getByRole("link", { name }).click();
  await expect(page.getByTestId("backup-set-name")).toHaveText(name);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  return name;
}

/** Opens the policy picker of the backup set on screen, once its first row shows. */
export async function openPicker(page: Page) {
  await page.getByRole("button", { name: "Add policies" }).click();
  const picker = page.getByTestId("policy-picker");
  await expect(picker.getByTestId("policy-row").first()).toBeVisible();
  return picker;
}

/** Opens the picker and ticks the first `n` selectable rows. */
export async function selectRows(page: Page, n: number) {
  const picker = await openPicker(page);
  const boxes = picker.locator('tbody input[type="checkbox"]:not([disabled])');
  for (let i = 0; i < n; i++) await boxes.nth(i).check();
  await expect(picker.getByTestId("selection-count")).toHaveText(n === 1 ? "1 policy selected" : `${n} policies selected`);
  return picker;
}

// The demo simulator's port (playwright.config.ts: the app's port + 1000).
export const SIM = `http://127.0.0.1:${Number(process.env.E2E_PORT ?? 3100) + 1000}`;

/** Changes the demo simulator's knobs (latency, faults, app registrations) for the next requests. */
export async function knobs(page: Page, patch: Record<string, unknown>) {
  const response = await page.request.post(`${SIM}/_sim/knobs`, { data: patch });
  expect(response.status(), await response.text()).toBe(200);
}

/** The demo's own latency and no forced failures, as `serve --demo` starts them. */
export async function demoKnobs(page: Page) {
  await knobs(page, {
    latency_ms: 30,
    latency_jitter_ms: 40,
    rate_404: 0,
    faults: {},
    throttle_limit: 1000,
    throttle_window_ms: 20_000,
  });
}
