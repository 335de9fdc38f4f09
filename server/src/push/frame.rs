//! WebSocket frames (RFC 6455) as the server reads and writes them.
//!
//! Inbound, [`Reader`] checks each frame's declared length against the message limit as
//! soon as the frame's header has arrived, so a message over the limit is refused
//! (close 1009) having buffered at most the limit: a client cannot make the server hold
//! more than that, whatever length it announces. Outbound frames are encoded into one
//! buffer each (header and payload): server frames are not masked, so one encoded change
//! is shared by every connection it goes to.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub(crate) const OP_CONTINUATION: u8 = 0x0;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;

/// Close codes the server sends (the protocol's, beside its error table).
pub use graycast_protocol::error::close;

/// An encoded text frame carrying `payload`.
pub fn text(payload: &[u8]) -> Bytes {
    encode(OP_TEXT, payload)
}

/// A text frame whose payload `write` serializes in place, behind room left for the
/// header: a large message (a snapshot) is never copied once serialized.
pub fn text_from(write: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    const ROOM: usize = 10;
    let mut buf = vec![0u8; ROOM];
    write(&mut buf);
    let header = header(OP_TEXT, buf.len() - ROOM);
    let start = ROOM - header.len();
    buf[start..ROOM].copy_from_slice(&header);
    Bytes::from(buf).slice(start..)
}

/// A large payload that `write` serializes, as pieces of about `CHUNK` bytes: a snapshot
/// of hundreds of megabytes is built without ever being copied or reallocated whole.
pub fn json_pieces(write: impl FnOnce(&mut Pieces)) -> Vec<Bytes> {
    let mut pieces = Pieces { done: Vec::new(), current: BytesMut::new(), len: 0 };
    write(&mut pieces);
    let Pieces { mut done, current, .. } = pieces;
    if !current.is_empty() {
        done.push(current.freeze());
    }
    done
}

/// The header of a text frame of `len` payload bytes, for a payload sent in pieces.
pub fn text_header(len: usize) -> Bytes {
    Bytes::from(header(OP_TEXT, len))
}

/// The length of the header at the start of an encoded (unmasked) frame.
pub fn header_len(frame: &[u8]) -> usize {
    match frame.get(1).map(|b| b & 0x7F) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    }
}

/// The payload of a frame being written by [`json_pieces`].
pub struct Pieces {
    done: Vec<Bytes>,
    current: BytesMut,
    len: usize,
}

impl Pieces {
    const CHUNK: usize = 1 << 20;
}

impl std::io::Write for Pieces {
    fn write(&mut self, mut data: &[u8]) -> std::io::Result<usize> {
        let written = data.len();
        self.len += written;
        // Fill each piece to exactly `CHUNK` bytes: no piece keeps spare capacity.
        while !data.is_empty() {
            if self.current.capacity() == 0 {
                self.current = BytesMut::with_capacity(Self::CHUNK);
            }
            let room = Self::CHUNK - self.current.len();
            let (now, later) = data.split_at(room.min(data.len()));
            self.current.extend_from_slice(now);
            data = later;
            if self.current.len() == Self::CHUNK {
                let full = std::mem::take(&mut self.current);
                self.done.push(full.freeze());
            }
        }
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The header of an unmasked frame: 2, 4 or 10 bytes.
fn header(opcode: u8, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    out.put_u8(0x80 | opcode);
    if len < 126 {
        out.put_u8(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.put_u8(126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
    out
}

/// An encoded ping frame.
pub fn ping() -> Bytes {
    encode(OP_PING, b"")
}

/// An encoded pong frame answering a ping's payload.
pub fn pong(payload: &[u8]) -> Bytes {
    encode(OP_PONG, payload)
}

/// An encoded close frame with a code and a reason, cut to fit a control frame.
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(OP_CLOSE, &payload)
}

fn encode(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    out.extend_from_slice(&header(opcode, payload.len()));
    out.extend_from_slice(payload);
    out.freeze()
}

/// A whole message or control frame from the client.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    Text(String),
    Binary,
    Ping(Bytes),
    Pong,
    /// The client closes, with its close code if it gave one.
    Close(Option<u16>),
}

/// Why the client's frames cannot be read further; the connection closes with
/// [`FrameError::close_code`].
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum FrameError {
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooBig { size: u64, limit: usize },
    #[error("{0}")]
    Protocol(&'static str),
    #[error("text message is not UTF-8")]
    InvalidUtf8,
}

impl FrameError {
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::TooBig { .. } => close::TOO_BIG,
            FrameError::Protocol(_) => close::PROTOCOL,
            FrameError::InvalidUtf8 => close::INVALID_DATA,
        }
    }
}

/// The close code of a close frame's payload (RFC 6455 §5.5.1, §7.4): none when it is
/// empty; a 1-byte payload or a code no peer may send breaks the protocol (1002), a reason
/// that is not UTF-8 is invalid data (1007).
fn close_payload(payload: &[u8]) -> Result<Option<u16>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::Protocol("a close frame's payload is empty or at least 2 bytes")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !close::is_valid(code) {
                return Err(FrameError::Protocol("a close frame carries an invalid close code"));
            }
            std::str::from_utf8(reason).map_err(|_| FrameError::InvalidUtf8)?;
            Ok(Some(code))
        }
    }
}

