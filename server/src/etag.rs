//! The UI files' entity tags: FNV-1a (64 bits) over the bytes, quoted. One definition for
//! `build.rs`, which tags the embedded files, and `ui`, which tags files served from
//! `FLOWSCOPE_UI_DIR`.

pub fn etag(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("\"{hash:016x}\"")
}
