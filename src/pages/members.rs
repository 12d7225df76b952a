//! `/t/{tenant}/members`: who may do what in the tenant. Owners and managers read it; the owner
//! adds members by e-mail (an address without an account gets an invitation link), changes
//! roles (a role is chosen, then **Change role** asks first) and removes members. A tenant
//! keeps at least one owner: the server's refusal is shown as it is.

use leptos::{html, prelude::*};
use leptos_meta::Title;

use super::tenant_layout::{fetch_if_held, refusal, use_tenant, use_tenant_page};
use crate::api::invitations::{list_invitations, RevokeInvitation};
use crate::api::members::{list_members, AddMember, ChangeMemberRole, RemoveMember};
use crate::components::{
    Column, ConfirmButton, DataTable, EmptyState, ErrorMessage, Field, Loading, MeResource,
    NeedsRole, RefusedOrError,
};
use crate::domain::invitation::INVITATION_DAYS;
use crate::domain::{
    AddMemberOutcome, AppError, Capability, Email, Member, PendingInvitation, Role,
};

/// The changes a member row can make, shared by every row.
#[derive(Clone, Copy)]
struct MemberActions {
    tenant: Memo<String>,
    change: ServerAction<ChangeMemberRole>,
    remove: ServerAction<RemoveMember>,
    /// The member whose role change is on its way, to give their role select the focus back.
    changing: StoredValue<Option<i64>>,
    /// Whether the role change on its way is the signed-in user's own (`me`, as read).
    own_change: StoredValue<bool>,
    /// Whether the removal on its way is the signed-in user's own: apart from `own_change`, as
    /// a removal may be confirmed while a change is on its way.
    own_remove: StoredValue<bool>,
    /// The signed-in user, as last read.
    me: MeResource,
    /// Where a removal leaves the focus.
    removed: FocusAfterRemoval,
}

impl MemberActions {
    /// Whether the member with this e-mail is the signed-in user.
    fn is_me(self, email: &str) -> bool {
        self.me
            .with_untracked(|me| matches!(me, Some(Ok(user)) if user.email == email))
    }

    /// Once a role change has been answered and what is drawn after it has no role select for
    /// the member (the user took her own right to change roles: the rows have none, or she may
    /// no longer read the members and the refusal is drawn instead), the focus, on the select
    /// gone with the table before, goes to the heading; the member is forgotten, so no later
    /// table moves the focus.
    fn use_heading_after_change(self) {
        Effect::new(move |_| {
            if self.changing.get_value().is_some() && !self.change.pending().get_untracked() {
                self.changing.set_value(None);
                self.removed.focus_heading();
            }
        });
    }
}

/// Where the focus goes once a confirmed removal (of a member, of an invitation) has been
/// answered and the list drawn again: the confirmation and its button are gone with the list
/// before. It goes to the same action in the row at the removed row's place (that row again
/// when the removal was refused, else the one after it), else in the last row, else to the
/// list's heading (`heading`, an id).
#[derive(Clone, Copy)]
struct FocusAfterRemoval {
    /// The place of the row whose removal is on its way.
    at: StoredValue<Option<usize>>,
    /// The test id of the action in each row.
    action: &'static str,
    heading: &'static str,
}

impl FocusAfterRemoval {
    fn new(action: &'static str, heading: &'static str) -> Self {
        Self {
            at: StoredValue::new(None),
            action,
            heading,
        }
    }

    /// The removal of the row at `index` was confirmed.
    fn confirmed(self, index: usize) {
        self.at.set_value(Some(index));
    }

    /// Moves the focus, in the browser, once the list drawn after the answer is in the page;
    /// until the answer (`pending`), the list shown is the one before.
    fn use_after_redraw(self, pending: Signal<bool>) {
        self.use_after_answer(pending, Self::focus);
    }

