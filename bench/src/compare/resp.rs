//! Just enough of RESP, Redis's wire protocol, for `SUBSCRIBE` and `PUBLISH`.

use bytes::BytesMut;

/// A RESP command of bulk strings.
pub(super) fn resp(parts: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        out.extend_from_slice(format!("${}\r\n{part}\r\n", part.len()).as_bytes());
    }
    out
}

/// One RESP reply from the front of `buf`, flattened to its strings and integers;
/// `None` until it is whole.
pub(super) fn parse_reply(buf: &mut BytesMut) -> Option<Vec<String>> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((&buf[at..end], end + 2))
    }
    fn value(buf: &[u8], at: usize, out: &mut Vec<String>) -> Option<usize> {
        let kind = *buf.get(at)?;
        let (text, next) = line(buf, at + 1)?;
        let text = std::str::from_utf8(text).ok()?;
        match kind {
            b'*' => {
                let mut at = next;
                for _ in 0..text.parse::<i64>().ok()?.max(0) {
                    at = value(buf, at, out)?;
                }
                Some(at)
            }
            b'$' => {
                let len = text.parse::<i64>().ok()?;
                if len < 0 {
                    return Some(next);
                }
                let end = next + len as usize;
                let data = buf.get(next..end)?;
                out.push(String::from_utf8_lossy(data).into_owned());
                buf.get(end..end + 2)?;
                Some(end + 2)
            }
            _ => {
                out.push(text.to_owned());
                Some(next)
            }
        }
    }
    let mut out = Vec::new();
    let used = value(buf, 0, &mut out)?;
    let _ = buf.split_to(used);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_parsed_whole_or_not_at_all() {
        let mut buf = BytesMut::from(
            &b"*3\r\n$7\r\nmessage\r\n$7\r\ncompare\r\n$2\r\n42\r\n:1\r\n*3\r\n$7\r\nmes"[..],
        );
        assert_eq!(
            parse_reply(&mut buf),
            Some(vec!["message".into(), "compare".into(), "42".into()])
        );
        assert_eq!(parse_reply(&mut buf), Some(vec!["1".into()]));
        assert_eq!(parse_reply(&mut buf), None);
        assert_eq!(&buf[..], b"*3\r\n$7\r\nmes");
        assert_eq!(resp(&["PING"]), b"*1\r\n$4\r\nPING\r\n".to_vec());
    }
}
