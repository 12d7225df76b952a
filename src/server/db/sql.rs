//! `Sql`: a query assembled from parts that numbers its own placeholders. `QueryBuilder<Any>`
//! writes `?`, which PostgreSQL refuses, and counting `$n` by hand breaks as soon as a filter
//! is optional; here each bound value writes the next `$n` where it is used.
//!
//! ```ignore
//! let mut sql = Sql::new("SELECT id FROM runs WHERE tenant_id = ");
//! sql.int(tenant_id);
//! if let Some(status) = status {
//!     sql.push(" AND status = ").text(status.as_str());
//! }
//! sql.push(" LIMIT ").int(50);
//! let ids: Vec<i64> = sql.query_scalar().fetch_all(db.pool()).await?;
//! ```

use std::borrow::Cow;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{Any, Arguments, FromRow};

/// `text` in lower case, letter by letter, in every script (`Ü` → `ü`, `П` → `п`): what a
/// search compares. One character at a time, without context (a final `Σ` is `σ`, not `ς`), so
/// a name and a search typed apart fold alike. SQLite's `LOWER` is this function
/// (`sqlite.rs`; its own folds ASCII alone), PostgreSQL's folds by the database's locale.
pub fn fold_case(text: &str) -> Cow<'_, str> {
    if text
        .bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_uppercase())
    {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.chars().flat_map(char::to_lowercase).collect())
    }
}

/// A `LIKE` pattern that finds `search` anywhere in a text, its wildcards escaped so a search
/// for `50%` or `a_b` finds exactly that text; used with `ESCAPE '\'`. Its case is left as
/// typed: [`Sql::contains_ignoring_case`] folds it in the database, beside the column.
fn like_pattern(search: &str) -> String {
    let mut out = String::with_capacity(search.len() + 2);
    out.push('%');
    for c in search.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Int(i64),
    OptInt(Option<i64>),
    Text(String),
    OptText(Option<String>),
}

/// SQL text with its bound values, in placeholder order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sql {
    text: String,
    values: Vec<Value>,
}

