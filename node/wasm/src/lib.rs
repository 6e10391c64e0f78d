//! skiff-wasm
