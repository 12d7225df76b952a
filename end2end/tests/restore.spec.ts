import { expect, Page, test } from "@playwright/test";
import { expectAccessible } from "./axe";
import { call, CONTOSO, demoKnobs, FABRIKAM, knobs, openHydrated, signIn, SIM } from "./demo";

// The restore wizard. Contoso's demo history (src/server/seed.rs) is only previewed
// here, never executed: versions.spec.ts runs after this file and expects the baseline's two
// changes still in Intune. The execute walks a set of Fabrikam's instead, changed through the
// simulator.

const NEEDS_MANAGER = "Needs manager or owner";

/** Opens the wizard from the backup set page's "Restore…" link. */
async function openRestoreOfBaseline(page: Page) {
  await openHydrated(page, `/t/${CONTOSO}/backup-sets`);
  await page.getByRole("link", { name: "Baseline (demo)" }).click();
  await page.getByTestId("restore-set").click();
  await expect(page).toHaveURL(/\/restore\/new\?source=set-\d+$/);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await expect(page.getByTestId("source-title")).toHaveText("Baseline (demo)");
}

/** Searches the scope table for `name` and ticks its row. */
async function choose(page: Page, name: string) {
  await page.getByLabel("Search by name").fill(name);
  const row = page.getByTestId("scope-row").filter({ hasText: name });
  await expect(row).toHaveCount(1);
  await row.getByRole("checkbox").check();
}

/**
 * A new backup set of Fabrikam's policies at `indexes` (rows of its policy list), with the
 * first of them renamed in Intune since; the set, its name and the policies.
 */
async function fabrikamSetRenamedSince(page: Page, indexes: number[]) {
  const setName = `E2E restore ${Date.now()}`;
  const set = await call(page, "backup-sets/create", { tenant: FABRIKAM, name: setName, description: "" });
  const policies = await call(page, "policies/list", { tenant: FABRIKAM, backup_set_id: String(set.id) });
  const chosen = indexes.map((i) => policies.rows[i]);
  const run = await call(page, "runs/add-policies", {
    tenant: FABRIKAM,
    backup_set_id: String(set.id),
    policy_ids: chosen.map((p) => p.id).join(","),
    include_assignments: "true",
  });
  await expect
    .poll(async () => (await call(page, "runs/get", { tenant: FABRIKAM, id: String(run.run_id) })).status)
    .toBe("Completed");
  const info = await call(page, "policies/get", { tenant: FABRIKAM, id: String(chosen[0].id) });
  const mutated = await page.request.post(`${SIM}/_sim/mutate`, {
    data: { tenant: FABRIKAM, rename: true, policies: [info.graph_id] },
  });
  expect(mutated.status(), await mutated.text()).toBe(200);
  return { set, setName, policies: chosen };
}

test("an operator sees the wizard with Preview and Execute disabled, and why", async ({ page }) => {
  await signIn(page, "operator@contoso.example");
  await openRestoreOfBaseline(page);
  await expect(page.getByTestId("source-counts")).toContainText("12");
  const preview = page.getByRole("button", { name: "Run preview (dry-run)" });
  const execute = page.getByRole("button", { name: "Execute" });
  await page.getByTestId("scope-row").first().getByRole("checkbox").check();
  await expect(preview).toBeDisabled();
  await expect(preview).toHaveAccessibleDescription(NEEDS_MANAGER);
  await expect(execute).toBeDisabled();
  await expect(page.locator("#execute-needs")).toHaveText(NEEDS_MANAGER);
  await expect(page.getByTestId("no-preview")).toBeVisible();
  await expectAccessible(page, "restore wizard as operator");

  // The server refuses the same, with the same reason.
  const origin = new URL(page.url()).origin;
  const response = await page.request.post("/api/runs/restore-preview", {
    form: { tenant: CONTOSO, source: "set-1", policy_ids: "1" },
    headers: { Origin: origin },
  });
  expect(response.status()).toBe(403);
  expect(await response.text()).toContain(NEEDS_MANAGER);
});

