//! One declaration for the enums that are stored as words: each variant with its stored
//! (database and URL) spelling and the words the UI shows. [`spelled_enum!`] writes the enum and
//! its `ALL` (in declaration order), `as_str`, `parse` and `label`, so a new variant is one line
//! and its spelling and label cannot be forgotten in one of four places. On the server such an
//! enum is also an sqlx column type (decoded from its spelling), so rows read it directly; an
//! unknown spelling is then a decode error naming the enum and the value.

use std::fmt;

/// A stored spelling that no variant has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownSpelling {
    /// The enum that was asked.
    pub of: &'static str,
    /// The spelling it did not know.
    pub raw: String,
}

impl fmt::Display for UnknownSpelling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?}", self.of, self.raw)
    }
}

impl std::error::Error for UnknownSpelling {}

/// Declares an enum whose variants are written `Variant => ("spelling", "Label"),`; attributes
/// and doc comments go on the enum and on each variant as usual.
macro_rules! spelled_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$variant_meta:meta])*
                $variant:ident => ($spelling:literal, $label:literal)
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $(
                $(#[$variant_meta])*
                $variant,
            )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; [$($spelling),+].len()] = [$(Self::$variant),+];

            /// The stored spelling (database and URL).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $spelling,)+
                }
            }

            /// Parses the stored spelling; `None` for anything else (case and spaces count).
            pub fn parse(raw: &str) -> Option<Self> {
                Self::ALL.into_iter().find(|variant| variant.as_str() == raw)
            }

            /// The words the UI shows.
            pub fn label(self) -> &'static str {
                match self {
                    $(Self::$variant => $label,)+
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::domain::spelled::UnknownSpelling;

            fn try_from(raw: String) -> Result<Self, $crate::domain::spelled::UnknownSpelling> {
                Self::parse(&raw).ok_or($crate::domain::spelled::UnknownSpelling {
                    of: stringify!($name),
                    raw,
                })
            }
        }

        #[cfg(feature = "ssr")]
        impl sqlx::Type<sqlx::Any> for $name {
            fn type_info() -> sqlx::any::AnyTypeInfo {
                <String as sqlx::Type<sqlx::Any>>::type_info()
            }

            fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
                <String as sqlx::Type<sqlx::Any>>::compatible(ty)
            }
        }

        #[cfg(feature = "ssr")]
        impl<'r> sqlx::Decode<'r, sqlx::Any> for $name {
            fn decode(
                value: sqlx::any::AnyValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let raw = <String as sqlx::Decode<'r, sqlx::Any>>::decode(value)?;
                Ok(Self::try_from(raw)?)
            }
        }
    };
}
pub(crate) use spelled_enum;

/// Serializes a [`spelled_enum!`] as its stored spelling (and reads only that), for enums whose
/// wire form should be the database word rather than the variant name.
macro_rules! spelled_serde {
    ($name:ident) => {
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = <String as serde::Deserialize>::deserialize(deserializer)?;
                Self::try_from(raw).map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use spelled_serde;

#[cfg(test)]
mod tests {
    spelled_enum! {
        /// A test enum.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Fruit {
            /// Red.
            Apple => ("apple", "Apple"),
            BloodOrange => ("blood_orange", "Blood orange"),
        }
    }

    #[test]
    fn spellings_labels_and_order_come_from_the_declaration() {
        assert_eq!(Fruit::ALL, [Fruit::Apple, Fruit::BloodOrange]);
        assert_eq!(Fruit::BloodOrange.as_str(), "blood_orange");
        assert_eq!(Fruit::BloodOrange.label(), "Blood orange");
        for fruit in Fruit::ALL {
            assert_eq!(Fruit::parse(fruit.as_str()), Some(fruit));
        }
        for junk in ["", "Apple", "apple ", "blood orange"] {
            assert_eq!(Fruit::parse(junk), None, "{junk}");
            let error = Fruit::try_from(junk.to_owned()).unwrap_err();
            assert_eq!(error.to_string(), format!("unknown Fruit {junk:?}"));
        }
        assert_eq!(Fruit::try_from("apple".to_owned()), Ok(Fruit::Apple));
    }

    spelled_enum! {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Dotted {
            AddPolicies => ("backup_set.add_policies", "Add policies"),
        }
    }
    spelled_serde!(Dotted);

    #[test]
    fn spelled_serde_writes_and_reads_the_stored_spelling_only() {
        let wire = serde_json::to_value(Dotted::AddPolicies).unwrap();
        assert_eq!(wire, serde_json::json!("backup_set.add_policies"));
        assert_eq!(
            serde_json::from_value::<Dotted>(wire).unwrap(),
            Dotted::AddPolicies
        );
        assert!(serde_json::from_value::<Dotted>(serde_json::json!("AddPolicies")).is_err());
        assert_eq!(Dotted::AddPolicies.label(), "Add policies");
    }
}
