import { Browser, expect, Locator, Page, test } from "@playwright/test";
import { call, CONTOSO, FABRIKAM, openHydrated, pageAs, signIn } from "./demo";

// Fabrikam, whose owner is the demo admin; its operator is made an owner for a moment and
// back (backup_sets.spec.ts expects Contoso unchanged). Contoso's manager is made an operator
// for a moment and back, and joins Fabrikam for a moment (read-only, or as a second owner).

test("invitations the server withdraws with their inviter's role leave the list; a failed withdrawal says why", async ({
  page,
  browser,
}) => {
  await signIn(page, "admin@contoso.example");
  const members = await call(page, "members/list", { tenant: FABRIKAM });
  const operator = members.find((m: { email: string }) => m.email === "operator@fabrikam.example");
  await call(page, "members/change-role", { tenant: FABRIKAM, user_id: String(operator.user_id), role: "owner" });
  try {
    // The operator, an owner now, invites someone; the admin invites someone else.
    const theirs = `e2e-by-operator-${Date.now()}@example.com`;
    const ours = `e2e-by-admin-${Date.now()}@example.com`;
    const operatorPage = await pageAs(browser, "operator@fabrikam.example");
    await call(operatorPage, "members/add", { tenant: FABRIKAM, email: theirs, role: "readonly" });
    await operatorPage.context().close();
    await call(page, "members/add", { tenant: FABRIKAM, email: ours, role: "readonly" });

    await openHydrated(page, `/t/${FABRIKAM}/members`);
    const rows = page.getByTestId("invitation-row");
    await expect(rows.filter({ hasText: theirs })).toHaveCount(1);
    await expect(rows.filter({ hasText: ours })).toHaveCount(1);

    // The admin makes the operator an operator again: the server withdraws their invitation,
    // and the list says so without a reload.
    const row = page.getByTestId("member-row").filter({ hasText: "operator@fabrikam.example" });
    await page.getByRole("combobox", { name: `Role of ${operator.display_name}` }).selectOption("operator");
    await row.getByTestId("change-role").click();
    await expect(row.getByRole("alertdialog")).toContainText("pending are withdrawn");
    await row.getByTestId("change-role-confirm").click();
    await expect(rows.filter({ hasText: theirs })).toHaveCount(0);
    await expect(rows.filter({ hasText: ours })).toHaveCount(1);

    // Withdrawn meanwhile elsewhere: withdrawing it here says it is gone, not that it worked.
    const pending = await call(page, "invitations/list", { tenant: FABRIKAM });
    const id = pending.find((i: { email: string }) => i.email === ours).id;
    await call(page, "invitations/revoke", { tenant: FABRIKAM, id: String(id) });
    await rows.filter({ hasText: ours }).getByTestId("revoke-invitation").click();
    await page.getByTestId("revoke-invitation-confirm").click();
    await expect(page.getByTestId("invitation-problem").getByRole("alert")).toContainText("no pending invitation");
    await expect(rows.filter({ hasText: ours })).toHaveCount(0);
  } finally {
    const now = await call(page, "members/list", { tenant: FABRIKAM });
    if (now.find((m: { email: string; role: string }) => m.email === "operator@fabrikam.example")?.role !== "operator") {
      await call(page, "members/change-role", { tenant: FABRIKAM, user_id: String(operator.user_id), role: "operator" });
    }
  }
});

