//! Converts the datapath's boot-time timestamps (`bpf_ktime_get_boot_ns`) to wall-clock time.

/// The wall clock minus the boot clock, read once; refreshed by the caller.
#[derive(Clone, Copy, Debug)]
pub struct BootClock {
    offset_ns: i64,
}

fn now_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

impl BootClock {
    pub fn new() -> Self {
        // Read boot, wall, boot and take the midpoint, so the offset's error is at most half the
        // time between the two boot readings.
        let b1 = now_ns(libc::CLOCK_BOOTTIME);
        let w = now_ns(libc::CLOCK_REALTIME);
        let b2 = now_ns(libc::CLOCK_BOOTTIME);
        BootClock {
            offset_ns: w - (b1 + (b2 - b1) / 2),
        }
    }

    /// A boot-clock time as Unix nanoseconds. An impossible stamp (beyond `i64`, as only a
    /// corrupt event could carry) saturates instead of overflowing.
    pub fn to_unix_nanos(&self, boot_ns: u64) -> i64 {
        i64::try_from(boot_ns)
            .unwrap_or(i64::MAX)
            .saturating_add(self.offset_ns)
    }

    /// The boot clock now, as the datapath would stamp it.
    pub fn boot_now_ns() -> u64 {
        now_ns(libc::CLOCK_BOOTTIME) as u64
    }
}

impl Default for BootClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_maps_to_now() {
        let c = BootClock::new();
        let wall = now_ns(libc::CLOCK_REALTIME);
        let mapped = c.to_unix_nanos(BootClock::boot_now_ns());
        assert!((mapped - wall).abs() < 50_000_000, "{mapped} vs {wall}");
    }

    /// Found by the datapath_event fuzz target (fuzz/regressions/datapath_event): a stamp
    /// near `u64::MAX` overflowed the addition.
    #[test]
    fn impossible_stamps_saturate() {
        let c = BootClock::new();
        assert_eq!(c.to_unix_nanos(u64::MAX), i64::MAX);
        assert_eq!(c.to_unix_nanos(i64::MAX as u64), i64::MAX);
        assert!(c.to_unix_nanos(0) > 0);
    }
}
