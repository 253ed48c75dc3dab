//! The simulated network lives in the library (`lansync::sim`) so the demo can use it too; the
//! tests reach it through this module.

pub use lansync::sim::*;
