//! One declaration for the enums that are stored as words: each variant with its stored
//! (database and URL) spelling and the words the UI shows. [`spelled_enum!`] writes the enum and
//! its `ALL` (in declaration order), `as_str`, `parse` and `label`, so a new variant is one line
//! and its spelling and label cannot be forgotten in one of four places.

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
    };
}
pub(crate) use spelled_enum;

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
        }
    }
}