test("a manager previews a restore of the baseline and meets every gate before Execute", async ({ page }) => {
  // The page's clock runs as usual until the end, where 15 minutes are skipped.
  await page.clock.install();
  await signIn(page, "manager@contoso.example");
  await openRestoreOfBaseline(page);
  const source = new URL(page.url()).searchParams.get("source")!;
  const count = page.getByTestId("scope-count");
  // Nothing is chosen by default, and nothing can be previewed then.
  await expect(count).toHaveText("0 of 12 policies selected");
  const preview = page.getByRole("button", { name: "Run preview (dry-run)" });
  await expect(preview).toBeDisabled();

  // The policy renamed twice since the baseline, and one that was not renamed.
  const view = await call(page, "restore/source", { tenant: CONTOSO, source });
  const other = view.candidates.find((c: { display_name: string }) => !c.display_name.includes("edited"));
  await choose(page, "edited twice");
  await choose(page, other.display_name);
  await expect(count).toHaveText("2 of 12 policies selected");
  // Without assignments, the preview checks no groups.
  await page.getByLabel("Include assignments").uncheck();
  await expectAccessible(page, "restore wizard: scope");

  await preview.click();
  await expect(page).toHaveURL(/&preview=\d+$/);
  const status = page.getByTestId("preview-status");
  await expect(status).toContainText("Preview of 2 policies");
  await expect(page.getByTestId("run-block")).toHaveCount(0);
  const renamed = page.getByTestId("plan-row").filter({ hasText: "edited twice" });
  await expect(renamed.getByTestId("plan-action")).toHaveText("Update");
  await expect(renamed).toContainText("would change");
  await expect(renamed.getByTestId("plan-diff")).toHaveAttribute("href", /\/diff\?from=\d+&to=\d+$/);
  await expect(page.getByTestId("plan-counts")).toContainText("Update: 1");

  // Execute waits for both confirmations; a name that is almost right is not enough.
  const execute = page.getByRole("button", { name: "Execute" });
  const reasons = page.getByTestId("execute-reasons");
  await expect(execute).toBeDisabled();
  await expect(reasons).toContainText("Confirm that you reviewed the impact.");
  await expect(reasons).toContainText("Type the tenant's display name exactly to confirm.");
  await page.getByLabel("I reviewed the impact").check();
  await expect(reasons).not.toContainText("reviewed the impact");
  const name = page.getByLabel(/Type the tenant's name/);
  await name.fill("Contoso");
  await expect(execute).toBeDisabled();
  await name.fill("contoso (demo)");
  await expect(execute).toBeDisabled();
  await name.fill("Contoso (demo)");
  await expect(execute).toBeEnabled();
  await expect(reasons.locator("li")).toHaveCount(0);
  // A changed scope no longer matches the preview.
  await page.getByTestId("include-scope-tags").check();
  await expect(execute).toBeDisabled();
  await expect(reasons).toContainText("Run the preview again");
  await page.getByTestId("include-scope-tags").uncheck();
  await expect(execute).toBeEnabled();
  await expectAccessible(page, "restore wizard: preview and confirmation");

  // A reload keeps the preview and its scope.
  await page.reload();
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await expect(status).toContainText("Preview of 2 policies");
  await expect(count).toHaveText("2 of 12 policies selected");
  await expect(page.getByLabel("Include assignments")).not.toBeChecked();

  // The same preview under another source (a hand-edited link) is not executed from a page
  // that shows that other source: the page says so and leads to the preview's own page.
  const previewUrl = page.url();
  const previewId = new URL(previewUrl).searchParams.get("preview")!;
  await openHydrated(page, `/t/${CONTOSO}/restore/new?source=version-${other.snapshot_id}&preview=${previewId}`);
  await expect(page.getByTestId("preview-other-source")).toBeVisible();
  await expect(page.getByTestId("scope-count")).toHaveText("1 of 1 policy selected");
  await page.getByLabel("I reviewed the impact").check();
  await page.getByLabel(/Type the tenant's name/).fill("Contoso (demo)");
  await expect(execute).toBeDisabled();
  await expect(reasons).toContainText("made from another source");
  await page.getByTestId("preview-other-source").getByRole("link").click();
  await expect(page).toHaveURL(previewUrl);
  await expect(status).toContainText("Preview of 2 policies");

  // The preview's run page shows each item's plan and leads back to the wizard at the preview.
  await status.getByRole("link", { name: /Preview run #/ }).click();
  const item = page.getByTestId("run-items").locator("tbody tr").filter({ hasText: "edited twice" });
  await expect(item.getByTestId("item-action")).toHaveText("Update");
  await page.getByTestId("restore-wizard-link").getByRole("link").click();
  await expect(status).toContainText("Preview of 2 policies");

  // The diff: the live policy against the backup.
  await renamed.getByTestId("plan-diff").click();
  const change = page.getByTestId("change");
  await expect(change).toHaveCount(1);
  await expect(change.locator("td").nth(1)).toContainText("(edited twice)");

  // A page left open past the preview's 15 minutes disables Execute by itself, and says why.
  await openHydrated(page, previewUrl);
  await expect(status).toContainText("Preview of 2 policies");
  await page.getByLabel("I reviewed the impact").check();
  await page.getByLabel(/Type the tenant's name/).fill("Contoso (demo)");
  await expect(execute).toBeEnabled();
  await page.clock.fastForward("15:01");
  await expect(execute).toBeDisabled();
  await expect(reasons).toContainText("older than 15 minutes");
});

test("Restore this version on the policy page pre-fills the scope with that policy", async ({ page }) => {
  await signIn(page, "manager@contoso.example");
  await openHydrated(page, `/t/${CONTOSO}/policies?search=edited%20twice`);
  await page.getByRole("link", { name: /edited twice/ }).click();
  const versions = page.getByTestId("versions").locator("tbody tr");
  await expect(versions).toHaveCount(3);
  // Intune holds the newest version.
  await expect(versions.first().getByTestId("current-version")).toHaveText("Current");
  await expect(page.getByTestId("current-version")).toHaveCount(1);

  await versions.last().getByTestId("restore-version").click();
  await expect(page).toHaveURL(/\/restore\/new\?source=version-\d+$/);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await expect(page.getByTestId("source-title")).toContainText("edited twice");
  await expect(page.getByTestId("scope-count")).toHaveText("1 of 1 policy selected");
  await expect(page.getByTestId("scope-row").getByRole("checkbox")).toBeChecked();
  await expect(page.getByRole("button", { name: "Run preview (dry-run)" })).toBeEnabled();
  await expectAccessible(page, "restore wizard from a version");
});

// The whole path through the Graph write path (restore.execute writing to the simulator): the
// policy renamed in Intune is written back, the other is left as it is, and the evidence reads
// both back.
test("an owner executes a reviewed preview: the run ends with evidence and the restored version is current", async ({ page }) => {
  test.setTimeout(60_000);
  await signIn(page, "admin@contoso.example");
  // A set of two Fabrikam policies, then one of them renamed in Intune.
  const { set, setName, policies } = await fabrikamSetRenamedSince(page, [5, 6]);
  const [changed, kept] = policies;

  await openHydrated(page, `/t/${FABRIKAM}/backup-sets/${set.id}`);
  await page.getByTestId("restore-set").click();
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await page.getByRole("button", { name: "Select all 2 matching" }).click();
  await page.getByRole("button", { name: "Run preview (dry-run)" }).click();
  await expect(page.getByTestId("preview-status")).toContainText("Preview of 2 policies");
  const plan = page.getByTestId("plan-row");
  await expect(plan.filter({ hasText: changed.display_name }).getByTestId("plan-action")).toHaveText("Update");
  await expect(plan.filter({ hasText: kept.display_name }).getByTestId("plan-action")).toHaveText("No change");

  const execute = page.getByRole("button", { name: "Execute" });
  await page.getByLabel("I reviewed the impact").check();
  await page.getByLabel(/Type the tenant's name/).fill("Fabrikam");
  await expect(execute).toBeDisabled();
  await page.getByLabel(/Type the tenant's name/).fill("Fabrikam (demo)");
  await execute.click();
  await expect(page.getByTestId("execute-status")).toHaveAttribute("data-status", "completed", { timeout: 30_000 });
  await expect(page.getByTestId("execute-summary")).toContainText("2 of 2 now match the backup");
  await expect(execute).toBeDisabled();

  // The run's page: each item's action and the evidence.
  await page.getByTestId("execute-run-link").click();
  await expect(page.getByTestId("run-summary")).toContainText("now match the backup");
  const items = page.getByTestId("run-items").locator("tbody tr");
  await expect(items.filter({ hasText: changed.display_name }).getByTestId("item-action")).toHaveText("Updated");
  await expect(items.filter({ hasText: kept.display_name }).getByTestId("item-action")).toHaveText("Unchanged");

  // The policy page: the backup's version (older than the renamed one the preview read) is
  // current again.
  await openHydrated(page, `/t/${FABRIKAM}/policies/${changed.id}`);
  const versions = page.getByTestId("versions").locator("tbody tr");
  await expect(versions.filter({ hasText: setName }).getByTestId("current-version")).toHaveText("Current");
  await expect(versions.first().getByTestId("current-version")).toHaveCount(0);
  await expect(page.getByTestId("current-version")).toHaveCount(1);
});

// The wizard keeps its steps across previews (a started preview only changes the URL): the
// execute of the last preview must not stand for the next one.
test("after an execute, a fresh preview on the same page can be executed", async ({ page }) => {
  test.setTimeout(90_000);
  await signIn(page, "admin@contoso.example");
  const { set, policies } = await fabrikamSetRenamedSince(page, [7]);
  await openHydrated(page, `/t/${FABRIKAM}/backup-sets/${set.id}`);
  await page.getByTestId("restore-set").click();
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await page.getByTestId("scope-row").first().getByRole("checkbox").check();
  const preview = page.getByRole("button", { name: "Run preview (dry-run)" });
  await preview.click();
  await expect(page).toHaveURL(/&preview=\d+$/);
  const planned = page.getByTestId("plan-row").filter({ hasText: policies[0].display_name }).getByTestId("plan-action");
  await expect(planned).toHaveText("Update");

  const execute = page.getByRole("button", { name: "Execute" });
  const reasons = page.getByTestId("execute-reasons");
  const reviewed = page.getByLabel("I reviewed the impact");
  const name = page.getByLabel(/Type the tenant's name/);
  const status = page.getByTestId("execute-status");
  await reviewed.check();
  await name.fill("Fabrikam (demo)");
  await execute.click();
  await expect(status).toHaveAttribute("data-status", "completed", { timeout: 30_000 });
  await expect(execute).toBeDisabled();

  // A fresh preview of the same scope: Intune now holds the backup.
  const executedUrl = page.url();
  await preview.click();
  await expect(page).not.toHaveURL(executedUrl);
  await expect(page).toHaveURL(/&preview=\d+$/);
  await expect(planned).toHaveText("No change");
  // Step 5 no longer shows the last preview's run; the new preview is reviewed again, the
  // typed name stays.
  await expect(status).toHaveCount(0);
  await expect(page.getByTestId("restore-execute")).toContainText("Nothing is written until you execute.");
  await expect(page.getByTestId("execute-error")).toBeEmpty();
  await expect(name).toHaveValue("Fabrikam (demo)");
  await expect(reviewed).not.toBeChecked();
  await expect(execute).toBeDisabled();
  await expect(reasons).toContainText("Confirm that you reviewed the impact.");
  await reviewed.check();
  await expect(reasons.locator("li")).toHaveCount(0);
  await expect(execute).toBeEnabled();
  await execute.click();
  await expect(status).toHaveAttribute("data-status", "completed", { timeout: 30_000 });
  await expect(page.getByTestId("execute-summary")).toContainText("1 of 1 now match the backup");
});

test("a new preview needs the review again", async ({ page }) => {
  await signIn(page, "manager@contoso.example");
  await openRestoreOfBaseline(page);
  const source = new URL(page.url()).searchParams.get("source")!;
  const view = await call(page, "restore/source", { tenant: CONTOSO, source });
  const other = view.candidates.find((c: { display_name: string }) => !c.display_name.includes("edited"));
  await choose(page, "edited twice");
  // Without assignments, the preview checks no groups.
  await page.getByLabel("Include assignments").uncheck();
  const preview = page.getByRole("button", { name: "Run preview (dry-run)" });
  const status = page.getByTestId("preview-status");
  await preview.click();
  await expect(page).toHaveURL(/&preview=\d+$/);
  await expect(status).toContainText("Preview of 1 policy.");

  const execute = page.getByRole("button", { name: "Execute" });
  const reasons = page.getByTestId("execute-reasons");
  const reviewed = page.getByLabel("I reviewed the impact");
  const name = page.getByLabel(/Type the tenant's name/);
  await reviewed.check();
  await name.fill("Contoso (demo)");
  await expect(execute).toBeEnabled();

  // A wider scope, previewed again: its impact was not reviewed yet.
  await choose(page, other.display_name);
  await expect(execute).toBeDisabled();
  const firstUrl = page.url();
  await preview.click();
  await expect(page).not.toHaveURL(firstUrl);
  await expect(status).toContainText("Preview of 2 policies");
  await expect(reviewed).not.toBeChecked();
  await expect(name).toHaveValue("Contoso (demo)");
  await expect(execute).toBeDisabled();
  await expect(reasons.locator("li")).toHaveText(["Confirm that you reviewed the impact."]);
  await reviewed.check();
  await expect(execute).toBeEnabled();
});

test("a running preview's polls read its plan again only when the run moved", async ({ page }) => {
  test.setTimeout(120_000);
  await signIn(page, "admin@contoso.example");
  const { set } = await fabrikamSetRenamedSince(page, [8, 9, 10, 11]);
  await openHydrated(page, `/t/${FABRIKAM}/backup-sets/${set.id}`);
  await page.getByTestId("restore-set").click();
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await page.getByRole("button", { name: "Select all 4 matching" }).click();
  // Each Graph answer takes 4 s: the run's counters stand still for several polls (1.5 s).
  await knobs(page, { latency_ms: 4_000, latency_jitter_ms: 0 });
  try {
    // What the polls read: the run's version (each answer), and the plan.
    const versions: string[] = [];
    let plans = 0;
    page.on("response", async (response) => {
      if (/\/api\/runs\/version$/.test(response.url()) && response.ok()) {
        versions.push(await response.text());
      }
    });
    page.on("request", (request) => {
      if (/\/api\/restore\/preview$/.test(request.url())) {
        plans += 1;
      }
    });
    await page.getByRole("button", { name: "Run preview (dry-run)" }).click();
    const status = page.getByTestId("preview-status");
    await expect(status).toContainText("Previewing…");
    await expect(status).toContainText("Preview of 4 policies", { timeout: 90_000 });
    // The plan is read once when the preview is opened, then once per version a poll found
    // (the first poll keeps nothing yet); polls that find the same version read nothing more.
    const distinct = new Set(versions).size;
    expect(versions.length, "version polls").toBeGreaterThanOrEqual(4);
    expect(plans, `plan reads for ${versions.length} polls of ${distinct} versions`).toBeLessThanOrEqual(distinct + 1);
    expect(plans).toBeLessThan(versions.length);
  } finally {
    await demoKnobs(page);
  }
});

/** Opens the wizard at a finished preview of every policy of Fabrikam set `set`, confirmed. */
async function confirmedPreviewOfSet(page: Page, set: { id: number }, n: number) {
  await openHydrated(page, `/t/${FABRIKAM}/backup-sets/${set.id}`);
  await page.getByTestId("restore-set").click();
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await page.getByRole("button", { name: `Select all ${n} matching` }).click();
  await page.getByRole("button", { name: "Run preview (dry-run)" }).click();
  await expect(page).toHaveURL(/&preview=\d+$/);
  await expect(page.getByTestId("preview-status")).toContainText(`Preview of ${n} policies`);
  await confirm(page);
}

/** Ticks "I reviewed the impact" and types Fabrikam's name. */
async function confirm(page: Page) {
  await page.getByLabel("I reviewed the impact").check();
  await page.getByLabel(/Type the tenant's name/).fill("Fabrikam (demo)");
}

const RUNNING = "A restore of this preview is running.";
const EXECUTED = "This preview was executed already.";

// A new preview started while the execute runs would drop the execute's answer and say
// "Nothing is written until you execute." while Intune is written, and offer Execute again.
test("while an execute runs, the preview cannot be run again and step 5 follows the execute", async ({ page }) => {
  test.setTimeout(150_000);
  await signIn(page, "admin@contoso.example");
  const { set } = await fabrikamSetRenamedSince(page, [8, 9]);
  await confirmedPreviewOfSet(page, set, 2);
  const preview = page.getByRole("button", { name: "Run preview (dry-run)" });
  const executedUrl = page.url();
  await expect(preview).toBeEnabled();
  // Each Graph answer takes 3 s: the execute runs for a while.
  await knobs(page, { latency_ms: 3_000, latency_jitter_ms: 0 });
  try {
    await page.getByRole("button", { name: "Execute" }).click();
    const status = page.getByTestId("execute-status");
    await expect(status).toBeVisible();
    await expect(status).not.toHaveAttribute("data-status", "completed");
    await expect(preview).toBeDisabled();
    await expect(page.getByTestId("preview-busy")).toHaveText(RUNNING);
    await expect(preview).toHaveAccessibleDescription(RUNNING);
    // A click on the disabled button starts nothing.
    await preview.click({ force: true });
    await expect(page).toHaveURL(executedUrl);
    await expect(page.getByTestId("restore-execute")).not.toContainText("Nothing is written");
    await expect(status).toHaveAttribute("data-status", "completed", { timeout: 120_000 });
  } finally {
    await demoKnobs(page);
  }
  // Settled: a new preview may be run, and the executed one stays on screen until then.
  await expect(page.getByTestId("execute-summary")).toContainText("2 of 2 now match the backup");
  await expect(preview).toBeEnabled();
  await expect(page.getByTestId("preview-busy")).toHaveCount(0);
});

// A reload or a second tab at a preview whose execute runs: the page learns of the execute
// from the preview, shows its progress and offers no second Execute; a tab that was already
// open and executes gets the same run back, and says so.
test("a second page on a preview whose execute runs shows that run, and its Execute reuses it", async ({ page }) => {
  test.setTimeout(150_000);
  await signIn(page, "admin@contoso.example");
  const { set } = await fabrikamSetRenamedSince(page, [10, 11]);
  await confirmedPreviewOfSet(page, set, 2);
  const previewUrl = page.url();
  // A second tab, open at the preview before the execute: its Execute is enabled.
  const second = await page.context().newPage();
  await openHydrated(second, previewUrl);
  await expect(second.getByTestId("preview-status")).toContainText("Preview of 2 policies");
  await confirm(second);
  await expect(second.getByRole("button", { name: "Execute" })).toBeEnabled();
  await knobs(page, { latency_ms: 4_000, latency_jitter_ms: 0 });
  try {
    await page.getByRole("button", { name: "Execute" }).click();
    const status = page.getByTestId("execute-status");
    await expect(status).toBeVisible();
    const runHref = await page.getByTestId("execute-run-link").getAttribute("href");

    // The second tab executes too: the same run, said so.
    await second.getByRole("button", { name: "Execute" }).click();
    await expect(second.getByTestId("execute-reused")).toHaveText("Already running — showing the existing run");
    await expect(second.getByTestId("execute-run-link")).toHaveAttribute("href", runHref!);

    // A third tab opened at the preview now (as a reload): the run's progress, no Execute.
    const third = await page.context().newPage();
    await openHydrated(third, previewUrl);
    await expect(third.getByTestId("execute-status")).toBeVisible();
    await expect(third.getByTestId("execute-run-link")).toHaveAttribute("href", runHref!);
    await expect(third.getByTestId("restore-execute")).not.toContainText("Nothing is written");
    await confirm(third);
    await expect(third.getByRole("button", { name: "Execute" })).toBeDisabled();
    await expect(third.getByTestId("execute-reasons")).toContainText(RUNNING);
    await expect(third.getByRole("button", { name: "Run preview (dry-run)" })).toBeDisabled();
    await expect(third.getByTestId("preview-busy")).toHaveText(RUNNING);

    // Seen while it ran: the rest of the execute at the demo's speed.
    await demoKnobs(page);
    await expect(status).toHaveAttribute("data-status", "completed", { timeout: 120_000 });
    await expect(third.getByTestId("execute-status")).toHaveAttribute("data-status", "completed", { timeout: 30_000 });
    await expect(third.getByRole("button", { name: "Execute" })).toBeDisabled();
    await expect(third.getByTestId("execute-reasons")).toContainText(EXECUTED);
    await expect(third.getByRole("button", { name: "Run preview (dry-run)" })).toBeEnabled();
  } finally {
    await demoKnobs(page);
  }
});

// Step 5 follows the execute until it read its run settled, and the wizard is busy until then:
// a first read of the run that failed (a 5xx, a dropped request) was never tried again, so the
// page stayed busy for good (Run preview disabled) with nothing of the run shown.
test("a failed first read of the execute's run is tried again, and the wizard is free once it ended", async ({ page }) => {
  test.setTimeout(120_000);
  await signIn(page, "admin@contoso.example");
  const { set } = await fabrikamSetRenamedSince(page, [8, 9]);
  await confirmedPreviewOfSet(page, set, 2);
  const preview = page.getByRole("button", { name: "Run preview (dry-run)" });
  const execute = page.getByRole("button", { name: "Execute" });
  const reasons = page.getByTestId("execute-reasons");
  const status = page.getByTestId("execute-status");
  await page.route("**/api/runs/get", (route) => route.fulfill({ status: 500, body: "boom" }), { times: 1 });
  await execute.click();
  await expect(page.getByTestId("execute-retrying")).toBeVisible();
  await expect(preview).toBeDisabled();
  await expect(status).toHaveAttribute("data-status", "completed", { timeout: 60_000 });
  await expect(page.getByTestId("execute-summary")).toContainText("2 of 2 now match the backup");
  await expect(page.getByTestId("execute-retrying")).toHaveCount(0);
  await expect(preview).toBeEnabled();
  // The preview is spent: Execute stays disabled, and says why.
  await expect(execute).toBeDisabled();
  await expect(reasons).toContainText(EXECUTED);

  // A reload at the executed preview shows how its execute ended, not "Nothing is written".
  await openHydrated(page, page.url());
  await expect(status).toHaveAttribute("data-status", "completed");
  await expect(page.getByTestId("restore-execute")).not.toContainText("Nothing is written");
  await expect(reasons).toContainText(EXECUTED);
  await expect(execute).toBeDisabled();
  await expect(preview).toBeEnabled();
});
