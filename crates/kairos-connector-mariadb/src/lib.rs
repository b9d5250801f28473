//! mariadb connector.