test("an arrow key in a member's role select only chooses; Change role, after a question, changes it and keeps the focus", async ({
  page,
}) => {
  await signIn(page, "admin@contoso.example");
  const members = await call(page, "members/list", { tenant: CONTOSO });
  const manager = members.find((m: { email: string }) => m.email === "manager@contoso.example");
  const changes: string[] = [];
  page.on("request", (request) => {
    if (request.url().includes("/api/members/change-role")) changes.push(request.url());
  });
  try {
    await openHydrated(page, `/t/${CONTOSO}/members`);
    const row = page.getByTestId("member-row").filter({ hasText: "manager@contoso.example" });
    const select = page.getByRole("combobox", { name: `Role of ${manager.display_name}` });
    // Chromium on Linux fires `change` for an arrow key on a closed select: it only chooses.
    await select.focus();
    await page.keyboard.press("ArrowDown");
    await expect(select).toHaveValue("operator");
    await expect(select).toBeFocused();
    await expect(row.getByTestId("change-role")).toBeVisible();
    await openHydrated(page, `/t/${CONTOSO}/members`);
    expect(changes).toEqual([]);
    await expect(select).toHaveValue("manager");
    await expect(row.getByTestId("change-role")).toHaveCount(0);

    // The explicit way: choose, Change role, the question, yes.
    await select.selectOption("operator");
    await row.getByTestId("change-role").click();
    await expect(row.getByRole("alertdialog")).toContainText(`Make ${manager.display_name} an operator?`);
    expect(changes).toEqual([]);
    await row.getByTestId("change-role-confirm").click();
    await expect.poll(() => changes.length).toBe(1);
    await expect(row.getByTestId("change-role")).toHaveCount(0);
    await expect(select).toHaveValue("operator");
    await expect(select).toBeFocused();
    await openHydrated(page, `/t/${CONTOSO}/members`);
    await expect(select).toHaveValue("operator");
  } finally {
    await call(page, "members/change-role", { tenant: CONTOSO, user_id: String(manager.user_id), role: "manager" });
  }
});

test("the only owner's Change role is refused as it is, and the select shows the role kept, with the focus", async ({ page }) => {
  await signIn(page, "admin@contoso.example");
  await openHydrated(page, `/t/${FABRIKAM}/members`);
  const me = page.getByTestId("member-row").filter({ hasText: "admin@contoso.example" });
  const select = me.getByTestId("member-role");
  await select.selectOption("manager");
  await me.getByTestId("change-role").click();
  await me.getByTestId("change-role-confirm").click();
  await expect(page.getByTestId("member-problem")).toContainText("at least one owner");
  await expect(select).toHaveValue("owner");
  await expect(select).toBeFocused();
  await expect(me.getByTestId("change-role")).toHaveCount(0);
});

test("the only owner's Remove is refused as it is, and the focus stays on Remove", async ({ page }) => {
  await signIn(page, "admin@contoso.example");
  await openHydrated(page, `/t/${FABRIKAM}/members`);
  const me = page.getByTestId("member-row").filter({ hasText: "admin@contoso.example" });
  await me.getByTestId("remove-member").click();
  await me.getByTestId("remove-member-confirm").click();
  await expect(page.getByTestId("member-problem")).toContainText("at least one owner");
  await expect(me.getByTestId("remove-member")).toBeFocused();
});

test("a withdrawn invitation gives the focus to the next one's Withdraw", async ({ page }) => {
  await signIn(page, "admin@contoso.example");
  const first = `e2e-focus-a-${Date.now()}@example.com`;
  const second = `e2e-focus-b-${Date.now()}@example.com`;
  await call(page, "members/add", { tenant: FABRIKAM, email: first, role: "readonly" });
  await call(page, "members/add", { tenant: FABRIKAM, email: second, role: "readonly" });
  await openHydrated(page, `/t/${FABRIKAM}/members`);
  const rows = page.getByTestId("invitation-row");
  // The last row's: nothing comes after it, the focus goes to the row before.
  const last = rows.last();
  const before = rows.nth((await rows.count()) - 2);
  const lastEmail = (await last.locator("td").first().textContent()) ?? "";
  await last.getByTestId("revoke-invitation").click();
  await last.getByTestId("revoke-invitation-confirm").click();
  await expect(rows.filter({ hasText: lastEmail })).toHaveCount(0);
  await expect(before.getByTestId("revoke-invitation")).toBeFocused();
  const pending = await call(page, "invitations/list", { tenant: FABRIKAM });
  for (const invitation of pending.filter((i: { email: string }) => [first, second].includes(i.email))) {
    await call(page, "invitations/revoke", { tenant: FABRIKAM, id: String(invitation.id) });
  }
});

