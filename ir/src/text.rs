//! The text form. (to be filled)