    /// The list could not be read after the answer, and its error is drawn instead: the focus
    /// goes to the list's heading. Without this, the place kept would move the focus away from
    /// wherever it is when the list is next drawn (after an Add, say).
    fn use_after_error(self, pending: Signal<bool>) {
        self.use_after_answer(pending, |this, _| this.focus_heading());
    }

    /// Calls `focus` with the place kept, once, when what is drawn after the answer (whatever
    /// it is) is in the page; the place is forgotten then.
    fn use_after_answer(self, pending: Signal<bool>, focus: fn(Self, usize)) {
        Effect::new(move |_| {
            if pending.get_untracked() {
                return;
            }
            if let Some(at) = self.at.get_value() {
                self.at.set_value(None);
                // After the list is in the page: the effect may run before the rows drawn
                // after the answer have replaced those before.
                request_animation_frame(move || focus(self, at));
            }
        });
    }

    /// Gives the focus to the action in the row at `at` (in the browser).
    fn focus(self, at: usize) {
        #[cfg(feature = "hydrate")]
        {
            use leptos::wasm_bindgen::JsCast;
            use leptos::web_sys::HtmlElement;
            let document = document();
            // The action in the row at `at`, or in the last row.
            let in_row = |row: String| {
                let selector = format!("tbody > tr:{row} button[data-testid={}]", self.action);
                document.query_selector(&selector).ok().flatten()
            };
            let action = in_row(format!("nth-of-type({})", at.saturating_add(1)))
                .or_else(|| in_row("last-of-type".to_owned()))
                .and_then(|action| action.dyn_into::<HtmlElement>().ok());
            match action {
                Some(action) => {
                    let _ = action.focus();
                }
                None => self.focus_heading(),
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (self.action, at);
    }

    /// Gives the focus to the list's heading (in the browser).
    fn focus_heading(self) {
        #[cfg(feature = "hydrate")]
        {
            use leptos::wasm_bindgen::JsCast;
            if let Some(heading) = document()
                .get_element_by_id(self.heading)
                .and_then(|heading| heading.dyn_into::<leptos::web_sys::HtmlElement>().ok())
            {
                let _ = heading.focus();
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = self.heading;
    }
}

/// The members page: the add form, the members, and the pending invitations.
#[component]
pub fn MembersPage() -> impl IntoView {
    let tenant = use_tenant();
    let page = use_tenant_page();
    let add = ServerAction::<AddMember>::new();
    let actions = MemberActions {
        tenant,
        change: ServerAction::new(),
        remove: ServerAction::new(),
        changing: StoredValue::new(None),
        own_change: StoredValue::new(false),
        own_remove: StoredValue::new(false),
        me: page.me,
        removed: FocusAfterRemoval::new("remove-member", "members-title"),
    };
    let revoke = ServerAction::<RevokeInvitation>::new();
    let withdrawn = FocusAfterRemoval::new("revoke-invitation", "invitations-title");
    let members = Resource::new(
        move || {
            (
                tenant.get(),
                add.version().get(),
                actions.change.version().get(),
                actions.remove.version().get(),
            )
        },
        move |(tenant, ..)| {
            fetch_if_held(page, Capability::ReadAuditLog, move || list_members(tenant))
        },
    );
    // A role change or a removal can withdraw invitations too: the server withdraws those of a
    // member who is no longer an owner.
    let invitations = Resource::new(
        move || {
            (
                tenant.get(),
                add.version().get(),
                revoke.version().get(),
                actions.change.version().get(),
                actions.remove.version().get(),
            )
        },
        move |(tenant, ..)| {
            fetch_if_held(page, Capability::ReadAuditLog, move || {
                list_invitations(tenant)
            })
        },
    );
    // The last change's refusal (the last owner, a member gone meanwhile), until the next one.
    // A change of her own that went through (an owner who made herself a manager, or left):
    // she is read again, so what the page disables follows her new role, and the layout takes
    // her to her tenants once she is no longer a member. Another member's change leaves her as
    // she is, and is not worth a reading that could fail.
    let problem = RwSignal::new(None::<AppError>);
    let answered = move |result: Result<(), AppError>, own: StoredValue<bool>| {
        let was_own = own.get_value();
        own.set_value(false);
        match result {
            Ok(()) => {
                problem.set(None);
                if was_own {
                    page.me.refetch();
                }
            }
            Err(error) => problem.set(Some(error)),
        }
    };
    Effect::new(move |_| {
        if let Some(result) = actions.change.value().get() {
            answered(result, actions.own_change);
        }
    });
    Effect::new(move |_| {
        if let Some(result) = actions.remove.value().get() {
            answered(result, actions.own_remove);
        }
    });
    // The last withdrawal's refusal (gone meanwhile, not allowed), until the next one.
    let revoke_problem = RwSignal::new(None::<AppError>);
    Effect::new(move |_| {
        if let Some(result) = revoke.value().get() {
            revoke_problem.set(result.err());
        }
    });

    view! {
        <Title text="Members" />
        <h1 id="members-title" tabindex="-1">"Members"</h1>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                let refused = refusal(Capability::ManageMembers).await;
                view! { <AddMemberForm action=add tenant refused /> }
            })}
        </Transition>
        <div data-testid="member-problem">
            {move || problem.get().map(|error| view! { <ErrorMessage error /> })}
        </div>
        <Transition fallback=|| view! { <Loading what="the members" /> }>
            {move || Suspend::new(async move {
                let refused = refusal(Capability::ManageMembers).await;
                match members.await {
                    Ok(list) => view! {
                        <MemberTable list actions refused />
                    }.into_any(),
                    Err(error) => {
                        actions.removed.use_after_error(actions.remove.pending().into());
                        actions.use_heading_after_change();
                        view! { <RefusedOrError error /> }.into_any()
                    }
                }
            })}
        </Transition>
        <h2 id="invitations-title" tabindex="-1">"Pending invitations"</h2>
        <div data-testid="invitation-problem">
            {move || revoke_problem.get().map(|error| view! { <ErrorMessage error /> })}
        </div>
        <Transition fallback=|| view! { <Loading what="the invitations" /> }>
            {move || Suspend::new(async move {
                let refused = refusal(Capability::ManageMembers).await;
                match invitations.await {
                    Ok(list) if list.is_empty() => {
                        withdrawn.use_after_redraw(revoke.pending().into());
                        view! {
                            <EmptyState
                                title="No pending invitations"
                                hint="Adding an address that has no account makes an invitation link."
                            />
                        }.into_any()
                    }
                    Ok(list) => view! {
                        <InvitationTable list tenant revoke refused withdrawn />
                    }.into_any(),
                    Err(error) => {
                        withdrawn.use_after_error(revoke.pending().into());
                        view! { <RefusedOrError error /> }.into_any()
                    }
                }
            })}
        </Transition>
    }
}

/// The members' columns; a manager sees the actions too, disabled, with the role they need.
const MEMBER_COLUMNS: &[Column] = &[
    Column::text("Name"),
    Column::text("E-mail"),
    Column::text("Role"),
    Column::text("Added"),
    Column::text("Actions"),
];

/// The id of the reason, shown once above the members, why their actions are disabled.
const MEMBER_NEEDS_ID: &str = "member-actions-needs";

/// The id of the reason, shown once above the invitations, why Withdraw is disabled.
const INVITATION_NEEDS_ID: &str = "invitation-actions-needs";

/// An action the member's role does not allow: disabled, and described by the reason shown
/// once above its table (`needs_id`), since a disabled button takes no focus.
#[component]
fn RefusedAction(
    label: &'static str,
    testid: &'static str,
    needs_id: &'static str,
) -> impl IntoView {
    view! {
        <button type="button" class="refused" data-testid=testid disabled aria-describedby=needs_id>
            {label}
        </button>
    }
}

/// One row per member; the owner changes roles and removes members here, and anyone else who
/// reads the page sees those actions disabled, with the reason (`refused`).
#[component]
fn MemberTable(
    list: Vec<Member>,
    actions: MemberActions,
    refused: Option<&'static str>,
) -> impl IntoView {
    actions
        .removed
        .use_after_redraw(actions.remove.pending().into());
    if refused.is_some() {
        actions.use_heading_after_change();
    }
    view! {
        {refused.map(|reason| view! { <NeedsRole id=MEMBER_NEEDS_ID reason /> })}
        <DataTable columns=MEMBER_COLUMNS testid="members">
            {list
                .into_iter()
                .enumerate()
                .map(|(index, member)| view! { <MemberRow member index actions refused /> })
                .collect_view()}
        </DataTable>
    }
}

/// What "Change role" asks before it goes ahead: the new role, and what else the server does
/// when the member loses the right to invite (their pending invitations are withdrawn).
fn role_question(name: &str, from: Role, to: Role) -> String {
    let article = if to.as_str().starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    let mut question = format!("Make {name} {article} {}?", to.label());
    if from.can(Capability::ManageMembers) && !to.can(Capability::ManageMembers) {
        question.push_str(" The invitations they sent that are still pending are withdrawn.");
    }
    question
}

/// A member. For the owner, the role select only chooses: a role other than the current one
/// brings up **Change role**, which asks before it changes anything. A select that changed the
/// role on `change` would do it on the first arrow key (Chromium fires `change` for an arrow
/// on a closed select), and a demoted owner's invitations cannot be brought back.
#[component]
fn MemberRow(
    member: Member,
    /// The row's place in the table.
    index: usize,
    actions: MemberActions,
    refused: Option<&'static str>,
) -> impl IntoView {
    let MemberActions {
        tenant,
        change,
        remove,
        changing,
        removed,
        ..
    } = actions;
    let user_id = member.user_id;
    let current = member.role;
    let may_change = refused.is_none();
    let role_cell = if may_change {
        let label = format!("Role of {}", member.display_name);
        let name = member.display_name.clone();
        let email = member.email.clone();
        let chosen = RwSignal::new(current);
        let select = NodeRef::<html::Select>::new();
        // The table is built anew once a change has gone through (or been refused), and the
        // focus would drop to the page: it goes to the new select of the member whose role was
        // changed. Only the select's arrival is tracked, so the rows built before the answer
        // never take it.
        Effect::new(move |_| {
            let select = select.get();
            if changing.get_value() != Some(user_id) || change.pending().get_untracked() {
                return;
            }
            if let Some(select) = select.filter(|select| select.is_connected()) {
                changing.set_value(None);
                let _ = select.focus();
            }
        });
        view! {
            <div class="member-role-change">
                <select
                    aria-label=label
                    data-testid="member-role"
                    node_ref=select
                    aria-busy=move || {
                        (change.pending().get() && changing.get_value() == Some(user_id))
                            .then_some("true")
                    }
                    on:change=move |ev| {
                        if let Some(role) = Role::parse(&event_target_value(&ev)) {
                            chosen.set(role);
                        }
                    }
                >
                    {Role::ALL
                        .into_iter()
                        .map(|role| view! {
                            <option value=role.as_str() selected=role == current prop:selected=role == current>
                                {role.label()}
                            </option>
                        })
                        .collect_view()}
                </select>
                {move || {
                    let to = chosen.get();
                    let email = email.clone();
                    (to != current).then(|| view! {
                        <ConfirmButton
                            label="Change role"
                            question=role_question(&name, current, to)
                            confirm="Yes, change"
                            class="primary"
                            testid="change-role"
                            pending=change.pending()
                            on_confirm=move || {
                                actions.own_change.set_value(actions.is_me(&email));
                                changing.set_value(Some(user_id));
                                change.dispatch(ChangeMemberRole {
                                    tenant: tenant.get_untracked(),
                                    user_id,
                                    role: to.as_str().to_owned(),
                                });
                            }
                        />
                    })
                }}
            </div>
        }
        .into_any()
    } else {
        view! {
            <div class="member-role-change">
                <span data-testid="member-role">{current.label()}</span>
                <RefusedAction label="Change role" testid="change-role" needs_id=MEMBER_NEEDS_ID />
            </div>
        }
        .into_any()
    };
    let remove_cell = if !may_change {
        view! { <RefusedAction label="Remove" testid="remove-member" needs_id=MEMBER_NEEDS_ID /> }
            .into_any()
    } else {
        let email = member.email.clone();
        view! {
            <ConfirmButton
                label="Remove"
                question=format!("Remove {} from this tenant?", member.display_name)
                confirm="Yes, remove"
                testid="remove-member"
                pending=remove.pending()
                on_confirm=move || {
                    actions.own_remove.set_value(actions.is_me(&email));
                    removed.confirmed(index);
                    remove.dispatch(RemoveMember { tenant: tenant.get_untracked(), user_id });
                }
            />
        }
        .into_any()
    };
    view! {
        <tr data-testid="member-row">
            <td>{member.display_name}</td>
            <td>{member.email}</td>
            <td>{role_cell}</td>
            <td>{member.added_at.to_string()}</td>
            <td>{remove_cell}</td>
        </tr>
    }
}

fn email_message(raw: &str) -> Option<String> {
    Email::parse(raw).err().map(|error| error.to_string())
}

/// E-mail and role. An address with an account is a member at once; any other gets an
/// invitation, whose link is shown here once.
#[component]
fn AddMemberForm(
    action: ServerAction<AddMember>,
    tenant: Memo<String>,
    refused: Option<&'static str>,
) -> impl IntoView {
    let form = NodeRef::<html::Form>::new();
    let result = action.value();
    let error = move || result.get().and_then(Result::err);
    let email_error = Signal::derive(move || error().and_then(|e| e.field_message("email")));
    let other_error = move || error().filter(|e| e.field_message("email").is_none());
    let outcome = move || result.get().and_then(Result::ok);
    Effect::new(move |_| {
        if outcome().is_some() {
            if let Some(form) = form.get() {
                form.reset();
            }
        }
    });
    view! {
        <ActionForm action node_ref=form>
            <fieldset
                class="create-form"
                data-testid="add-member"
                disabled=move || refused.is_some() || action.pending().get()
            >
                <legend>"Add a member"</legend>
                <input type="hidden" name="tenant" value=move || tenant.get() />
                <Field
                    id="member-email"
                    name="email"
                    label="E-mail"
                    kind="email"
                    required=true
                    maxlength=Email::MAX_CHARS
                    check=email_message
                    server=email_error
                />
                <label for="member-role">"Role"</label>
                <select id="member-role" name="role">
                    {Role::ALL
                        .into_iter()
                        .map(|role| view! {
                            <option value=role.as_str() selected=role == Role::Operator>
                                {role.label()}
                            </option>
                        })
                        .collect_view()}
                </select>
                <button
                    type="submit"
                    class="primary"
                    class:refused=refused.is_some()
                    aria-describedby=refused.map(|_| "add-member-needs")
                >
                    {move || if action.pending().get() { "Adding…" } else { "Add member" }}
                </button>
                {refused.map(|reason| view! { <NeedsRole id="add-member-needs" reason /> })}
                {move || other_error().map(|error| view! { <ErrorMessage error /> })}
                <div role="status" aria-live="polite">
                    {move || outcome().map(|outcome| view! { <AddedOrInvited outcome /> })}
                </div>
            </fieldset>
        </ActionForm>
    }
}

/// What adding did: a member now, or the invitation link to pass on (shown this once).
#[component]
fn AddedOrInvited(outcome: AddMemberOutcome) -> impl IntoView {
    match outcome {
        AddMemberOutcome::Added => {
            view! { <p class="form-success">"Added: the account is a member now."</p> }.into_any()
        }
        AddMemberOutcome::Invited { link, expires_at } => view! {
            <div class="invite-link" data-testid="invitation">
                <p>
                    "This address joins by invitation. Give the person "
                    "this link: it works once, until " {expires_at.to_string()} " ("
                    {INVITATION_DAYS} " days), and it is shown only now."
                </p>
                <label for="invite-link">"Invitation link"</label>
                <input
                    id="invite-link"
                    type="text"
                    readonly
                    data-testid="invite-link"
                    prop:value=link
                    on:focus=move |ev| {
                        use leptos::wasm_bindgen::JsCast;
                        if let Some(input) = ev
                            .target()
                            .and_then(|t| t.dyn_into::<leptos::web_sys::HtmlInputElement>().ok())
                        {
                            input.select();
                        }
                    }
                />
            </div>
        }
        .into_any(),
    }
}

const INVITATION_COLUMNS: &[Column] = &[
    Column::text("E-mail"),
    Column::text("Role"),
    Column::text("Invited by"),
    Column::text("Expires"),
    Column::text("Actions"),
];

/// The invitations not yet used; the owner can withdraw one (its link stops working), anyone
/// else who reads the page sees Withdraw disabled, with the reason (`refused`).
#[component]
fn InvitationTable(
    list: Vec<PendingInvitation>,
    tenant: Memo<String>,
    revoke: ServerAction<RevokeInvitation>,
    refused: Option<&'static str>,
    withdrawn: FocusAfterRemoval,
) -> impl IntoView {
    withdrawn.use_after_redraw(revoke.pending().into());
    view! {
        {refused.map(|reason| view! { <NeedsRole id=INVITATION_NEEDS_ID reason /> })}
        <DataTable
            columns=INVITATION_COLUMNS
            testid="invitations"
            labelled_by="invitations-title"
        >
            {list
                .into_iter()
                .enumerate()
                .map(|(index, invitation)| {
                    let id = invitation.id;
                    let withdraw = if refused.is_some() {
                        view! {
                            <RefusedAction
                                label="Withdraw"
                                testid="revoke-invitation"
                                needs_id=INVITATION_NEEDS_ID
                            />
                        }
                        .into_any()
                    } else {
                        view! {
                        <ConfirmButton
                            label="Withdraw"
                            question=format!("Withdraw the invitation of {}?", invitation.email)
                            confirm="Yes, withdraw"
                            testid="revoke-invitation"
                            pending=revoke.pending()
                            on_confirm=move || {
                                withdrawn.confirmed(index);
                                revoke.dispatch(RevokeInvitation { tenant: tenant.get_untracked(), id });
                            }
                        />
                        }
                        .into_any()
                    };
                    view! {
                        <tr data-testid="invitation-row">
                            <td>{invitation.email.clone()}</td>
                            <td>{invitation.role.label()}</td>
                            <td>{invitation.invited_by.unwrap_or_default()}</td>
                            <td>{invitation.expires_at.to_string()}</td>
                            <td>{withdraw}</td>
                        </tr>
                    }
                })
                .collect_view()}
        </DataTable>
    }
}

#[cfg(test)]
mod tests {
    use super::role_question;
    use crate::domain::Role;

    #[test]
    fn the_role_question_names_the_new_role_and_the_invitations_a_demotion_withdraws() {
        assert_eq!(
            role_question("Ada", Role::Readonly, Role::Operator),
            "Make Ada an operator?"
        );
        assert_eq!(
            role_question("Ada", Role::Owner, Role::Manager),
            "Make Ada a manager? The invitations they sent that are still pending are withdrawn."
        );
        assert_eq!(
            role_question("Ada", Role::Manager, Role::Owner),
            "Make Ada an owner?"
        );
    }
}
