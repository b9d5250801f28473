//! Text that came from callers (task reasons, approval reasons), shown as sent: templates
//! escape HTML, and [`clean`] (shared with the CLI) escapes what HTML escaping leaves
//! alone, the control and invisible characters.

pub use kairos_domain::text::clean;