/// Reads client frames from a buffer of received bytes, joining fragmented messages.
pub struct Reader {
    limit: usize,
    /// The opcode and payload of a fragmented message still arriving.
    partial: Option<(u8, BytesMut)>,
}

impl Reader {
    /// A reader refusing messages (joined fragments included) over `limit` bytes.
    pub fn new(limit: usize) -> Reader {
        Reader { limit, partial: None }
    }

    /// The next whole message or control frame in `buf`, consuming its bytes; `None`
    /// until enough bytes arrived. The buffer never needs to grow beyond the limit plus
    /// one frame header.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Inbound>, FrameError> {
        loop {
            let Some(header) = self.header(buf)? else { return Ok(None) };
            if buf.len() < header.len + header.payload {
                // Room for the rest of this frame, which is known to be within the limit.
                buf.reserve(header.len + header.payload - buf.len());
                return Ok(None);
            }
            let mask = [
                buf[header.len - 4],
                buf[header.len - 3],
                buf[header.len - 2],
                buf[header.len - 1],
            ];
            buf.advance(header.len);
            let mut payload = buf.split_to(header.payload);
            for (i, byte) in payload.iter_mut().enumerate() {
                *byte ^= mask[i % 4];
            }
            match header.opcode {
                OP_PING => return Ok(Some(Inbound::Ping(payload.freeze()))),
                OP_PONG => return Ok(Some(Inbound::Pong)),
                OP_CLOSE => return close_payload(&payload).map(|code| Some(Inbound::Close(code))),
                OP_TEXT | OP_BINARY if !header.fin => {
                    self.partial = Some((header.opcode, payload));
                }
                OP_CONTINUATION => {
                    let Some((opcode, mut joined)) = self.partial.take() else {
                        return Err(FrameError::Protocol("continuation frame without a message"));
                    };
                    joined.extend_from_slice(&payload);
                    if header.fin {
                        return finish(opcode, joined).map(Some);
                    }
                    self.partial = Some((opcode, joined));
                }
                opcode => return finish(opcode, payload).map(Some),
            }
        }
    }

    /// The header of the next frame, once it has arrived, checked against the limits.
    fn header(&self, buf: &BytesMut) -> Result<Option<Header>, FrameError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        if b0 & 0x70 != 0 {
            return Err(FrameError::Protocol("reserved bits are set"));
        }
        if b1 & 0x80 == 0 {
            return Err(FrameError::Protocol("client frames must be masked"));
        }
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0F;
        let (payload, len) = match b1 & 0x7F {
            126 if buf.len() < 4 => return Ok(None),
            126 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
            127 if buf.len() < 10 => return Ok(None),
            127 => {
                let mut eight = [0u8; 8];
                eight.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(eight), 10)
            }
            n => (u64::from(n), 2),
        };
        match opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin || payload > 125 {
                    return Err(FrameError::Protocol(
                        "control frames are whole and at most 125 bytes",
                    ));
                }
            }
            OP_TEXT | OP_BINARY | OP_CONTINUATION => {
                let started = self.partial.as_ref().map_or(0, |(_, joined)| joined.len() as u64);
                if opcode == OP_CONTINUATION && self.partial.is_none() {
                    return Err(FrameError::Protocol("continuation frame without a message"));
                }
                if opcode != OP_CONTINUATION && self.partial.is_some() {
                    return Err(FrameError::Protocol("new message before the last one ended"));
                }
                let size = started.saturating_add(payload);
                if size > self.limit as u64 {
                    return Err(FrameError::TooBig { size, limit: self.limit });
                }
            }
            _ => return Err(FrameError::Protocol("unknown opcode")),
        }
        // Within the limit, so it fits a usize.
        Ok(Some(Header { fin, opcode, len: len + 4, payload: payload as usize }))
    }
}

struct Header {
    fin: bool,
    opcode: u8,
    /// Header length, mask included.
    len: usize,
    payload: usize,
}

