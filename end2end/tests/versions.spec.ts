import { expect, Page, test } from "@playwright/test";
import { expectAccessible } from "./axe";
import { CONTOSO, openHydrated, signIn } from "./demo";

// The demo's history (src/server/seed.rs): a baseline set captured a week ago, two of its
// policies renamed in Intune since (one of them twice, so it has three versions), and a drift
// check of the set queued at start.

test("a newcomer finds the demo's drift result and a changed setting's old and new values", async ({ page }) => {
  // Any member may read all of it.
  await signIn(page, "readonly@contoso.example");
  await openHydrated(page, `/t/${CONTOSO}/backup-sets`);
  await page.getByRole("link", { name: "Baseline (demo)" }).click();
  const drift = page.getByTestId("drift-check");
  await expect(drift.getByTestId("run-last")).toContainText("2 of");
  await expect(drift.getByTestId("run-last")).toContainText("policies changed since this backup");
  await expect(drift.getByRole("button", { name: "Compare with Intune" })).toBeDisabled();

  await drift.getByTestId("run-last").getByRole("link").click();
  await expect(page.getByTestId("run-summary")).toContainText("2 of");
  await expect(page.getByTestId("backup-set-link")).toHaveText("Baseline (demo)");
  await page.getByLabel("Show items").selectOption("changed");
  const rows = page.getByTestId("run-items").locator("tbody tr");
  await expect(rows).toHaveCount(2);
  await expect(rows.first().getByTestId("item-result")).toContainText("Changed: 1 setting");
  await expectAccessible(page, "drift result");

  await rows.filter({ hasText: "edited twice" }).getByTestId("item-diff").click();
  await expect(page).toHaveURL(/\/diff\?from=\d+&to=\d+/);
  const change = page.getByTestId("change");
  await expect(change).toHaveCount(1);
  await expect(change).toContainText("Changed");
  await expect(change.locator("td").nth(1)).not.toContainText("edited");
  await expect(change.locator("td").nth(2)).toContainText("(edited twice)");
});

test("a policy's versions compare with each other and with Intune now", async ({ page }) => {
  await signIn(page, "operator@contoso.example");
  await openHydrated(page, `/t/${CONTOSO}/policies?search=edited%20twice`);
  await page.getByRole("link", { name: /edited twice/ }).click();
  const versions = page.getByTestId("versions").locator("tbody tr");
  await expect(versions).toHaveCount(3);
  await expectAccessible(page, "policy with versions");

  // The newest against the one before: the second rename, old → new.
  await versions.first().getByRole("link", { name: "Compare with previous" }).click();
  const change = page.getByTestId("change");
  await expect(change).toHaveCount(1);
  await expect(change.locator("td").nth(1)).toContainText("(edited)");
  await expect(change.locator("td").nth(2)).toContainText("(edited twice)");
  await page.goBack();

  // Intune still holds the newest version: nothing to show.
  await versions.first().getByTestId("compare-with-intune").click();
  await expect(page.getByTestId("compare-note")).toContainText("No change");
  // The oldest against Intune now: the diff page, from that version to the fresh capture.
  await versions.last().getByTestId("compare-with-intune").click();
  await expect(page).toHaveURL(/\/diff\?from=\d+&to=\d+/);
  await expect(page.getByTestId("change").locator("td").nth(2)).toContainText("(edited twice)");
});

