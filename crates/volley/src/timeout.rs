//! The `grpc-timeout` header: `TimeoutValue TimeoutUnit`, at most 8 ASCII digits followed by one
//! of `H M S m u n` (`doc/PROTOCOL-HTTP2.md`).

use std::time::Duration;

const MAX_DIGITS: u64 = 99_999_999;

/// Timeouts and configured durations longer than this (a century) are treated as this, so
/// that `now + duration` (and a jitter on top) cannot overflow; `grpc-timeout` itself can say
/// up to 99,999,999 hours, and a builder may be given `Duration::MAX` for "never".
pub(crate) const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The deadline `timeout` from now.
pub(crate) fn deadline_after(timeout: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + capped(timeout)
}

/// `d`, at most [`FAR_FUTURE`]: what every builder stores, so that no later arithmetic on it
/// can overflow.
pub(crate) fn capped(d: Duration) -> Duration {
    d.min(FAR_FUTURE)
}

/// `d * factor`, saturating at [`FAR_FUTURE`]; a factor that is not a finite non-negative
/// number leaves `d` as it is. Unlike `Duration::mul_f64`, never panics.
pub(crate) fn scaled(d: Duration, factor: f64) -> Duration {
    if !factor.is_finite() || factor < 0.0 {
        return capped(d);
    }
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).map_or(FAR_FUTURE, capped)
}

/// Parses a `grpc-timeout` value. `None` when it is malformed.
pub(crate) fn parse(raw: &[u8]) -> Option<Duration> {
    let (&unit, digits) = raw.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats a timeout in the finest unit whose value fits in 8 digits, rounding up so that the
/// peer never sees a shorter deadline than ours.
pub(crate) fn format(timeout: Duration) -> String {
    let nanos = timeout.as_nanos();
    // (unit, nanoseconds per unit)
    const UNITS: [(char, u128); 6] = [
        ('n', 1),
        ('u', 1_000),
        ('m', 1_000_000),
        ('S', 1_000_000_000),
        ('M', 60_000_000_000),
        ('H', 3_600_000_000_000),
    ];
    for (unit, per) in UNITS {
        let value = nanos.div_ceil(per);
        if value <= u128::from(MAX_DIGITS) {
            return format!("{value}{unit}");
        }
    }
    format!("{MAX_DIGITS}H")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_durations_never_overflow() {
        assert_eq!(capped(Duration::MAX), FAR_FUTURE);
        assert_eq!(scaled(Duration::MAX, 1.1), FAR_FUTURE);
        assert_eq!(scaled(Duration::from_secs(2), 1e300), FAR_FUTURE);
        assert_eq!(
            scaled(Duration::from_secs(2), f64::NAN),
            Duration::from_secs(2)
        );
        assert_eq!(scaled(Duration::from_secs(2), -1.0), Duration::from_secs(2));
        assert_eq!(scaled(Duration::from_secs(2), 1.5), Duration::from_secs(3));
        let _ = deadline_after(Duration::MAX) + FAR_FUTURE;
    }

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse(b"2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse(b"3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse(b"4S"), Some(Duration::from_secs(4)));
        assert_eq!(parse(b"5m"), Some(Duration::from_millis(5)));
        assert_eq!(parse(b"6u"), Some(Duration::from_micros(6)));
        assert_eq!(parse(b"7n"), Some(Duration::from_nanos(7)));
        assert_eq!(parse(b"99999999S"), Some(Duration::from_secs(99_999_999)));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &b""[..],
            b"S",
            b"123",
            b"123x",
            b"123456789S",
            b"-1S",
            b"1.5S",
            b" 1S",
        ] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn formats_in_finest_fitting_unit() {
        assert_eq!(format(Duration::from_nanos(50)), "50n");
        assert_eq!(format(Duration::from_millis(50)), "50000000n");
        assert_eq!(format(Duration::from_millis(500)), "500000u");
        assert_eq!(format(Duration::from_secs(30)), "30000000u");
        assert_eq!(format(Duration::from_secs(3000)), "3000000m");
        assert_eq!(format(Duration::from_secs(86_400 * 365)), "31536000S");
        assert_eq!(format(Duration::from_secs(86_400 * 3650)), "5256000M");
        assert_eq!(format(Duration::from_secs(u64::MAX)), "99999999H");
        for d in [
            Duration::from_nanos(1),
            Duration::from_micros(1234),
            Duration::from_secs(1),
            Duration::from_secs(100_000_000),
        ] {
            let s = format(d);
            let back = parse(s.as_bytes()).expect("own output parses");
            assert!(back >= d, "{s} < {d:?}");
        }
    }
}
