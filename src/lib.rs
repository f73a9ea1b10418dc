//! PocketBrain