test("withdrawing an invitation in the middle gives the focus to the Withdraw of the one after it", async ({ page }) => {
  await signIn(page, "admin@contoso.example");
  const stamp = Date.now();
  const mine = [`e2e-middle-a-${stamp}@example.com`, `e2e-middle-b-${stamp}@example.com`, `e2e-middle-c-${stamp}@example.com`];
  for (const email of mine) await call(page, "members/add", { tenant: FABRIKAM, email, role: "readonly" });
  try {
    await openHydrated(page, `/t/${FABRIKAM}/members`);
    const rows = page.getByTestId("invitation-row");
    await expect(rows.filter({ hasText: "e2e-middle-" })).toHaveCount(3);
    // The first of ours to be listed: a row of ours comes after it, and another after that, so
    // the focus can only land on the next one by its place (neither the last row, nor the one
    // before).
    const emails = (await rows.locator("td:first-child").allTextContents()).map((e) => e.trim());
    const at = Math.min(...mine.map((email) => emails.indexOf(email)));
    expect(at).toBeLessThan(emails.length - 2);
    await rows.nth(at).getByTestId("revoke-invitation").click();
    await page.getByTestId("revoke-invitation-confirm").click();
    await expect(rows.filter({ hasText: emails[at] })).toHaveCount(0);
    await expect(rows.filter({ hasText: emails[at + 1] }).getByTestId("revoke-invitation")).toBeFocused();
  } finally {
    const pending = await call(page, "invitations/list", { tenant: FABRIKAM });
    for (const invitation of pending.filter((i: { email: string }) => mine.includes(i.email))) {
      await call(page, "invitations/revoke", { tenant: FABRIKAM, id: String(invitation.id) });
    }
  }
});

test("a withdrawal whose list cannot be read then focuses the heading, and leaves no focus move for a later list", async ({
  page,
}) => {
  await signIn(page, "admin@contoso.example");
  const stamp = Date.now();
  const mine = [`e2e-failed-read-a-${stamp}@example.com`, `e2e-failed-read-b-${stamp}@example.com`];
  const added = `e2e-failed-read-c-${stamp}@example.com`;
  for (const email of mine) await call(page, "members/add", { tenant: FABRIKAM, email, role: "readonly" });
  try {
    await openHydrated(page, `/t/${FABRIKAM}/members`);
    const rows = page.getByTestId("invitation-row");
    await expect(rows.filter({ hasText: "e2e-failed-read-" })).toHaveCount(2);
    // The list read after the withdrawal fails, once.
    await page.route("**/api/invitations/list", (route) => route.fulfill({ status: 500, body: "boom" }), { times: 1 });
    await rows.filter({ hasText: mine[0] }).getByTestId("revoke-invitation").click();
    await page.getByTestId("revoke-invitation-confirm").click();
    await expect(page.getByTestId("invitations")).toHaveCount(0);
    await expect(page.getByRole("alert").filter({ hasText: "Could not reach the server" })).toBeVisible();
    await expect.soft(page.locator("#invitations-title")).toBeFocused();

    // The owner adds someone: the list is drawn again, and the focus stays with the form.
    await page.getByLabel("E-mail").fill(added);
    await page.getByRole("button", { name: "Add member" }).click();
    await expect(page.getByTestId("invite-link")).toBeVisible();
    await expect(rows.filter({ hasText: added })).toHaveCount(1);
    // A focus move waiting for the list happens in the frame after it is drawn.
    await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
    // (The form is disabled while it is sent, which drops the focus to the page.)
    const focused = await page.evaluate(() => document.activeElement?.getAttribute("data-testid") ?? "");
    expect(focused).not.toBe("revoke-invitation");
  } finally {
    const pending = await call(page, "invitations/list", { tenant: FABRIKAM });
    for (const invitation of pending.filter((i: { email: string }) => [...mine, added].includes(i.email))) {
      await call(page, "invitations/revoke", { tenant: FABRIKAM, id: String(invitation.id) });
    }
  }
});

/** Adds Contoso's manager and read-only member to Fabrikam as read-only members for `body`. */
async function withTwoMoreFabrikamMembers(page: Page, body: () => Promise<void>) {
  const guests = ["manager@contoso.example", "readonly@contoso.example"];
  for (const email of guests) await call(page, "members/add", { tenant: FABRIKAM, email, role: "readonly" });
  try {
    await body();
  } finally {
    const members = await call(page, "members/list", { tenant: FABRIKAM });
    for (const member of members.filter((m: { email: string }) => guests.includes(m.email))) {
      await call(page, "members/remove", { tenant: FABRIKAM, user_id: String(member.user_id) });
    }
  }
}

