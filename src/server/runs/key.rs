//! The idempotency key of an "add policies" run (identical submits share one active run):
//! sha256 over a canonical encoding of the operation, the tenant, the backup set, the sorted
//! unique policy ids and the option flags in a fixed order. The user is deliberately not part of it: deduplication is tenant-wide.

use sha2::{Digest, Sha256};

use crate::domain::run::OperationType;
use crate::domain::{AddPoliciesOptions, PolicySelection};

/// A run's idempotency key: 64 lower-case hex characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key of adding `selection` to backup set `backup_set_id` of tenant `tenant_id`.
    pub fn for_add_policies(
        tenant_id: i64,
        backup_set_id: i64,
        selection: &PolicySelection,
        options: AddPoliciesOptions,
    ) -> Self {
        // One field per line, names included, so no two different inputs encode alike.
        let mut hasher = Sha256::new();
        hasher.update(format!(
            "operation={}\ntenant={tenant_id}\nbackup_set={backup_set_id}\npolicies=",
            OperationType::AddPolicies.as_str()
        ));
        for (i, id) in selection.ids().iter().enumerate() {
            if i > 0 {
                hasher.update(b",");
            }
            hasher.update(id.to_string());
        }
        hasher.update(format!(
            "\ninclude_assignments={}\ninclude_scope_tags={}\n",
            u8::from(options.include_assignments),
            u8::from(options.include_scope_tags)
        ));
        Self(
            hasher
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    }

    /// The key of a run of `operation` in tenant `tenant_id` on what `fields` name (e.g.
    /// `[("policy", 12)]`): identical starts share one active run.
    pub fn of(operation: OperationType, tenant_id: i64, fields: &[(&str, i64)]) -> Self {
        // One field per line, names included, so no two different inputs encode alike.
        let mut text = format!("operation={}\ntenant={tenant_id}\n", operation.as_str());
        for (name, value) in fields {
            text.push_str(&format!("{name}={value}\n"));
        }
        let digest = Sha256::digest(text);
        Self(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(tenant: i64, set: i64, ids: Vec<i64>, assignments: bool, tags: bool) -> IdempotencyKey {
        let options = AddPoliciesOptions {
            include_assignments: assignments,
            include_scope_tags: tags,
        };
        IdempotencyKey::for_add_policies(
            tenant,
            set,
            &PolicySelection::parse(ids).unwrap(),
            options,
        )
    }

    #[test]
    fn order_and_duplicates_do_not_matter() {
        assert_eq!(
            key(1, 2, vec![3, 1, 2], true, false),
            key(1, 2, vec![1, 2, 3, 3], true, false)
        );
    }

    #[test]
    fn every_part_changes_the_key() {
        let base = key(1, 2, vec![1, 2, 3], true, false);
        assert_eq!(base.as_str().len(), 64);
        for other in [
            key(9, 2, vec![1, 2, 3], true, false),
            key(1, 9, vec![1, 2, 3], true, false),
            key(1, 2, vec![1, 2], true, false),
            key(1, 2, vec![12, 3], true, false),
            key(1, 2, vec![1, 2, 3], false, false),
            key(1, 2, vec![1, 2, 3], true, true),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn keys_of_fields_name_the_operation_the_tenant_and_each_field() {
        let check = IdempotencyKey::of(OperationType::CheckConnection, 1, &[]);
        assert_eq!(check.as_str().len(), 64);
        assert_eq!(
            check,
            IdempotencyKey::of(OperationType::CheckConnection, 1, &[])
        );
        assert_ne!(
            check,
            IdempotencyKey::of(OperationType::CheckConnection, 2, &[])
        );
        assert_ne!(
            check,
            IdempotencyKey::of(OperationType::InventorySync, 1, &[])
        );
        assert_ne!(check, key(1, 1, vec![1], false, false));
        let capture = |tenant, policy| {
            IdempotencyKey::of(
                OperationType::CaptureSnapshot,
                tenant,
                &[("policy", policy)],
            )
        };
        assert_eq!(capture(1, 7), capture(1, 7));
        assert_ne!(capture(1, 7), capture(1, 8));
        assert_ne!(capture(1, 7), capture(7, 1));
        // The field's name is part of the key.
        assert_ne!(
            capture(1, 7),
            IdempotencyKey::of(OperationType::CaptureSnapshot, 1, &[("backup_set", 7)])
        );
    }

    proptest! {
        #[test]
        fn any_permutation_gives_the_same_key(mut ids in proptest::collection::vec(1i64..1_000_000, 1..200), seed in any::<u64>()) {
            let a = key(7, 8, ids.clone(), false, true);
            // A deterministic shuffle of the same ids.
            let len = ids.len();
            for i in 0..len {
                ids.swap(i, (seed as usize).wrapping_mul(i + 1) % len);
            }
            prop_assert_eq!(a, key(7, 8, ids, false, true));
        }
    }
}
