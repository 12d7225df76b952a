import { expect, test } from "@playwright/test";
import { call, FABRIKAM, finishedRun, openHydrated, selectRows, signIn } from "./demo";

// The admin in Fabrikam: backup_sets.spec.ts expects Contoso without runs, and the admin's
// notifications in Fabrikam come only from this spec (add_policies.spec.ts runs as Fabrikam's
// operator, whose notifications the admin never sees).
const TENANT = FABRIKAM;
const USER = "admin@contoso.example";

test("a finished run rings the bell; the notification links to the run and can be marked read", async ({ page }) => {
  test.setTimeout(120_000);
  await signIn(page, USER);

  // A new backup set, and a run adding two policies to it.
  const name = `E2E bell ${Date.now()}`;
  await page.goto(`/t/${TENANT}/backup-sets`);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  const bell = page.getByTestId("notification-bell");
  await expect(bell).toHaveAttribute("aria-label", "Notifications");
  await expect(page.getByTestId("notification-count")).toHaveCount(0);
  await page.getByLabel("Name").fill(name);
  await page.getByRole("button", { name: "Create backup set" }).click();
  await page.getByRole("link", { name }).click();
  await expect(page.getByTestId("backup-set-name")).toHaveText(name);
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  const picker = await selectRows(page, 2);
  await picker.getByRole("button", { name: "Add selected" }).click();
  await expect(page.getByTestId("toast").filter({ hasText: "Queued: 2 policies" })).toBeVisible();

  // The bell polls: once the run has ended, one unread, in its accessible name and as a badge.
  await expect(page.getByRole("button", { name: "Notifications, 1 unread" })).toBeVisible({ timeout: 60_000 });
  await expect(page.getByTestId("notification-count")).toHaveText("1");

  // Open it: the run's notification with a View run link; Escape closes and gives focus back.
  await bell.click();
  await expect(bell).toHaveAttribute("aria-expanded", "true");
  const panel = page.getByTestId("notification-panel");
  const item = panel.getByTestId("notification").filter({ hasText: "Adding policies: Succeeded" });
  await expect(item).toHaveCount(1);
  await expect(item).toContainText("2 added");
  const viewRun = item.getByRole("link", { name: "View run" });
  await expect(viewRun).toHaveAttribute("href", new RegExp(`^/t/${TENANT}/runs/\\d+$`));
  await page.keyboard.press("Escape");
  await expect(panel).toHaveCount(0);
  await expect(bell).toHaveAttribute("aria-expanded", "false");
  await expect(bell).toBeFocused();
  await page.keyboard.press("Enter");
  await expect(panel).toBeVisible();

  // Mark all read is enabled while the panel lists an unread one (what it sends: the next test).
  await expect(panel.getByRole("button", { name: "Mark all read" })).toBeEnabled();

  // Mark it read from the keyboard: the badge goes, the notification stays listed as read, and
  // the focus stays in the panel (the button goes away; its item stays).
  await item.getByRole("button", { name: "Mark read" }).focus();
  await page.keyboard.press("Enter");
  await expect(page.getByTestId("notification-count")).toHaveCount(0);
  await expect(bell).toHaveAttribute("aria-label", "Notifications");
  await expect(item).toHaveAttribute("data-unread", "false");
  await expect(item.getByRole("button", { name: "Mark read" })).toHaveCount(0);
  await expect(item.getByRole("link", { name: "View run" })).toBeFocused();
  await expect(panel.getByRole("button", { name: "Mark all read" })).toBeDisabled();

  // View run leads to the run and closes the panel; after a reload the count is still zero.
  await item.getByRole("link", { name: "View run" }).click();
  await expect(page).toHaveURL(new RegExp(`/t/${TENANT}/runs/\\d+$`));
  await expect(page.getByTestId("run-status")).toHaveText("Succeeded");
  await expect(panel).toHaveCount(0);
  await page.reload();
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await bell.click();
  await expect(panel.getByTestId("notification")).toHaveCount(1);
  await expect(page.getByTestId("notification-count")).toHaveCount(0);
});

type Listed = { id: number; read_at: number | null };

/** The ids of the unread notifications in `items`, in ascending order. */
function unreadIds(items: Listed[]) {
  return items
    .filter((n) => n.read_at === null)
    .map((n) => n.id)
    .sort((a, b) => a - b);
}

test("Mark all read marks the unread notifications the panel lists, not one it has not shown", async ({ page }) => {
  test.setTimeout(120_000);
  await signIn(page, USER);
  const before = await call(page, "notifications/list", { tenant: TENANT });
  await finishedRun(page, TENANT, `E2E bell listed ${Date.now()}`);
  await finishedRun(page, TENANT, `E2E bell unlisted ${Date.now()}`);
  await expect
    .poll(async () => (await call(page, "notifications/list", { tenant: TENANT })).unread, { timeout: 30_000 })
    .toBe(before.unread + 2);
  const unread = unreadIds((await call(page, "notifications/list", { tenant: TENANT })).items);
  const unlisted = unread[unread.length - 1];
  const listed = unread.filter((id) => id !== unlisted);
  expect(listed.length).toBeGreaterThan(0);

  // The bell's list as it reads when the newest notification was stamped before the list was
  // read but committed after its SELECT: not listed, though older than the list's as_of, so
  // only the ids the bell sends keep it unread (a sweep by as_of would mark it).
  const LIST = "**/api/notifications/list";
  await page.route(LIST, async (route) => {
    const response = await route.fetch();
    const list = await response.json();
    const hidden = (list.items as Listed[]).filter((n) => n.id === unlisted);
    list.items = (list.items as Listed[]).filter((n) => n.id !== unlisted);
    list.unread -= unreadIds(hidden).length;
    await route.fulfill({ response, json: list });
  });
  await openHydrated(page, `/t/${TENANT}/backup-sets`);
  await page.getByTestId("notification-bell").click();
  const panel = page.getByTestId("notification-panel");
  const unreadItems = panel.locator('[data-testid="notification"][data-unread="true"]');
  await expect(unreadItems).toHaveCount(listed.length);

  const request = page.waitForRequest((r) => r.url().endsWith("/api/notifications/mark-all-read"));
  await panel.getByRole("button", { name: "Mark all read" }).click();
  const sent = new URLSearchParams((await request).postData() ?? "");
  const ids = (sent.get("ids") ?? "")
    .split(",")
    .filter((id) => id !== "")
    .map(Number)
    .sort((a, b) => a - b);
  expect(ids).toEqual(listed);
  await expect(unreadItems).toHaveCount(0);
  await expect(panel.getByRole("button", { name: "Mark all read" })).toBeDisabled();

  // The server marked what was listed; the one the panel never showed stays unread and counted.
  await page.unroute(LIST);
  const after = await call(page, "notifications/list", { tenant: TENANT });
  expect(unreadIds(after.items)).toEqual([unlisted]);
  expect(after.unread).toBe(1);
  await openHydrated(page, `/t/${TENANT}/backup-sets`);
  await expect(page.getByRole("button", { name: "Notifications, 1 unread" })).toBeVisible({ timeout: 15_000 });

  // Leave the admin's notifications in Fabrikam read for the specs after this one.
  await call(page, "notifications/mark-read", { tenant: TENANT, id: String(unlisted) });
});