test("removing a member who is not the last gives the focus to the Remove of the one after", async ({ page }) => {
  await signIn(page, "admin@contoso.example");
  await withTwoMoreFabrikamMembers(page, async () => {
    await openHydrated(page, `/t/${FABRIKAM}/members`);
    const rows = page.getByTestId("member-row");
    const emails = (await rows.locator("td:nth-child(2)").allTextContents()).map((e) => e.trim());
    const at = emails.indexOf("manager@contoso.example");
    // A row before it (the one an off-by-one would pick) and one after it.
    expect(at).toBeGreaterThan(0);
    expect(at).toBeLessThan(emails.length - 1);
    await rows.nth(at).getByTestId("remove-member").click();
    await page.getByTestId("remove-member-confirm").click();
    await expect(rows.filter({ hasText: emails[at] })).toHaveCount(0);
    await expect(rows.filter({ hasText: emails[at + 1] }).getByTestId("remove-member")).toBeFocused();
  });
});

test("a removal whose members list cannot be read then focuses the heading, and leaves no focus move for a later list", async ({
  page,
}) => {
  await signIn(page, "admin@contoso.example");
  await withTwoMoreFabrikamMembers(page, async () => {
    await openHydrated(page, `/t/${FABRIKAM}/members`);
    const rows = page.getByTestId("member-row");
    // The list read after the removal fails, once.
    await page.route("**/api/members/list", (route) => route.fulfill({ status: 500, body: "boom" }), { times: 1 });
    await rows.filter({ hasText: "readonly@contoso.example" }).getByTestId("remove-member").click();
    await page.getByTestId("remove-member-confirm").click();
    await expect(page.getByTestId("members")).toHaveCount(0);
    await expect(page.getByRole("alert").filter({ hasText: "Could not reach the server" })).toBeVisible();
    await expect.soft(page.locator("#members-title")).toBeFocused();

    // The owner adds them back: the list is drawn again, with a row at the removed one's
    // place, and the focus stays with the form.
    await page.getByLabel("E-mail").fill("readonly@contoso.example");
    await page.getByRole("button", { name: "Add member" }).click();
    await expect(page.getByText("Added: the account is a member now.")).toBeVisible();
    await expect(rows.filter({ hasText: "readonly@contoso.example" })).toHaveCount(1);
    await page.evaluate(() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done))));
    const focused = await page.evaluate(() => document.activeElement?.getAttribute("data-testid") ?? "");
    expect(focused).not.toBe("remove-member");
  });
});

test("a manager sees Change role, Remove and Withdraw disabled with the role they need", async ({
  page,
  browser,
}) => {
  const owner = await pageAs(browser, "admin@contoso.example");
  const email = `e2e-manager-view-${Date.now()}@example.com`;
  await call(owner, "members/add", { tenant: CONTOSO, email, role: "readonly" });
  try {
    await signIn(page, "manager@contoso.example");
    await openHydrated(page, `/t/${CONTOSO}/members`);
    const row = page.getByTestId("member-row").filter({ hasText: "operator@contoso.example" });
    for (const name of ["Change role", "Remove"]) {
      const button = row.getByRole("button", { name });
      await expect(button).toBeDisabled();
      await expect(button).toHaveAccessibleDescription("Needs owner");
    }
    const withdraw = page.getByTestId("invitation-row").filter({ hasText: email }).getByRole("button", { name: "Withdraw" });
    await expect(withdraw).toBeDisabled();
    await expect(withdraw).toHaveAccessibleDescription("Needs owner");
  } finally {
    const pending = await call(owner, "invitations/list", { tenant: CONTOSO });
    for (const invitation of pending.filter((i: { email: string }) => i.email === email)) {
      await call(owner, "invitations/revoke", { tenant: CONTOSO, id: String(invitation.id) });
    }
    await owner.context().close();
  }
});

/**
 * Makes Contoso's manager a second owner of Fabrikam (the admin is the first) for `body`, which
 * gets the admin's page (a context of its own); she leaves Fabrikam afterwards, if still there.
 */
