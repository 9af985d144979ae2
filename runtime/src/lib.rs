//! CKKS runtime (to be filled)
