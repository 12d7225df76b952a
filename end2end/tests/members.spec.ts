import { expect, test } from "@playwright/test";
import { call, CONTOSO, FABRIKAM, openHydrated, pageAs, signIn } from "./demo";

// Fabrikam, whose owner is the demo admin; its operator is made an owner for a moment and
// back (backup_sets.spec.ts expects Contoso unchanged). Contoso's manager is made an operator
// for a moment and back.

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
