//! The one thing read from a certificate ourselves: its validity period, for a certificate
//! trusted by being pinned (webpki checks dates only while building a chain, and refuses a
//! CA certificate as the server's own). A small DER walk over the fields before `validity`;
//! anything unexpected is None, which the caller refuses.

/// `(not_before, not_after)` in seconds since 1970, of a DER certificate.
pub fn validity(der: &[u8]) -> Option<(u64, u64)> {
    let (certificate, _) = element(der, 0x30)?;
    let (mut tbs, _) = element(certificate, 0x30)?;
    // version [0] EXPLICIT (optional), serialNumber, signature, issuer, then validity.
    if tbs.first() == Some(&0xA0) {
        tbs = element(tbs, 0xA0)?.1;
    }
    for tag in [0x02, 0x30, 0x30] {
        tbs = element(tbs, tag)?.1;
    }
    let (validity, _) = element(tbs, 0x30)?;
    let (not_before, rest) = time(validity)?;
    let (not_after, _) = time(rest)?;
    Some((not_before, not_after))
}

/// One DER element of type `tag` at the start of `input`: its content, and what follows.
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        short @ 0..=0x7F => (usize::from(short), rest),
        long @ 0x81..=0x84 => {
            let count = usize::from(long & 0x7F);
            let bytes = rest.get(..count)?;
            let len = bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
            (len, &rest[count..])
        }
        _ => return None,
    };
    Some((rest.get(..len)?, &rest[len..]))
}

/// A UTCTime (`YYMMDDHHMMSSZ`, 1950 to 2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time(input: &[u8]) -> Option<(u64, &[u8])> {
    let (text, rest, century) = match input.first()? {
        0x17 => {
            let (text, rest) = element(input, 0x17)?;
            (text, rest, true)
        }
        _ => {
            let (text, rest) = element(input, 0x18)?;
            (text, rest, false)
        }
    };
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<u64>().ok();
    let (year, at) = match century {
        true => {
            let yy = number(0..2)?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, 2)
        }
        false => (number(0..4)?, 4),
    };
    if text.len() != at + 10 {
        return None;
    }
    let field = |i: usize| number(at + 2 * i..at + 2 * i + 2);
    let (month, day, h, m, s) = (field(0)?, field(1)?, field(2)?, field(3)?, field(4)?);
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some((crate::units::unix_seconds(year, month, day, h, m, s)?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_and_generalized_times() {
        assert_eq!(
            time(b"\x17\x0d261201090000Z"),
            Some((1_796_115_600, &b""[..]))
        );
        assert_eq!(
            time(b"\x18\x0f20261201090000Z").map(|t| t.0),
            Some(1_796_115_600)
        );
        assert_eq!(
            time(b"\x17\x0d491231235959Z").map(|t| t.0),
            Some(2_524_607_999)
        );
        for bad in [
            &b"\x17\x0c26120109000Z"[..],
            b"\x17\x0d2612010900+0Z",
            b"\x16\x01Z",
            b"\x17\x0d261301090000Z",
            b"",
        ] {
            assert_eq!(time(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn truncated_or_odd_der_is_none() {
        assert_eq!(validity(b""), None);
        assert_eq!(validity(b"\x30\x84\xff\xff\xff\xff"), None);
        assert_eq!(validity(b"\x30\x03\x30\x01"), None);
        assert_eq!(validity(b"\x30\x85\x01\x01\x01\x01\x01"), None);
    }
}
