import { execFileSync } from "node:child_process";
import path from "node:path";
import { expect, Page, test } from "@playwright/test";
import { expectAccessible } from "./axe";
import { openHydrated, selectRows, signIn, SIM, SIM_SECRET } from "./demo";

// As a new deployment would: the first admin connects a tenant of their own (not a demo one),
// syncs its inventory, invites an operator who has no account, and the operator accepts in a
// browser of their own and adds policies to a backup set. The tenant is new, so no other spec
// sees anything of it.

const TENANT = "0e2e0000-1234-4abc-8def-00000000d3e0";
const NAME = "Woodgrove (e2e)";
const PORT = Number(process.env.E2E_PORT ?? 3100);
const ROOT = path.resolve(__dirname, "../..");

/** A day `days` from today as YYYY-MM-DD (what a date input takes). */
function dayFromNow(days: number) {
  return new Date(Date.now() + days * 86_400_000).toISOString().slice(0, 10);
}

/**
 * Syncs the tenant's inventory with the CLI's `sync-inventory`, against the demo simulator and
 * the server's database and key file: the sync a deployment runs today (the app has no sync
 * button yet).
 */
function syncInventory() {
  return execFileSync(
    path.join(ROOT, "target/debug/tenantatlas"),
    [
      "--database-url",
      `sqlite://${path.join(ROOT, "target/e2e/e2e.db")}`,
      "--secret-key-file",
      path.join(ROOT, "target/e2e/secret.keys"),
      "--graph-url",
      SIM,
      "--login-url",
      SIM,
      "--log",
      "warn",
      "sync-inventory",
      "--tenant",
      TENANT,
    ],
    { encoding: "utf8" },
  );
}

async function fillConnectForm(page: Page, tenant: string) {
  await page.getByLabel("Tenant id").fill(tenant);
  await page.getByLabel("Display name").fill(NAME);
  await page.getByLabel("Client id").fill("woodgrove-e2e-app");
  await page.getByLabel("Client secret").fill(SIM_SECRET);
}

