import { expect, test } from "@playwright/test";
import { call, CONTOSO, FABRIKAM, pageAs, signIn } from "./demo";

// An account made through one tenant's invitation is not added to another tenant by an owner
// it shares no tenant with: that owner gets a link, and the account joins with it, signed in.
// Contoso's manager is made an owner for a moment and back; the new account leaves both
// tenants again (other specs expect their members unchanged).

test("an existing account joins another tenant through its link, signed in, without a new password", async ({
  page,
  browser,
}) => {
  await signIn(page, "admin@contoso.example");
  const members = await call(page, "members/list", { tenant: CONTOSO });
  const manager = members.find((m: { email: string }) => m.email === "manager@contoso.example");
  await call(page, "members/change-role", { tenant: CONTOSO, user_id: String(manager.user_id), role: "owner" });
  const email = `e2e-join-${Date.now()}@example.com`;
  try {
    // The account is made through Fabrikam's invitation.
    const fabrikam = await call(page, "members/add", { tenant: FABRIKAM, email, role: "readonly" });
    const context = await browser.newContext();
    const invitee = await context.newPage();
    await invitee.goto(fabrikam.Invited.link);
    await expect(invitee.locator("body[data-hydrated]")).toHaveCount(1);
    await invitee.getByLabel("Your name").fill("Jo Join");
    await invitee.getByLabel("Password", { exact: true }).fill("jo's long enough password");
    await invitee.getByLabel("Password again").fill("jo's long enough password");
    await invitee.getByRole("button", { name: "Create account and sign in" }).click();
    await expect(invitee).toHaveURL(new RegExp(`/t/${FABRIKAM}/backup-sets$`));

    // Contoso's owner, who shares no tenant with it, gets a link rather than a member.
    const owner = await pageAs(browser, "manager@contoso.example");
    const contoso = await call(owner, "members/add", { tenant: CONTOSO, email, role: "readonly" });
    await owner.context().close();
    expect(contoso.Invited?.link, JSON.stringify(contoso)).toBeTruthy();

    // Its page offers to join with the account, not to make one. Not signed in as it, joining
    // is refused with the way forward.
    const stranger = await browser.newContext();
    const visitor = await stranger.newPage();
    await visitor.goto(contoso.Invited.link);
    await expect(visitor.locator("body[data-hydrated]")).toHaveCount(1);
    await expect(visitor.getByLabel("Your name")).toHaveCount(0);
    await visitor.getByRole("button", { name: "Join the tenant" }).click();
    await expect(visitor.getByTestId("join-invitation").getByRole("alert")).toContainText("sign in with it");
    await stranger.close();

    // Signed in as the account, joining works.
    await invitee.goto(contoso.Invited.link);
    await expect(invitee.locator("body[data-hydrated]")).toHaveCount(1);
    await expect(invitee.getByTestId("join-invitation")).toBeVisible();
    await expect(invitee.getByLabel("Your name")).toHaveCount(0);
    await invitee.getByRole("button", { name: "Join the tenant" }).click();
    await expect(invitee).toHaveURL(new RegExp(`/t/${CONTOSO}/backup-sets$`));
    await context.close();
  } finally {
    for (const tenant of [CONTOSO, FABRIKAM]) {
      const now = await call(page, "members/list", { tenant });
      const joined = now.find((m: { email: string }) => m.email === email);
      if (joined) {
        await call(page, "members/remove", { tenant, user_id: String(joined.user_id) });
      }
    }
    await call(page, "members/change-role", { tenant: CONTOSO, user_id: String(manager.user_id), role: "manager" });
  }
});
