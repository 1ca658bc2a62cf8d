//! The streaming part of WebP stamping: walks RIFF chunks after the header, scrubs the
//! `EXIF` and `XMP ` chunks in place (same length) and inserts the XMP tail where the RIFF
//! payload ends.
//!
//! Bytes pass as zero-copy slices of the input; only metadata chunks are copied (up to
//! `max_capture` bytes; a larger one is zeroed as it streams). A chunk whose size overruns
//! the RIFF payload ends the walk: the rest of the payload, and anything after the RIFF
//! end, goes through a [`Guard`]. The tail still goes at the RIFF end.

use bytes::Bytes;

use super::exif::{self, ScrubOptions};
use super::walk::{Guard, pass_rest, zeros};
use super::xmp;

#[derive(Debug)]
pub(crate) struct RiffWalker {
    /// Offset in the original stream of the next byte pushed.
    pos: u64,
    riff_end: u64,
    tail: Option<Bytes>,
    scrub: ScrubOptions,
    max_capture: usize,
    state: State,
    guard: Guard,
    changed: bool,
}

#[derive(Debug)]
enum State {
    Header {
        buf: [u8; 8],
        have: usize,
    },
    Skip(u64),
    Capture {
        kind: [u8; 4],
        buf: Vec<u8>,
        need: usize,
        pad: u64,
    },
    Zero {
        left: u64,
        pad: u64,
    },
    Guarded,
}

const HEADER: State = State::Header {
    buf: [0; 8],
    have: 0,
};

impl RiffWalker {
    /// A walker positioned at chunk boundary `pos` of a RIFF payload ending at `riff_end`.
    pub(crate) fn new(
        pos: u64,
        riff_end: u64,
        tail: Option<Bytes>,
        scrub: ScrubOptions,
        max_capture: usize,
    ) -> Self {
        RiffWalker {
            pos,
            riff_end,
            tail,
            scrub,
            max_capture,
            state: if pos < riff_end {
                HEADER
            } else {
                State::Guarded
            },
            guard: Guard::default(),
            changed: false,
        }
    }

    /// Starts mid-chunk, with `n` bytes of the current chunk still to pass.
    pub(crate) fn skipping(mut self, n: u64) -> Self {
        if n > 0 && matches!(self.state, State::Header { .. }) {
            self.state = State::Skip(n);
        }
        self
    }

    pub(crate) fn push(&mut self, mut input: Bytes, out: &mut impl Extend<Bytes>) {
        while !input.is_empty() {
            if self.pos >= self.riff_end {
                self.emit_tail(out);
                self.pos = self.pos.saturating_add(input.len() as u64);
                self.guard.pass(input, out);
                return;
            }
            let room = self.riff_end - self.pos;
            let take = usize::try_from(room).unwrap_or(usize::MAX).min(input.len());
            let seg = input.split_to(take);
            self.walk(seg, out);
            self.pos += take as u64;
        }
        if self.pos == self.riff_end {
            self.emit_tail(out);
        }
    }

    /// The input ended: a partial capture comes out zeroed.
    pub(crate) fn finish(&mut self, out: &mut impl Extend<Bytes>) {
        if let State::Capture { buf, .. } = std::mem::replace(&mut self.state, State::Guarded)
            && !buf.is_empty()
        {
            self.changed = true;
            zeros(buf.len() as u64, out);
        }
        if self.pos == self.riff_end {
            self.emit_tail(out);
        }
        self.guard.finish(out);
    }

    /// Bytes held back: the tail still to come and a partial capture.
    pub(crate) fn held(&self) -> u64 {
        let capture = match &self.state {
            State::Capture { buf, .. } => buf.len() as u64,
            _ => 0,
        };
        self.tail.as_ref().map_or(0, |t| t.len() as u64) + capture + self.guard.held()
    }

    pub(crate) fn changed(&self) -> bool {
        self.changed || self.guard.changed()
    }

    fn emit_tail(&mut self, out: &mut impl Extend<Bytes>) {
        if let Some(tail) = self.tail.take() {
            out.extend(Some(tail));
        }
    }