test("a new deployment: connect, sync, invite an operator who adds policies to a backup set", async ({ page, browser }) => {
  test.setTimeout(180_000);

  // The first admin connects the tenant. The browser checks each field as the server does.
  await signIn(page, "admin@contoso.example");
  await page.getByRole("link", { name: "Connect a tenant" }).click();
  await expect(page.getByRole("heading", { name: "Connect a tenant" })).toBeVisible();
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
  await page.getByLabel("Tenant id").fill("contoso");
  await page.getByLabel("Tenant id").blur();
  await expect(page.getByText("Enter the tenant id, a GUID")).toBeVisible();
  await fillConnectForm(page, TENANT);
  await page.getByLabel("Secret expires on (optional)").fill(dayFromNow(20));
  await expect(page.getByText("Enter the tenant id, a GUID")).toHaveCount(0);
  await expectAccessible(page, "connect a tenant");
  await page.getByRole("button", { name: "Connect tenant" }).click();
  await expect(page).toHaveURL(new RegExp(`/t/${TENANT}/backup-sets$`));
  await expect(page.getByTestId("tenant-switcher").locator("option:checked")).toHaveText(NAME);
  // The secret expires within 30 days: every page of the tenant says so.
  await expect(page.getByTestId("banner-secret-expiry")).toContainText("expires in 20 days");

  // Its settings: where the secret lives and since when, never the secret.
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Settings" }).click();
  await expect(page.getByTestId("secret-source")).toContainText("Stored encrypted, set on");
  await expect(page.getByTestId("connection-status")).toHaveText("Connected");
  await expect(page.locator("body")).not.toContainText(SIM_SECRET);

  // The same tenant again is refused plainly.
  await openHydrated(page, "/tenants/connect");
  await fillConnectForm(page, TENANT);
  await page.getByRole("button", { name: "Connect tenant" }).click();
  await expect(page.getByRole("alert").filter({ hasText: "already connected" })).toBeVisible();

  // Sync it: its policies come from the simulator with the secret entered above.
  const synced = syncInventory();
  expect(synced).toContain(NAME);

  // Invite an operator who has no account: the link is shown once, on the page.
  await openHydrated(page, `/t/${TENANT}/members`);
  const email = `otto.${Date.now()}@woodgrove.example`;
  await page.getByLabel("E-mail").fill(email);
  await page.getByLabel("Role", { exact: true }).selectOption("operator");
  await page.getByRole("button", { name: "Add member" }).click();
  const link = await page.getByTestId("invite-link").inputValue();
  expect(link).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:${PORT}/invite#token=[0-9a-f]{64}$`));
  await expect(page.getByTestId("invitation-row")).toContainText(email);
  await expectAccessible(page, "members with an invitation link");

  // The operator accepts in a browser of their own, and lands in the tenant signed in.
  const context = await browser.newContext();
  const invitee = await context.newPage();
  await invitee.goto(link);
  await expect(invitee.locator("body[data-hydrated]")).toHaveCount(1);
  await expect(invitee.getByTestId("invitation-summary")).toContainText(NAME);
  await expect(invitee.getByTestId("invitation-email")).toHaveText(email);
  await expectAccessible(invitee, "accept an invitation");
  await invitee.getByLabel("Your name").fill("Otto Operator");
  await invitee.getByLabel("Password", { exact: true }).fill("otto's long password");
  await invitee.getByLabel("Password again").fill("otto's long password");
  await invitee.getByRole("button", { name: "Create account and sign in" }).click();
  await expect(invitee).toHaveURL(new RegExp(`/t/${TENANT}/backup-sets$`));
  await expect(invitee.getByTestId("user-name")).toHaveText("Otto Operator");

  // ... and adds policies to a backup set; the run captures them from the simulator.
  await expect(invitee.locator("body[data-hydrated]")).toHaveCount(1);
  const setName = `Woodgrove baseline ${Date.now()}`;
  await invitee.getByLabel("Name").fill(setName);
  await invitee.getByRole("button", { name: "Create backup set" }).click();
  await invitee.getByRole("link", { name: setName }).click();
  await expect(invitee.getByTestId("backup-set-name")).toHaveText(setName);
  await expect(invitee.locator("body[data-hydrated]")).toHaveCount(1);
  const picker = await selectRows(invitee, 3);
  await picker.getByRole("button", { name: "Add selected" }).click();
  await expect(invitee.getByTestId("toast").filter({ hasText: "Finished:" })).toContainText(
    "Succeeded — 3 added, 0 failed, 0 skipped",
    { timeout: 60_000 },
  );
  await expect(invitee.getByTestId("item-count")).toHaveText("3");
  // An operator reads neither members nor the audit log.
  await expect(invitee.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Members" })).toHaveCount(0);
  await context.close();

  // The link works once.
  const second = await browser.newContext();
  const again = await second.newPage();
  await again.goto(link);
  await expect(again.getByRole("alert").filter({ hasText: "already been used" })).toBeVisible();
  await second.close();

  // The owner sees the new member, and the audit log has the invitation and its acceptance.
  await openHydrated(page, `/t/${TENANT}/members`);
  await expect(page.getByTestId("member-row").filter({ hasText: email })).toContainText("Otto Operator");
  await expect(page.getByTestId("invitations")).toHaveCount(0);
  await openHydrated(page, `/t/${TENANT}/audit?action=invitation.accept`);
  await expect(page.getByTestId("audit-row")).toHaveCount(1);
  await expect(page.getByTestId("audit-row")).toContainText(email);
  await expectAccessible(page, "audit log");

  // The only owner cannot step down: the server's refusal is shown as it is.
  await openHydrated(page, `/t/${TENANT}/members`);
  const me = page.getByTestId("member-row").filter({ hasText: "admin@contoso.example" });
  await me.getByTestId("member-role").selectOption("manager");
  await me.getByTestId("change-role").click();
  await me.getByTestId("change-role-confirm").click();
  await expect(page.getByTestId("member-problem")).toContainText("at least one owner");
  await expect(me.getByTestId("member-role")).toHaveValue("owner");

  // Disconnect (after a confirmation): every page says so, and it can be reconnected.
  await openHydrated(page, `/t/${TENANT}/settings`);
  await page.getByTestId("disconnect-tenant").click();
  await page.getByTestId("disconnect-tenant-confirm").click();
  await expect(page.getByTestId("connection-status")).toContainText("Disconnected");
  await expect(page.getByTestId("banner-disconnected")).toBeVisible();
  await page.getByTestId("reconnect-tenant").click();
  await page.getByTestId("reconnect-tenant-confirm").click();
  await expect(page.getByTestId("connection-status")).toHaveText("Connected");
  await expect(page.getByTestId("banner-disconnected")).toHaveCount(0);
});
