//! Where a request's body ends, found by the serve loop as hyper will find it, so that hyper
//! is handed one message at a time and never reads into the next head (which the serve loop
//! checks first; see [`super::gate`]).
//!
//! The chunked scanner follows hyper's decoder (`proto/h1/decode.rs`) state for state on every
//! input it accepts: a disagreement about where a body ends would hand hyper part of the next
//! head as body, or part of the body as a head. Where hyper would fail the body, the scanner
//! stops at the same byte; hyper then fails the request and closes the connection.

/// How the body after a head is delimited (RFC 9112 §6.3, for requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No `Content-Length` and no `Transfer-Encoding`: no body.
    Empty,
    Length(u64),
    Chunked,
}

/// The body still to come after a head, consumed as its bytes pass.
#[derive(Debug)]
pub enum Body {
    Length(u64),
    Chunked(ChunkScan),
}

/// How many bytes of `bytes` belong to the body, and whether it ends there.
#[derive(Debug, PartialEq, Eq)]
pub struct Taken {
    pub len: usize,
    pub end: End,
}

#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The body goes on after these bytes.
    More,
    /// The body's last byte is the last of these.
    Done,
    /// The framing is broken at the last of these bytes: hyper fails the body there.
    Broken,
}

impl Body {
    /// `None` for a head with no body.
    pub fn after(framing: Framing) -> Option<Body> {
        match framing {
            Framing::Empty | Framing::Length(0) => None,
            Framing::Length(n) => Some(Body::Length(n)),
            Framing::Chunked => Some(Body::Chunked(ChunkScan::default())),
        }
    }

    /// Consumes the leading bytes of `bytes` that belong to the body.
    pub fn take(&mut self, bytes: &[u8]) -> Taken {
        match self {
            Body::Length(left) => {
                let len = usize::try_from(*left).map_or(bytes.len(), |l| l.min(bytes.len()));
                *left -= len as u64;
                let end = if *left == 0 { End::Done } else { End::More };
                Taken { len, end }
            }
            Body::Chunked(scan) => scan.take(bytes),
        }
    }
}

/// hyper's limit on the bytes of chunk extensions in one body.
const EXTENSIONS_LIMIT: u64 = 16 * 1024;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
}

/// A chunked body's framing: sizes, extensions, data, trailers.
#[derive(Debug, Default)]
pub struct ChunkScan {
    state: State,
    size: u64,
    extensions: u64,
}

impl ChunkScan {
    fn take(&mut self, bytes: &[u8]) -> Taken {
        let mut i = 0;
        while i < bytes.len() {
            if self.state == State::Data {
                let n =
                    usize::try_from(self.size).map_or(bytes.len() - i, |s| s.min(bytes.len() - i));
                self.size -= n as u64;
                i += n;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let byte = bytes[i];
            i += 1;
            match self.step(byte) {
                Some(Step::Next) => {}
                Some(Step::Done) => {
                    return Taken {
                        len: i,
                        end: End::Done,
                    };
                }
                None => {
                    return Taken {
                        len: i,
                        end: End::Broken,
                    };
                }
            }
        }
        Taken {
            len: i,
            end: End::More,
        }
    }

    /// One byte outside chunk data; `None` where hyper fails the body.
    fn step(&mut self, byte: u8) -> Option<Step> {
        use State::*;
        self.state = match (self.state, byte) {
            (Start | Size, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                let digit = (byte as char).to_digit(16).map(u64::from)?;
                self.size = self.size.checked_mul(16)?.checked_add(digit)?;
                Size
            }
            (Start, _) => return None,
            (Size | SizeLws, b'\t' | b' ') => SizeLws,
            (Size | SizeLws, b';') => Extension,
            (Size | SizeLws, b'\r') => SizeLf,
            (Size | SizeLws, _) => return None,
            (Extension, b'\r') => SizeLf,
            (Extension, b'\n') => return None,
            (Extension, _) => {
                self.extensions += 1;
                if self.extensions >= EXTENSIONS_LIMIT {
                    return None;
                }
                Extension
            }
            (SizeLf, b'\n') if self.size == 0 => EndCr,
            (SizeLf, b'\n') => Data,
            (SizeLf, _) => return None,
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Start,
            (DataCr | DataLf, _) => return None,
            (EndCr, b'\r') => EndLf,
            (EndCr, _) => Trailer,
            (Trailer, b'\r') => TrailerLf,
            (Trailer, _) => Trailer,
            (TrailerLf, b'\n') => EndCr,
            (TrailerLf, _) => return None,
            (EndLf, b'\n') => return Some(Step::Done),
            (EndLf, _) => return None,
            // Data is consumed in `take`.
            (Data, _) => Data,
        };
        Some(Step::Next)
    }
}

enum Step {
    Next,
    Done,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked() -> Body {
        Body::after(Framing::Chunked).expect("a body")
    }

    #[test]
    fn a_length_ends_after_its_bytes() {
        assert!(Body::after(Framing::Length(0)).is_none());
        assert!(Body::after(Framing::Empty).is_none());
        let mut body = Body::after(Framing::Length(5)).expect("a body");
        assert_eq!(
            body.take(b"abc"),
            Taken {
                len: 3,
                end: End::More
            }
        );
        assert_eq!(
            body.take(b"deGET"),
            Taken {
                len: 2,
                end: End::Done
            }
        );
    }

    #[test]
    fn chunks_end_after_the_last_chunk_and_trailers() {
        let whole =
            b"5\r\nhello\r\n1A;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-t: 1\r\n\r\nGET /";
        let end = whole.len() - b"GET /".len();
        // At once, and a byte at a time.
        let mut body = chunked();
        assert_eq!(
            body.take(whole),
            Taken {
                len: end,
                end: End::Done
            }
        );
        let mut body = chunked();
        for (i, b) in whole[..end].iter().enumerate() {
            let want = if i + 1 == end { End::Done } else { End::More };
            assert_eq!(body.take(&[*b]), Taken { len: 1, end: want }, "byte {i}");
        }
        let mut body = chunked();
        assert_eq!(
            body.take(b"0\r\n\r\nrest"),
            Taken {
                len: 5,
                end: End::Done
            }
        );
        let mut body = chunked();
        assert_eq!(
            body.take(b"3 \t\r\nabc\r\n0\r\n\r\n"),
            Taken {
                len: 15,
                end: End::Done
            }
        );
    }

    #[test]
    fn broken_framing_stops_where_hyper_fails() {
        for (input, at) in [
            (&b"x\r\n"[..], 1),
            (b"5\nhello", 2),
            (b"5\r\nhelloX", 9),
            (b"3;a\nb", 4),
            (b"3 4\r\n", 3),
            (b"0\r\nx-t: 1\rX", 11),
            (b"0\r\n\rX", 5),
            (b"11111111111111111\r\n", 17),
        ] {
            let mut body = chunked();
            assert_eq!(
                body.take(input),
                Taken {
                    len: at,
                    end: End::Broken
                },
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