/** Signed in as `email` on Fabrikam's members page: `email`'s own row. */
async function ownRowOnFabrikamMembers(page: Page, email: string) {
  await signIn(page, email);
  await openHydrated(page, `/t/${FABRIKAM}/members`);
  return page.getByTestId("member-row").filter({ hasText: email });
}

/** Changes the role in member row `row` to `role`, confirmed. */
async function changeRole(row: Locator, role: string) {
  await row.getByTestId("member-role").selectOption(role);
  await row.getByTestId("change-role").click();
  await row.getByTestId("change-role-confirm").click();
}

async function withSecondFabrikamOwner(browser: Browser, body: (admin: Page, owner: string) => Promise<void>) {
  const owner = "manager@contoso.example";
  const admin = await pageAs(browser, "admin@contoso.example");
  await call(admin, "members/add", { tenant: FABRIKAM, email: owner, role: "owner" });
  try {
    await body(admin, owner);
  } finally {
    const members = await call(admin, "members/list", { tenant: FABRIKAM });
    for (const member of members.filter((m: { email: string }) => m.email === owner)) {
      await call(admin, "members/remove", { tenant: FABRIKAM, user_id: String(member.user_id) });
    }
    await admin.context().close();
  }
}

test("an owner who makes herself a manager sees the owner's actions disabled at once, with the role they need", async ({
  page,
  browser,
}) => {
  await withSecondFabrikamOwner(browser, async (admin, owner) => {
    const invited = `e2e-demoted-view-${Date.now()}@example.com`;
    await call(admin, "members/add", { tenant: FABRIKAM, email: invited, role: "readonly" });
    try {
      const me = await ownRowOnFabrikamMembers(page, owner);
      const rows = page.getByTestId("member-row");
      await changeRole(me, "manager");
      await expect(me.getByTestId("member-role")).toHaveText(/manager/i);

      // Without a reload: what only an owner may do is disabled, and says so.
      const add = page.getByRole("button", { name: "Add member" });
      await expect(add).toBeDisabled();
      await expect(add).toHaveAccessibleDescription("Needs owner");
      for (const row of [me, rows.filter({ hasText: "admin@contoso.example" })]) {
        for (const testid of ["change-role", "remove-member"]) {
          await expect(row.getByTestId(testid)).toBeDisabled();
          await expect(row.getByTestId(testid)).toHaveAccessibleDescription("Needs owner");
        }
      }
      const withdraw = page.getByTestId("invitation-row").filter({ hasText: invited }).getByTestId("revoke-invitation");
      await expect(withdraw).toBeDisabled();
      await expect(withdraw).toHaveAccessibleDescription("Needs owner");
      await expect(page.getByTestId("needs-role").filter({ hasText: "Needs owner" }).first()).toBeVisible();
      // Her select went with her rights: the focus goes to the heading, above the reason.
      await expect(page.locator("#members-title")).toBeFocused();
    } finally {
      const pending = await call(admin, "invitations/list", { tenant: FABRIKAM });
      for (const invitation of pending.filter((i: { email: string }) => i.email === invited)) {
        await call(admin, "invitations/revoke", { tenant: FABRIKAM, id: String(invitation.id) });
      }
    }
  });
});

test("an owner who removes herself goes to her tenants, where that tenant is no longer listed, and Back goes past it", async ({
  page,
  browser,
}) => {
  await withSecondFabrikamOwner(browser, async (_admin, owner) => {
    await signIn(page, owner);
    await openHydrated(page, `/t/${CONTOSO}/backup-sets`);
    await openHydrated(page, `/t/${FABRIKAM}/members`);
    const me = page.getByTestId("member-row").filter({ hasText: owner });
    await me.getByTestId("remove-member").click();
    await me.getByTestId("remove-member-confirm").click();
    await expect(page.getByRole("heading", { name: "Your tenants" })).toBeVisible();
    await expect(page).toHaveURL(/\/$/);
    await expect(page.locator(`a[href*="${FABRIKAM}"]`)).toHaveCount(0);
    await expect(page.locator(`a[href*="${CONTOSO}"]`)).toHaveCount(1);
    // Fabrikam's page was replaced by her tenants in the history: Back reaches Contoso's, not
    // Fabrikam's (whose layout would send her to her tenants again, each time).
    await page.goBack();
    await expect(page).toHaveURL(new RegExp(`/t/${CONTOSO}/backup-sets$`));
  });
});