    fn walk(&mut self, seg: Bytes, out: &mut impl Extend<Bytes>) {
        let mut run = 0;
        let mut i = 0;
        while i < seg.len() {
            let left = seg.len() - i;
            match &mut self.state {
                State::Header { buf, have } => {
                    let n = (8 - *have).min(left);
                    buf[*have..*have + n].copy_from_slice(&seg[i..i + n]);
                    *have += n;
                    i += n;
                    if *have == 8 {
                        let kind = [buf[0], buf[1], buf[2], buf[3]];
                        let size = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
                        let pad = u64::from(size & 1);
                        let padded = u64::from(size) + pad;
                        let at = self.pos + i as u64;
                        let metadata = (&kind == b"EXIF" || &kind == b"XMP ") && self.scrub.any();
                        self.state = if at.saturating_add(padded) > self.riff_end {
                            State::Guarded
                        } else if metadata && size > 0 && (size as usize) <= self.max_capture {
                            if run < i {
                                out.extend(Some(seg.slice(run..i)));
                            }
                            run = i;
                            State::Capture {
                                kind,
                                buf: Vec::with_capacity(size as usize),
                                need: size as usize,
                                pad,
                            }
                        } else if metadata && size > 0 {
                            if run < i {
                                out.extend(Some(seg.slice(run..i)));
                            }
                            run = i;
                            State::Zero {
                                left: u64::from(size),
                                pad,
                            }
                        } else if padded == 0 {
                            HEADER
                        } else {
                            State::Skip(padded)
                        };
                    }
                }
                State::Skip(n) => {
                    let k = usize::try_from(*n).unwrap_or(usize::MAX).min(left);
                    i += k;
                    *n -= k as u64;
                    if *n == 0 {
                        self.state = HEADER;
                    }
                }
                State::Capture {
                    kind,
                    buf,
                    need,
                    pad,
                } => {
                    let k = (*need - buf.len()).min(left);
                    buf.extend_from_slice(&seg[i..i + k]);
                    i += k;
                    run = i;
                    if buf.len() == *need {
                        let pad = *pad;
                        let mut data = std::mem::take(buf);
                        self.changed |= if kind == b"EXIF" {
                            exif::scrub_block(&mut data, self.scrub)
                        } else {
                            xmp::blank_properties(&mut data, self.scrub)
                        };
                        out.extend(Some(Bytes::from(data)));
                        self.state = if pad == 0 { HEADER } else { State::Skip(pad) };
                    }
                }
                State::Zero { left: n, pad } => {
                    let k = usize::try_from(*n).unwrap_or(usize::MAX).min(left);
                    zeros(k as u64, out);
                    self.changed = true;
                    i += k;
                    run = i;
                    *n -= k as u64;
                    if *n == 0 {
                        let pad = *pad;
                        self.state = if pad == 0 { HEADER } else { State::Skip(pad) };
                    }
                }
                State::Guarded => {
                    if run < i {
                        out.extend(Some(seg.slice(run..i)));
                    }
                    self.guard.pass(seg.slice(i..), out);
                    return;
                }
            }
        }
        pass_rest(seg, run, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut c = kind.to_vec();
        c.extend_from_slice(&(data.len() as u32).to_le_bytes());
        c.extend_from_slice(data);
        if data.len() % 2 == 1 {
            c.push(0);
        }
        c
    }

    const GPS: ScrubOptions = ScrubOptions {
        gps: true,
        serials: false,
    };

    #[test]
    fn scrubs_exif_and_xmp_and_appends_tail_in_any_chunking() {
        let tiff = exif::sample_tiff(true);
        let xmp = b"<x:xmpmeta><rdf:Description exif:GPSLatitude=\"1\"/></x:xmpmeta>";
        let mut body = chunk(b"VP8L", &[1, 2, 3]);
        body.extend(chunk(b"EXIF", &tiff));
        body.extend(chunk(b"XMP ", xmp));
        let mut expected_exif = tiff.clone();
        exif::scrub(&mut expected_exif, GPS).unwrap();
        let mut expected_xmp = xmp.to_vec();
        assert!(xmp::blank_properties(&mut expected_xmp, GPS));
        let mut expected = chunk(b"VP8L", &[1, 2, 3]);
        expected.extend(chunk(b"EXIF", &expected_exif));
        expected.extend(chunk(b"XMP ", &expected_xmp));
        expected.extend_from_slice(b"TAIL");
        expected.extend_from_slice(b"junk");
        let riff_end = 12 + body.len() as u64;
        body.extend_from_slice(b"junk");
        for size in [1, 3, 7, 64, body.len()] {
            let mut w = RiffWalker::new(12, riff_end, Some(Bytes::from_static(b"TAIL")), GPS, 4096);
            let mut out: Vec<Bytes> = Vec::new();
            for part in body.chunks(size) {
                w.push(Bytes::copy_from_slice(part), &mut out);
            }
            w.finish(&mut out);
            assert_eq!(w.held(), 0);
            assert!(w.changed());
            assert_eq!(out.concat(), expected, "chunk size {size}");
        }
    }

    #[test]
    fn large_exif_is_zeroed_and_partial_capture_blanked() {
        let tiff = exif::sample_tiff(true);
        let body = chunk(b"EXIF", &tiff);
        let riff_end = 12 + body.len() as u64;
        let mut w = RiffWalker::new(12, riff_end, None, GPS, 64);
        let mut out: Vec<Bytes> = Vec::new();
        w.push(Bytes::copy_from_slice(&body), &mut out);
        let out = out.concat();
        assert_eq!(out.len(), body.len());
        assert!(out[8..].iter().all(|b| *b == 0));

        let mut w = RiffWalker::new(12, riff_end, None, GPS, 4096);
        let mut out: Vec<Bytes> = Vec::new();
        w.push(Bytes::copy_from_slice(&body[..100]), &mut out);
        w.finish(&mut out);
        let out = out.concat();
        assert_eq!(out.len(), 100);
        assert!(out[8..].iter().all(|b| *b == 0));
    }
}
