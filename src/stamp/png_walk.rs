//! The streaming part of PNG scrubbing: chunks after the first `IDAT`.
//!
//! `eXIf` and text chunks (`iTXt`, `tEXt`, `zTXt`) are captured, data and CRC, up to
//! `max_capture` bytes and edited like the header's (see [`super::png::edit_chunk`]); a
//! larger one is neutralised as it streams (renamed to a private ancillary chunk, data
//! zeroed, CRC recomputed), which every decoder skips. Other chunks pass as zero-copy
//! slices. After `IEND`, or from a chunk header that cannot be right, bytes go through a
//! [`Guard`].

use bytes::Bytes;

use super::exif::ScrubOptions;
use super::png::{self, ChunkEdit, NEUTRAL, is_metadata};
use super::walk::{Guard, pass_rest, zeros};

#[derive(Debug)]
pub(crate) struct PngWalker {
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
    /// Data and CRC to pass; `end`: the chunk was `IEND`.
    Skip {
        left: u64,
        end: bool,
    },
    Capture {
        header: [u8; 8],
        buf: Vec<u8>,
        need: usize,
    },
    Neutralise {
        left: u64,
        crc: crc32fast::Hasher,
    },
    /// The original CRC of a neutralised chunk, replaced by `crc`.
    Crc {
        left: u8,
    },
    Guarded,
}

const HEADER: State = State::Header {
    buf: [0; 8],
    have: 0,
};

fn flush(seg: &Bytes, run: &mut usize, i: usize, out: &mut impl Extend<Bytes>) {
    if *run < i {
        out.extend(Some(seg.slice(*run..i)));
    }
    *run = i;
}

impl PngWalker {
    /// A walker positioned at a chunk boundary.
    pub(crate) fn new(scrub: ScrubOptions, max_capture: usize) -> Self {
        PngWalker {
            scrub,
            max_capture,
            state: HEADER,
            guard: Guard::default(),
            changed: false,
        }
    }

    pub(crate) fn push(&mut self, seg: Bytes, out: &mut impl Extend<Bytes>) {
        let mut run = 0;
        let mut i = 0;
        while i < seg.len() {
            let left = seg.len() - i;
            match &mut self.state {
                State::Header { buf, have } => {
                    // A header that starts here, and so lies whole in `seg` once read.
                    let from_here = *have == 0;
                    if from_here {
                        flush(&seg, &mut run, i, out);
                    }
                    let n = (8 - *have).min(left);
                    buf[*have..*have + n].copy_from_slice(&seg[i..i + n]);
                    *have += n;
                    i += n;
                    run = i;
                    if *have < 8 {
                        continue;
                    }
                    let header = *buf;
                    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
                    let kind = &header[4..8];
                    // A chunk type that is not letters is skipped by its length, as decoders
                    // do (no reader takes metadata from it); only an impossible length ends
                    // the walk.
                    if len > 0x7FFF_FFFF {
                        out.extend(Some(Bytes::copy_from_slice(&header)));
                        self.state = State::Guarded;
                        continue;
                    }
                    let with_crc = len as usize + 4;
                    self.state = if is_metadata(kind) && self.scrub.any() {
                        if with_crc <= self.max_capture {
                            State::Capture {
                                header,
                                buf: Vec::with_capacity(with_crc),
                                need: with_crc,
                            }
                        } else {
                            let mut neutral = header;
                            neutral[4..8].copy_from_slice(NEUTRAL);
                            out.extend(Some(Bytes::copy_from_slice(&neutral)));
                            let mut crc = crc32fast::Hasher::new();
                            crc.update(NEUTRAL);
                            self.changed = true;
                            State::Neutralise {
                                left: u64::from(len),
                                crc,
                            }
                        }
                    } else {
                        if from_here {
                            // Passed on as part of the slice that follows, not copied.
                            run = i - 8;
                        } else {
                            out.extend(Some(Bytes::copy_from_slice(&header)));
                        }
                        State::Skip {
                            left: with_crc as u64,
                            end: kind == b"IEND",
                        }
                    };
                }
                State::Skip { left: n, end } => {
                    let k = usize::try_from(*n).unwrap_or(usize::MAX).min(left);
                    i += k;
                    *n -= k as u64;
                    if *n == 0 {
                        self.state = if *end { State::Guarded } else { HEADER };
                    }
                }
                State::Capture { header, buf, need } => {
                    let k = (*need - buf.len()).min(left);
                    buf.extend_from_slice(&seg[i..i + k]);
                    i += k;
                    run = i;
                    if buf.len() == *need {
                        let mut header = *header;
                        let mut data = std::mem::take(buf);
                        let n = data.len() - 4;
                        let kind: [u8; 4] = [header[4], header[5], header[6], header[7]];
                        match png::edit_chunk(&kind, &mut data[..n], self.scrub) {
                            ChunkEdit::Unchanged => {}
                            ChunkEdit::Edited => {
                                let sum = png::crc(&kind, &data[..n]);
                                data[n..].copy_from_slice(&sum.to_be_bytes());
                                self.changed = true;
                            }
                            ChunkEdit::Neutralise => {
                                header[4..8].copy_from_slice(NEUTRAL);
                                data[..n].fill(0);
                                let sum = png::crc(NEUTRAL, &data[..n]);
                                data[n..].copy_from_slice(&sum.to_be_bytes());
                                self.changed = true;
                            }
                        }
                        out.extend(Some(Bytes::copy_from_slice(&header)));
                        out.extend(Some(Bytes::from(data)));
                        self.state = HEADER;
                    }
                }
                State::Neutralise { left: n, crc } => {
                    let k = usize::try_from(*n).unwrap_or(usize::MAX).min(left);
                    zeros(k as u64, out);
                    let mut z = k;
                    while z > 0 {
                        let step = z.min(4096);
                        crc.update(&[0u8; 4096][..step]);
                        z -= step;
                    }
                    i += k;
                    run = i;
                    *n -= k as u64;
                    if *n == 0 {
                        let sum = std::mem::take(crc).finalize();
                        out.extend(Some(Bytes::copy_from_slice(&sum.to_be_bytes())));
                        self.state = State::Crc { left: 4 };
                    }
                }
                State::Crc { left: n } => {
                    let k = usize::from(*n).min(left);
                    i += k;
                    run = i;
                    *n -= k as u8;
                    if *n == 0 {
                        self.state = HEADER;
                    }
                }
                State::Guarded => {
                    flush(&seg, &mut run, i, out);
                    self.guard.pass(seg.slice(i..), out);
                    return;
                }
            }
        }
        pass_rest(seg, run, out);
    }

    /// The input ended: a partial capture comes out zeroed, a partial header as it was.
    pub(crate) fn finish(&mut self, out: &mut impl Extend<Bytes>) {
        match std::mem::replace(&mut self.state, State::Guarded) {
            State::Capture { header, buf, .. } => {
                out.extend(Some(Bytes::copy_from_slice(&header)));
                if !buf.is_empty() {
                    self.changed = true;
                    zeros(buf.len() as u64, out);
                }
            }
            State::Header { buf, have } if have > 0 => {
                out.extend(Some(Bytes::copy_from_slice(&buf[..have])));
            }
            _ => {}
        }
        self.guard.finish(out);
    }

    pub(crate) fn held(&self) -> u64 {
        let state = match &self.state {
            State::Capture { buf, .. } => 8 + buf.len() as u64,
            State::Header { have, .. } => *have as u64,
            _ => 0,
        };
        state + self.guard.held()
    }

    pub(crate) fn changed(&self) -> bool {
        self.changed || self.guard.changed()
    }
}