fn finish(opcode: u8, payload: BytesMut) -> Result<Inbound, FrameError> {
    if opcode == OP_BINARY {
        return Ok(Inbound::Binary);
    }
    String::from_utf8(payload.to_vec()).map(Inbound::Text).map_err(|_| FrameError::InvalidUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: masked, as clients must send them.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 65535 {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    fn read_all(reader: &mut Reader, bytes: &[u8]) -> Result<Vec<Inbound>, FrameError> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        // Byte by byte: every split point of every frame is exercised.
        for byte in bytes {
            buf.put_u8(*byte);
            while let Some(message) = reader.next(&mut buf)? {
                out.push(message);
            }
        }
        Ok(out)
    }

    #[test]
    fn reads_messages_split_anywhere_and_joins_fragments() {
        let mut bytes = client_frame(true, OP_TEXT, b"hello");
        bytes.extend(client_frame(false, OP_TEXT, b"fra"));
        bytes.extend(client_frame(true, OP_PING, b"p"));
        bytes.extend(client_frame(false, OP_CONTINUATION, b"gmen"));
        bytes.extend(client_frame(true, OP_CONTINUATION, b"ted"));
        bytes.extend(client_frame(true, OP_TEXT, &vec![b'x'; 70_000]));
        bytes.extend(client_frame(true, OP_CLOSE, &1000u16.to_be_bytes()));
        let got = read_all(&mut Reader::new(100_000), &bytes).expect("valid frames");
        assert_eq!(
            got,
            [
                Inbound::Text("hello".into()),
                Inbound::Ping(Bytes::from_static(b"p")),
                Inbound::Text("fragmented".into()),
                Inbound::Text("x".repeat(70_000)),
                Inbound::Close(Some(1000)),
            ]
        );
    }

    #[test]
    fn an_oversized_message_is_refused_from_its_header() {
        // Only the header of a 256 MiB frame has arrived: refused already.
        let header = &client_frame(true, OP_TEXT, &[])[..2];
        let mut buf = BytesMut::new();
        buf.put_u8(header[0]);
        buf.put_u8(0x80 | 127);
        buf.put_u64(256 * 1024 * 1024);
        let err = Reader::new(64 * 1024).next(&mut buf).unwrap_err();
        assert_eq!(err, FrameError::TooBig { size: 256 * 1024 * 1024, limit: 64 * 1024 });
        assert_eq!(err.close_code(), 1009);
        // Fragments add up.
        let mut bytes = client_frame(false, OP_TEXT, &[b'a'; 40]);
        bytes.extend(client_frame(true, OP_CONTINUATION, &[b'a'; 40]));
        let err = read_all(&mut Reader::new(64), &bytes).unwrap_err();
        assert_eq!(err, FrameError::TooBig { size: 80, limit: 64 });
    }

    #[test]
    fn protocol_violations_are_refused() {
        for (bytes, expected) in [
            (vec![0x81, 0x00], FrameError::Protocol("client frames must be masked")),
            (
                client_frame(true, OP_CONTINUATION, b"x"),
                FrameError::Protocol("continuation frame without a message"),
            ),
            (
                client_frame(false, OP_PING, b"x"),
                FrameError::Protocol("control frames are whole and at most 125 bytes"),
            ),
            (client_frame(true, 0x3, b"x"), FrameError::Protocol("unknown opcode")),
            (client_frame(true, OP_TEXT, &[0xff, 0xfe]), FrameError::InvalidUtf8),
        ] {
            assert_eq!(read_all(&mut Reader::new(1024), &bytes).unwrap_err(), expected);
        }
        let mut bytes = client_frame(false, OP_TEXT, b"a");
        bytes.extend(client_frame(true, OP_TEXT, b"b"));
        assert_eq!(
            read_all(&mut Reader::new(1024), &bytes).unwrap_err(),
            FrameError::Protocol("new message before the last one ended")
        );
    }

    #[test]
    fn encodes_every_length_form() {
        for len in [0, 125, 126, 65535, 65536] {
            let frame = text(&vec![b'a'; len]);
            let header = match len {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            };
            assert_eq!(frame.len(), header + len);
            assert_eq!(frame[0], 0x81);
        }
        for len in [0, 125, 126, 65535, 65536] {
            let direct = text(&vec![b'b'; len]);
            let in_place = text_from(|buf| buf.extend(std::iter::repeat_n(b'b', len)));
            assert_eq!(direct, in_place);
        }
        for len in [0, 125, 70_000, 3_000_000] {
            let json = json_pieces(|out| {
                use std::io::Write;
                for _ in 0..len / 1000 {
                    let _ = out.write_all(&[b'c'; 1000]);
                }
            });
            let size = json.iter().map(Bytes::len).sum();
            let pieces: Vec<Bytes> = std::iter::once(text_header(size)).chain(json).collect();
            let joined: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
            assert_eq!(header_len(&joined), header_len(&text(&vec![b'c'; size])));
            assert_eq!(joined, text(&vec![b'c'; len / 1000 * 1000]));
            assert!(pieces.iter().all(|p| p.len() <= 1 << 20), "pieces of at most a megabyte");
        }
        let close = close_frame(1001, &"é".repeat(100));
        assert!(close.len() <= 127, "a control frame stays within 125 bytes of payload");
        assert_eq!(&close[2..4], &1001u16.to_be_bytes());
    }
}
