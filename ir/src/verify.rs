//! The verifier. (to be filled)
