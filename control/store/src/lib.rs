//! skiff-store