test("an owner who makes herself an operator sees the members refused in place of the list, the focus on the heading", async ({
  page,
  browser,
}) => {
  await withSecondFabrikamOwner(browser, async (_admin, owner) => {
    const me = await ownRowOnFabrikamMembers(page, owner);
    await changeRole(me, "operator");
    // An operator may not read the members: the refusal replaces the list (and her select).
    await expect(page.getByTestId("members")).toHaveCount(0);
    await expect(page.getByTestId("needs-role").filter({ hasText: "is operator" }).first()).toBeVisible();
    await expect(page.locator("#members-title")).toBeFocused();
  });
});

test("another member's role change does not read the owner again: a failing reading leaves her header and actions", async ({
  page,
}) => {
  await signIn(page, "admin@contoso.example");
  await withTwoMoreFabrikamMembers(page, async () => {
    await openHydrated(page, `/t/${FABRIKAM}/members`);
    await expect(page.getByTestId("user-name")).toBeVisible();
    // From now on, reading the signed-in user fails (the server, for a moment).
    await page.route("**/api/auth/me", (route) => route.fulfill({ status: 500, body: "boom" }));
    const row = page.getByTestId("member-row").filter({ hasText: "readonly@contoso.example" });
    await changeRole(row, "operator");
    await expect(row.getByTestId("change-role")).toHaveCount(0);
    await expect(row.getByTestId("member-role")).toHaveValue("operator");
    await expect(row.getByTestId("member-role")).toBeFocused();
    await expect(page.getByTestId("user-name")).toBeVisible();
    await expect(page.getByTestId("tenant-switcher")).toBeVisible();
    await expect(page.getByRole("button", { name: "Add member" })).toBeEnabled();
    await expect(page.getByText("could not be read")).toHaveCount(0);
  });
});

test("an owner whose own change went through but whose role cannot be read again is not shown her old rights", async ({
  page,
  browser,
}) => {
  await withSecondFabrikamOwner(browser, async (_admin, owner) => {
    const me = await ownRowOnFabrikamMembers(page, owner);
    // The reading after her change fails (the server, for a moment): the one before it is the
    // owner's role she has just given up.
    await page.route("**/api/auth/me", (route) => route.fulfill({ status: 500, body: "boom" }));
    await changeRole(me, "manager");
    await expect(page.getByText("could not be read").first()).toBeVisible();
    await expect(page.getByRole("button", { name: "Add member" })).toBeDisabled();
  });
});

test("an owner's own role change answered after another member's removal still reads her again", async ({
  page,
  browser,
}) => {
  await withSecondFabrikamOwner(browser, async (admin, owner) => {
    const guest = "readonly@contoso.example";
    await call(admin, "members/add", { tenant: FABRIKAM, email: guest, role: "readonly" });
    try {
      const me = await ownRowOnFabrikamMembers(page, owner);
      const rows = page.getByTestId("member-row");
      // Her change is held on its way until the removal of another member was answered.
      let release = () => {};
      const held = new Promise<void>((resolve) => (release = resolve));
      await page.route("**/api/members/change-role", async (route) => {
        await held;
        await route.continue();
      });
      await changeRole(me, "manager");
      const other = rows.filter({ hasText: guest });
      await other.getByTestId("remove-member").click();
      await page.getByTestId("remove-member-confirm").click();
      await expect(other).toHaveCount(0);
      release();
      await expect(me.getByTestId("member-role")).toHaveText(/manager/i);
      const add = page.getByRole("button", { name: "Add member" });
      await expect(add).toBeDisabled();
      await expect(add).toHaveAccessibleDescription("Needs owner");
    } finally {
      const members = await call(admin, "members/list", { tenant: FABRIKAM });
      for (const member of members.filter((m: { email: string }) => m.email === guest)) {
        await call(admin, "members/remove", { tenant: FABRIKAM, user_id: String(member.user_id) });
      }
    }
  });
});