impl Sql {
    /// Starts a query with literal SQL (no values in it).
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            values: Vec::new(),
        }
    }

    /// Appends literal SQL. Never user input: values go through the binding methods.
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends the next placeholder, bound to an integer.
    pub fn int(&mut self, value: i64) -> &mut Self {
        self.value(Value::Int(value))
    }

    /// Appends the next placeholder, bound to an integer or NULL.
    pub fn opt_int(&mut self, value: Option<i64>) -> &mut Self {
        self.value(Value::OptInt(value))
    }

    /// Appends the next placeholder, bound to a text.
    pub fn text(&mut self, value: impl Into<String>) -> &mut Self {
        self.value(Value::Text(value.into()))
    }

    /// Appends the next placeholder, bound to a text or NULL.
    pub fn opt_text(&mut self, value: Option<impl Into<String>>) -> &mut Self {
        self.value(Value::OptText(value.map(Into::into)))
    }

    /// Appends a condition that `column` holds `search` whatever the case of either:
    /// `LOWER(column) LIKE LOWER($n) ESCAPE '\'`, bound to [`like_pattern`]. The database
    /// folds both sides by the same rules (PostgreSQL's by its locale, SQLite's by
    /// [`fold_case`]); folded here instead, the pattern could differ from the column where the
    /// rules differ (Rust folds `İ` to `i` and a combining dot, PostgreSQL to `i`). `LOWER`
    /// leaves the wildcards and the escape as they are.
    pub fn contains_ignoring_case(&mut self, column: &str, search: &str) -> &mut Self {
        self.push(&format!("LOWER({column}) LIKE LOWER("))
            .text(like_pattern(search))
            .push(") ESCAPE '\\'")
    }

    /// Appends `write` of each item, separated by commas: `$1, $2, $3` for an `IN (…)` list.
    pub fn list<T>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        mut write: impl FnMut(&mut Self, T),
    ) -> &mut Self {
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            write(self, item);
        }
        self
    }

    /// Appends one parenthesised row per item, separated by commas: `($1, $2), ($3, $4)` for
    /// `VALUES`. `write` writes a row's values (with their own `", "` between them).
    pub fn rows<T>(
        &mut self,
        items: impl IntoIterator<Item = T>,
        mut write: impl FnMut(&mut Self, T),
    ) -> &mut Self {
        self.list(items, |sql, item| {
            sql.push("(");
            write(sql, item);
            sql.push(")");
        })
    }

    fn value(&mut self, value: Value) -> &mut Self {
        self.values.push(value);
        self.text.push_str(&format!("${}", self.values.len()));
        self
    }

    /// The SQL text, placeholders numbered.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The query with every value bound, ready to execute.
    pub fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        sqlx::query_with(&self.text, self.arguments())
    }

    /// The query with every value bound, its rows read as `T`.
    pub fn query_as<T>(&self) -> QueryAs<'_, Any, T, AnyArguments<'_>>
    where
        T: for<'r> FromRow<'r, AnyRow>,
    {
        sqlx::query_as_with(&self.text, self.arguments())
    }

    /// The query with every value bound, reading the first column of its rows as `T`.
    pub fn query_scalar<T>(&self) -> QueryScalar<'_, Any, T, AnyArguments<'_>>
    where
        (T,): for<'r> FromRow<'r, AnyRow>,
    {
        sqlx::query_scalar_with(&self.text, self.arguments())
    }

    fn arguments(&self) -> AnyArguments<'_> {
        let mut arguments = AnyArguments::default();
        for value in &self.values {
            // Integers and texts always encode; `Query::bind` would only defer the same error.
            let added = match value {
                Value::Int(v) => arguments.add(*v),
                Value::OptInt(v) => arguments.add(*v),
                Value::Text(v) => arguments.add(v.as_str()),
                Value::OptText(v) => arguments.add(v.as_deref()),
            };
            added.expect("an integer or a text encodes");
        }
        arguments
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(like_pattern("50%_a\\B"), "%50\\%\\_a\\\\B%");
        assert_eq!(like_pattern("Plain"), "%Plain%");
        assert_eq!(like_pattern("İzmir"), "%İzmir%", "folded by the database");
    }

    #[test]
    fn a_case_blind_search_folds_both_sides_in_the_database() {
        let mut sql = Sql::new("SELECT p.id FROM policies p WHERE p.tenant_id = ");
        sql.int(7).push(" AND ");
        sql.contains_ignoring_case("p.display_name", "50%");
        assert_eq!(
            sql.as_str(),
            "SELECT p.id FROM policies p WHERE p.tenant_id = $1 AND \
             LOWER(p.display_name) LIKE LOWER($2) ESCAPE '\\'"
        );
        assert_eq!(sql.values[1], Value::Text("%50\\%%".into()));
    }

    #[test]
    fn folds_every_script_letter_by_letter() {
        assert_eq!(fold_case("Überwachung ÄÖ"), "überwachung äö");
        assert_eq!(fold_case("Политика Wi-Fi"), "политика wi-fi");
        assert_eq!(
            fold_case("ΟΔΟΣ"),
            "οδοσ",
            "no final sigma: a search for Σ finds it"
        );
        assert!(matches!(fold_case("already lower"), Cow::Borrowed(_)));
    }

    #[test]
    fn numbers_placeholders_in_the_order_values_are_bound() {
        let mut sql = Sql::new("SELECT id FROM runs WHERE tenant_id = ");
        sql.int(7);
        for (filter, on) in [("status", true), ("operation_type", false), ("lane", true)] {
            if on {
                sql.push(&format!(" AND {filter} = ")).text(filter);
            }
        }
        sql.push(" LIMIT ").int(50).push(" OFFSET ").opt_int(None);
        assert_eq!(
            sql.as_str(),
            "SELECT id FROM runs WHERE tenant_id = $1 AND status = $2 AND lane = $3 LIMIT $4 OFFSET $5"
        );
        assert_eq!(
            sql.values,
            vec![
                Value::Int(7),
                Value::Text("status".into()),
                Value::Text("lane".into()),
                Value::Int(50),
                Value::OptInt(None),
            ]
        );
    }

    #[test]
    fn lists_and_rows_are_separated_and_numbered() {
        let mut sql = Sql::new("WITH v (id, name) AS (VALUES ");
        sql.rows([(1, "a"), (2, "b")], |sql, (id, name)| {
            sql.int(id).push(", ").text(name);
        })
        .push(") SELECT id FROM v WHERE id IN (")
        .list([3, 4, 5], |sql, id| {
            sql.int(id);
        })
        .push(")");
        assert_eq!(
            sql.as_str(),
            "WITH v (id, name) AS (VALUES ($1, $2), ($3, $4)) SELECT id FROM v WHERE id IN ($5, $6, $7)"
        );
        let mut empty = Sql::new("(");
        empty.list(Vec::<i64>::new(), |sql, id| {
            sql.int(id);
        });
        assert_eq!(empty.as_str(), "(");
    }

    #[tokio::test]
    async fn reads_rows_and_scalars_with_the_bound_values() {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect("sqlite::memory:").await.unwrap();
        let mut sql = Sql::new("SELECT ");
        sql.int(7).push(" AS n, ").text("seven").push(" AS word");
        let row: (i64, String) = sql.query_as().fetch_one(&pool).await.unwrap();
        assert_eq!(row, (7, "seven".to_owned()));
        let first: i64 = sql.query_scalar().fetch_one(&pool).await.unwrap();
        assert_eq!(first, 7);
        let mut sql = Sql::new("SELECT ");
        sql.opt_int(None);
        let none: Option<i64> = sql.query_scalar().fetch_one(&pool).await.unwrap();
        assert_eq!(none, None);
    }
}
