//! The inbound half of an association.
