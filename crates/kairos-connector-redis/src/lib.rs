//! redis connector.
