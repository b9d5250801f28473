//! A `WHERE … LIMIT …` tail built from optional filters, numbered `$1, $2, …` so the same
//! text runs on SQLite and PostgreSQL. Column names are always literals from this crate;
//! only values are bound.

use super::codec::AnyQuery;

pub(super) enum Arg {
    Int(i64),
    Text(String),
}

#[derive(Default)]
pub(super) struct Filter {
    sql: String,
    args: Vec<Arg>,
}

impl Filter {
    fn push(&mut self, condition: &str, arg: Arg) {
        self.args.push(arg);
        let joiner = if self.sql.is_empty() {
            " WHERE "
        } else {
            " AND "
        };
        self.sql
            .push_str(&format!("{joiner}{condition} ${}", self.args.len()));
    }

    /// `condition` is a column and operator such as `"identity ="` or `"at >="`.
    pub(super) fn text(&mut self, condition: &str, value: Option<impl ToString>) -> &mut Self {
        if let Some(v) = value {
            self.push(condition, Arg::Text(v.to_string()));
        }
        self
    }

    /// A whole condition in which the value is used several times: each `{}` in
    /// `condition` becomes a placeholder bound to `value`.
    pub(super) fn text_each(&mut self, condition: &str, value: Option<impl ToString>) -> &mut Self {
        let Some(v) = value else {
            return self;
        };
        let v = v.to_string();
        let mut parts = condition.split("{}");
        let mut sql = parts.next().unwrap_or_default().to_owned();
        for part in parts {
            self.args.push(Arg::Text(v.clone()));
            sql.push_str(&format!("${}{part}", self.args.len()));
        }
        let joiner = if self.sql.is_empty() {
            " WHERE "
        } else {
            " AND "
        };
        self.sql.push_str(&format!("{joiner}{sql}"));
        self
    }

    pub(super) fn int(&mut self, condition: &str, value: Option<i64>) -> &mut Self {
        if let Some(v) = value {
            self.push(condition, Arg::Int(v));
        }
        self
    }

    /// Keyset pagination over a key of several columns: `(a, b, c) > ($i, $j, $k)`
    /// (a row-value comparison, which SQLite and PostgreSQL both answer from an index in
    /// that column order).
    pub(super) fn row_after(&mut self, columns: &str, values: Vec<Arg>) -> &mut Self {
        let first = self.args.len() + 1;
        let n = values.len();
        self.args.extend(values);
        let placeholders = (first..first + n)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let joiner = if self.sql.is_empty() {
            " WHERE "
        } else {
            " AND "
        };
        self.sql
            .push_str(&format!("{joiner}{columns} > ({placeholders})"));
        self
    }

    /// The `WHERE` clause (or nothing), then `order_by`, then the limit if any.
    pub(super) fn tail(&mut self, order_by: &str, limit: Option<u32>) -> String {
        let mut sql = format!("{} ORDER BY {order_by}", self.sql);
        if let Some(limit) = limit {
            self.args.push(Arg::Int(i64::from(limit)));
            sql.push_str(&format!(" LIMIT ${}", self.args.len()));
        }
        sql
    }

    pub(super) fn bind(self, mut q: AnyQuery<'_>) -> AnyQuery<'_> {
        for arg in self.args {
            q = match arg {
                Arg::Int(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
            };
        }
        q
    }
}
