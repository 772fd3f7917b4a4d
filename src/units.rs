//! Durations and sizes as people write them on a command line: `30s`, `5m`, `500ms`; `5MiB`,
//! `1M`, `1048576`.

use std::time::Duration;

use crate::error::{Error, Result};

/// `500ms`, `30s`, `5m`, `1h`, or a plain number of seconds.
pub fn parse_duration(flag: &str, text: &str) -> Result<Duration> {
    let bad = || {
        Error::usage(format!(
            "{flag} {text}: give a duration such as 500ms, 30s, 5m or 1h"
        ))
    };
    let (number, unit) = split_number(text).ok_or_else(bad)?;
    let millis: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    let total = (number * millis as f64).round();
    if !(1.0..=1e12).contains(&total) {
        return Err(bad());
    }
    Ok(Duration::from_millis(total as u64))
}

/// `512KiB`, `5MiB`, `1GiB`, `5M` (also binary), or a plain number of bytes.
pub fn parse_size(flag: &str, text: &str) -> Result<u64> {
    let bad = || {
        Error::usage(format!(
            "{flag} {text}: give a size such as 512KiB, 5MiB or 1048576"
        ))
    };
    let (number, unit) = split_number(text).ok_or_else(bad)?;
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    let total = (number * scale as f64).round();
    if !(1.0..=1e15).contains(&total) {
        return Err(bad());
    }
    Ok(total as u64)
}

fn split_number(text: &str) -> Option<(f64, &str)> {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let number = text[..end].parse::<f64>().ok()?;
    Some((number, text[end..].trim()))
}

/// Seconds since 1970 of a UTC civil date and time (years 1970 to 9999; fields already checked
/// by the caller), by Howard Hinnant's days-from-civil algorithm. For HTTP dates and the
/// validity of certificates.
pub fn unix_seconds(year: u64, month: u64, day: u64, h: u64, m: u64, s: u64) -> Option<u64> {
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// Sizes in binary units with one decimal: `512 B`, `4.2 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A duration for people: `750 ms`, `2.5 s`.
pub fn human_duration(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{} ms", duration.as_millis())
    } else {
        format!("{:.1} s", duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("--timeout", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_duration("--timeout", "30s").unwrap(),
            Duration::from_secs(30)
        );
        assert_eq!(
            parse_duration("--timeout", "30").unwrap(),
            Duration::from_secs(30)
        );
        assert_eq!(
            parse_duration("--timeout", "1.5m").unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            parse_duration("--timeout", "2h").unwrap(),
            Duration::from_secs(7200)
        );
        for bad in ["", "s", "10x", "-1s", "0", "1e3"] {
            let err = parse_duration("--timeout", bad).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("--timeout {bad}: give a duration such as 500ms, 30s, 5m or 1h")
            );
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("--chunk-size", "1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("--chunk-size", "5MiB").unwrap(), 5 << 20);
        assert_eq!(parse_size("--chunk-size", "5M").unwrap(), 5 << 20);
        assert_eq!(parse_size("--chunk-size", "512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("--chunk-size", "1GiB").unwrap(), 1 << 30);
        assert!(parse_size("--chunk-size", "0").is_err());
        assert!(parse_size("--chunk-size", "5 parsecs").is_err());
    }

    #[test]
    fn human_units() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(human_duration(Duration::from_millis(750)), "750 ms");
        assert_eq!(human_duration(Duration::from_millis(2500)), "2.5 s");
    }
}
