//! polyhe facade
