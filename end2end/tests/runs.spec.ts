import { expect, test } from "@playwright/test";
import { call, demoKnobs, FABRIKAM, finishedRun, knobs, openHydrated, signIn } from "./demo";

// Fabrikam, like add_policies.spec.ts: backup_sets.spec.ts expects Contoso without runs.
const TENANT = FABRIKAM;

test.beforeEach(async ({ page }) => {
  await signIn(page, "operator@fabrikam.example");
});

test("the runs monitor filters by status and type, in a URL that can be reloaded", async ({ page }) => {
  test.setTimeout(120_000);
  const { runId } = await finishedRun(page, TENANT);
  // And a cancelled one (each Graph answer takes 3 s, so it is still going when cancelled), so
  // the cancelled view has a run to show.
  await knobs(page, { latency_ms: 3_000, latency_jitter_ms: 0 });
  let cancelledId: number;
  try {
    const set = await call(page, "backup-sets/create", { tenant: TENANT, name: `E2E cancelled ${Date.now()}`, description: "" });
    const policies = await call(page, "policies/list", { tenant: TENANT, backup_set_id: String(set.id) });
    const run = await call(page, "runs/add-policies", {
      tenant: TENANT,
      backup_set_id: String(set.id),
      policy_ids: `${policies.rows[0].id},${policies.rows[1].id}`,
    });
    cancelledId = run.run_id;
    await call(page, "runs/cancel", { tenant: TENANT, id: String(cancelledId) });
  } finally {
    await demoKnobs(page);
  }
  const cancelledLink = page.getByRole("link", { name: `#${cancelledId}`, exact: true });
  const runs = `/t/${TENANT}/runs`;
  await openHydrated(page, runs);
  const runLink = page.getByRole("link", { name: `#${runId}`, exact: true });
  await expect(runLink).toBeVisible();

  await page.getByLabel("Status").selectOption("completed");
  await expect(page).toHaveURL(new RegExp(`${runs}\\?status=completed$`));
  await expect(runLink).toBeVisible();
  await expect(cancelledLink).toHaveCount(0);
  const badges = page.getByTestId("runs-table").locator("tbody .badge");
  await expect(badges).not.toHaveCount(0);
  await expect(badges.filter({ hasNotText: "Succeeded" })).toHaveCount(0);

  await page.getByLabel("Operation").selectOption("backup_set.add_policies");
  await expect(page).toHaveURL(/\?status=completed&type=backup_set\.add_policies$/);
  await expect(runLink).toBeVisible();

  // The cancelled run, and not the finished one.
  await page.getByLabel("Status").selectOption("cancelled");
  await expect(page).toHaveURL(/\?status=cancelled&type=/);
  await expect(cancelledLink).toBeVisible();
  await expect(runLink).toHaveCount(0);
  await expect(badges.filter({ hasNotText: "Cancelled" })).toHaveCount(0);

  // The filtered view survives a reload, and Back shows the previous filter again.
  await page.reload();
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await expect(runLink).toHaveCount(0);
  await expect(page.getByLabel("Status")).toHaveValue("cancelled");
  await page.goBack();
  await expect(page).toHaveURL(/\?status=completed&type=/);
  await expect(runLink).toBeVisible();
  await expect(page.getByLabel("Status")).toHaveValue("completed");

  await page.getByRole("link", { name: "Clear filters" }).click();
  await expect(page).toHaveURL(new RegExp(`${runs}$`));
  await expect(page.getByLabel("Status")).toHaveValue("");
  await expect(runLink).toBeVisible();
});

test("an unknown filter in the URL is explained, not ignored", async ({ page }) => {
  await openHydrated(page, `/t/${TENANT}/runs?status=exploded`);
  await expect(page.getByRole("alert")).toHaveText("Unknown run status filter.");
});

test("run detail shows which items it lists and filters them through the URL", async ({ page }) => {
  test.setTimeout(120_000);
  const { runId } = await finishedRun(page, TENANT);
  await openHydrated(page, `/t/${TENANT}/runs/${runId}`);
  await expect(page.getByTestId("items-range")).toHaveText("Showing 1–2 of 2");
  await expect(page.getByTestId("run-items").locator("tbody tr")).toHaveCount(2);

  await page.getByLabel("Show items").selectOption("failed");
  await expect(page).toHaveURL(new RegExp(`/runs/${runId}\\?outcome=failed$`));
  await expect(page.getByText("No items with this outcome")).toBeVisible();
  await page.reload();
  await expect(page.getByText("No items with this outcome")).toBeVisible();
  await expect(page.getByLabel("Show items")).toHaveValue("failed");
});

test("Download CSV on the run detail page gives the run's items, with the page's filter", async ({ page }) => {
  test.setTimeout(120_000);
  const { runId } = await finishedRun(page, TENANT);
  await openHydrated(page, `/t/${TENANT}/runs/${runId}`);
  await expect(page.getByTestId("run-status")).toHaveText("Succeeded");

  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByTestId("download-csv").click(),
  ]);
  expect(download.suggestedFilename()).toBe(`run-${runId}-items.csv`);
  // The file itself, fetched with the page's session as the link does.
  const href = await page.getByTestId("download-csv").getAttribute("href");
  const response = await page.request.get(href!);
  expect(response.status()).toBe(200);
  const text = await response.text();
  const lines = text.split("\r\n").filter((line) => line !== "");
  expect(lines[0]).toBe("policy name,policy type,platform,graph id,outcome,reason code,message,finished at");
  expect(lines).toHaveLength(3);
  for (const row of lines.slice(1)) expect(row).toContain(",succeeded,");

  // The link follows the outcome filter.
  await page.getByLabel("Show items").selectOption("failed");
  await expect(page.getByTestId("download-csv")).toHaveAttribute(
    "href",
    `/t/${TENANT}/runs/${runId}/items.csv?outcome=failed`,
  );
});

test("a page number in the URL that cannot be read is refused with its reason, and the page still works", async ({ page }) => {
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.message));
  const runs = `/t/${TENANT}/runs`;
  const response = await page.goto(`${runs}?before=abc`);
  expect(response!.status()).toBe(422);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await expect(page.getByRole("alert")).toContainText("Not an entry of this list");
  await expect(page.getByTestId("runs-table")).toHaveCount(0);
  // The hydrated filters lead back to a list.
  await page.getByLabel("Status").selectOption("completed");
  await expect(page).toHaveURL(new RegExp(`${runs}\\?status=completed$`));
  await expect(page.getByRole("alert")).toHaveCount(0);

  const policies = await page.goto(`/t/${TENANT}/policies?page=0`);
  expect(policies!.status()).toBe(422);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await expect(page.getByRole("alert")).toContainText("Not a page number");
  expect(errors).toEqual([]);
});
