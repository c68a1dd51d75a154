//! Wire APIs of the directory.