test("capture now, sync from Intune and a drift check run from their buttons", async ({ page }) => {
  test.setTimeout(60_000);
  await signIn(page, "operator@contoso.example");

  // A policy never captured: its first version.
  await openHydrated(page, `/t/${CONTOSO}/policies?search=0090`);
  await page.getByTestId("policies-table").locator("tbody").getByRole("link").first().click();
  await expect(page.getByText("No versions captured yet")).toBeVisible();
  const capture = page.getByTestId("capture-now");
  await capture.getByRole("button", { name: "Capture now" }).click();
  await expect(capture.getByTestId("run-last")).toContainText("Captured the first version");
  await expect(page.getByTestId("versions").locator("tbody tr")).toHaveCount(1);
  await expect(page.getByTestId("toast").first()).toContainText("Capture policy");

  // The inventory: in line with Intune already.
  await openHydrated(page, `/t/${CONTOSO}/policies`);
  const sync = page.getByTestId("sync-inventory");
  await sync.getByRole("button", { name: "Sync from Intune" }).click();
  await expect(sync.getByTestId("run-last")).toContainText("0 added, 0 updated, 96 unchanged, 0 gone");

  // The demo set against Intune again: the same two changes.
  await openHydrated(page, `/t/${CONTOSO}/backup-sets`);
  await page.getByRole("link", { name: "Baseline (demo)" }).click();
  const drift = page.getByTestId("drift-check");
  const before = await drift.getByTestId("run-last").getByRole("link").textContent();
  await drift.getByRole("button", { name: "Compare with Intune" }).click();
  await expect(drift.getByTestId("run-last").getByRole("link")).not.toHaveText(before ?? "");
  await expect(drift.getByTestId("run-last")).toContainText("2 of");
});

/** Opens the Raw JSON tab of the newest version of the demo's "edited twice" policy. */
async function openRawJson(page: Page) {
  await signIn(page, "readonly@contoso.example");
  await openHydrated(page, `/t/${CONTOSO}/policies?search=edited%20twice`);
  await page.getByRole("link", { name: /edited twice/ }).click();
  await page.getByTestId("versions").locator("tbody tr").first().getByRole("link", { name: "View" }).click();
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await page.getByRole("tab", { name: "Raw JSON" }).click();
  await expect(page.locator("pre.raw-json")).toBeVisible();
}

/** Copy on a browser that refuses it: no "Copied", and a visible way to copy by hand. */
async function expectCopyRefused(page: Page) {
  const copy = page.getByTestId("copy-json");
  await copy.click();
  const refused = page.getByTestId("raw-panel").getByRole("alert");
  await expect(refused).toBeVisible();
  await expect(refused).toContainText("copy it by hand");
  await expect(copy).toHaveText("Copy");
}

test("Copy says Copied only when the browser copied: a refused write says how to copy by hand", async ({ page }) => {
  await page.addInitScript(() => {
    Object.defineProperty(navigator.clipboard, "writeText", {
      value: () => Promise.reject(new DOMException("Write permission denied.", "NotAllowedError")),
    });
  });
  await openRawJson(page);
  await expectCopyRefused(page);
});

test("Copy without a clipboard (plain HTTP off localhost) says how to copy by hand", async ({ page }) => {
  await page.addInitScript(() => {
    Object.defineProperty(Navigator.prototype, "clipboard", { get: () => undefined });
  });
  await openRawJson(page);
  await expectCopyRefused(page);
});

test("a policy's versions refused after a capture say why: the policy at the top was read before", async ({ page }) => {
  test.setTimeout(90_000);
  await signIn(page, "operator@contoso.example");
  await openHydrated(page, `/t/${CONTOSO}/policies?search=edited%20twice`);
  await page.getByRole("link", { name: /edited twice/ }).click();
  await expect(page.getByTestId("versions").locator("tbody tr")).toHaveCount(3);
  const capture = page.getByTestId("capture-now");
  await expect(capture.getByRole("button", { name: "Capture now" })).toBeEnabled();
  await expect(page.getByRole("alert")).toHaveCount(0);
  // The versions read after the capture is refused for good (as when the member was removed
  // meanwhile); the policy's own read, at the top, is not made again.
  const refusal = { Forbidden: "You are not a member of this tenant." };
  await page.route("**/api/policies/versions", (route) =>
    route.fulfill({ status: 403, contentType: "application/json", body: JSON.stringify(refusal) }),
  );
  await capture.getByRole("button", { name: "Capture now" }).click();
  await expect(page.getByTestId("toast").filter({ hasText: "Capture policy" })).toBeVisible({ timeout: 30_000 });
  await expect(page.getByTestId("versions")).toHaveCount(0);
  await expect(page.getByRole("alert")).toContainText(refusal.Forbidden);
});
