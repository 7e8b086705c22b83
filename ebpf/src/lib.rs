//! Empty on purpose: the kernel programs are the `flowscope` binary target (src/main.rs).
#![no_std]
