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
//! let rows = sql.query().fetch_all(db.pool()).await?;
//! ```

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

/// A `LIKE` pattern that finds `search` (lower-cased) anywhere, its wildcards escaped so a
/// search for `50%` or `a_b` finds exactly that text; used with `ESCAPE '\'`.
pub fn like_pattern(search: &str) -> String {
    let mut out = String::with_capacity(search.len() + 2);
    out.push('%');
    for c in search.to_lowercase().chars() {
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
        let mut query = sqlx::query(&self.text);
        for value in &self.values {
            query = match value {
                Value::Int(v) => query.bind(*v),
                Value::OptInt(v) => query.bind(*v),
                Value::Text(v) => query.bind(v.as_str()),
            };
        }
        query
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(like_pattern("50%_a\\B"), "%50\\%\\_a\\\\b%");
        assert_eq!(like_pattern("Plain"), "%plain%");
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
}
