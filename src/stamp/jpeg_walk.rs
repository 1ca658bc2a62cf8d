//! The streaming part of JPEG scrubbing: everything after the header.
//!
//! Walks the entropy-coded data (`FF 00` stuffing and restart markers skipped), the
//! segments between progressive scans, the `EOI`, and every image appended after it (MPF
//! secondary images, a second JPEG written by a phone): their `APP1` (Exif, XMP, Extended
//! XMP) and `APP13` segments are captured (a JPEG segment is at most 64 KiB) and scrubbed
//! in place like the header's. Bytes after the last image that do not start another
//! `SOI` go through a [`Guard`]. A segment whose length is impossible ends the walk the same
//! way. Nothing changes length, so no MPF offset moves.

use bytes::Bytes;

use super::exif::ScrubOptions;
use super::jpeg::scrub_segment;
use super::walk::{Guard, pass_rest, zeros};

#[derive(Debug)]
pub(crate) struct JpegWalker {
    scrub: ScrubOptions,
    state: State,
    guard: Guard,
    changed: bool,
}

/// Finds the next `FF` in scan data. The search restarts after every stuffed `FF 00` (one
/// every few hundred bytes of a photo), so on x86-64 memchr's AVX2 searcher is made once
/// per frame and called directly, without `memchr::memchr`'s dispatch on each call. (Not
/// kept in the walker: its 32-byte alignment would make the walker's box an aligned
/// allocation, dearer than what it saves.)
#[derive(Clone, Copy)]
struct FfFinder {
    #[cfg(target_arch = "x86_64")]
    avx2: Option<memchr::arch::x86_64::avx2::memchr::One>,
}

impl FfFinder {
    fn new() -> Self {
        FfFinder {
            #[cfg(target_arch = "x86_64")]
            avx2: memchr::arch::x86_64::avx2::memchr::One::new(0xFF),
        }
    }

    #[inline]
    fn find(&self, haystack: &[u8]) -> Option<usize> {
        #[cfg(target_arch = "x86_64")]
        if let Some(avx2) = &self.avx2 {
            return avx2.find(haystack);
        }
        memchr::memchr(0xFF, haystack)
    }
}

#[derive(Debug)]
enum State {
    /// Between segments: a marker is expected.
    Marker,
    /// Saw `FF` where a marker may follow; `scan`: inside entropy-coded data.
    Ff {
        scan: bool,
    },
    /// Entropy-coded data (or garbage): looking for the next `FF`.
    Scan,
    /// The two length bytes of a segment.
    Length {
        marker: u8,
        hi: Option<u8>,
    },
    /// Payload to pass; then `Scan` after an `SOS` header, `Marker` otherwise.
    Skip {
        left: usize,
        scan: bool,
    },
    Capture {
        marker: u8,
        buf: Vec<u8>,
        need: usize,
    },
    /// After `EOI`: another `SOI` or the trailer.
    AfterEoi,
    AfterEoiFf,
    Guarded,
}

impl JpegWalker {
    /// A walker positioned at a marker (the header's `SOS`, or right after `SOI`).
    pub(crate) fn new(scrub: ScrubOptions) -> Self {
        JpegWalker {
            scrub,
            state: State::Marker,
            guard: Guard::default(),
            changed: false,
        }
    }

    pub(crate) fn push(&mut self, seg: Bytes, out: &mut impl Extend<Bytes>) {
        let ff = FfFinder::new();
        let mut run = 0;
        let mut i = 0;
        while i < seg.len() {
            match &mut self.state {
                State::Scan => {
                    // Hot loop over entropy-coded data: stuffed `FF 00` and restart markers
                    // are skipped here without a state change.
                    loop {
                        match ff.find(&seg[i..]) {
                            Some(p) => {
                                i += p + 1;
                                match seg.get(i) {
                                    Some(0x00 | 0xD0..=0xD7) => i += 1,
                                    _ => {
                                        self.state = State::Ff { scan: true };
                                        break;
                                    }
                                }
                            }
                            None => {
                                i = seg.len();
                                break;
                            }
                        }
                    }
                }
                State::Marker => {
                    if seg[i] == 0xFF {
                        self.state = State::Ff { scan: false };
                    } else {
                        // Garbage between segments: decoders skip to the next marker.
                        self.state = State::Scan;
                    }
                    i += 1;
                }
                State::Ff { scan } => {
                    let scan = *scan;
                    let m = seg[i];
                    i += 1;
                    self.state = match m {
                        0xFF => State::Ff { scan },
                        0x00 => State::Scan,
                        0xD0..=0xD7 | 0x01 if scan => State::Scan,
                        0xD0..=0xD7 | 0x01 => State::Marker,
                        0xD9 => State::AfterEoi,
                        // An SOI inside an image: the structure is not what it claims.
                        0xD8 => State::Guarded,
                        marker => State::Length { marker, hi: None },
                    };
                }
                State::Length { marker, hi } => {
                    let b = seg[i];
                    i += 1;
                    let Some(h) = *hi else {
                        *hi = Some(b);
                        continue;
                    };
                    let marker = *marker;
                    let len = usize::from(u16::from_be_bytes([h, b]));
                    if len < 2 {
                        self.state = State::Guarded;
                        continue;
                    }
                    let need = len - 2;
                    self.state = if matches!(marker, 0xE1 | 0xED) && self.scrub.any() && need > 0 {
                        if run < i {
                            out.extend(Some(seg.slice(run..i)));
                        }
                        run = i;
                        State::Capture {
                            marker,
                            buf: Vec::with_capacity(need),
                            need,
                        }
                    } else if need == 0 {
                        if marker == 0xDA {
                            State::Scan
                        } else {
                            State::Marker
                        }
                    } else {
                        State::Skip {
                            left: need,
                            scan: marker == 0xDA,
                        }
                    };
                }
                State::Skip { left, scan } => {
                    let k = (*left).min(seg.len() - i);
                    i += k;
                    *left -= k;
                    if *left == 0 {
                        self.state = if *scan { State::Scan } else { State::Marker };
                    }
                }
                State::Capture { marker, buf, need } => {
                    let k = (*need - buf.len()).min(seg.len() - i);
                    buf.extend_from_slice(&seg[i..i + k]);
                    i += k;
                    run = i;
                    if buf.len() == *need {
                        let mut data = std::mem::take(buf);
                        self.changed |= scrub_segment(*marker, &mut data, self.scrub);
                        out.extend(Some(Bytes::from(data)));
                        self.state = State::Marker;
                    }
                }
                State::AfterEoi => {
                    match seg[i] {
                        0xFF => self.state = State::AfterEoiFf,
                        // Padding between appended images.
                        0x00 => {}
                        _ => {
                            self.state = State::Guarded;
                            continue;
                        }
                    }
                    i += 1;
                }
                State::AfterEoiFf => {
                    if seg[i] == 0xD8 {
                        self.state = State::Marker;
                        i += 1;
                    } else {
                        self.state = State::Guarded;
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

    /// The input ended: a partial capture comes out zeroed.
    pub(crate) fn finish(&mut self, out: &mut impl Extend<Bytes>) {
        if let State::Capture { buf, .. } = std::mem::replace(&mut self.state, State::Guarded)
            && !buf.is_empty()
        {
            self.changed = true;
            zeros(buf.len() as u64, out);
        }
        self.guard.finish(out);
    }

    pub(crate) fn held(&self) -> u64 {
        let capture = match &self.state {
            State::Capture { buf, .. } => buf.len() as u64,
            _ => 0,
        };
        capture + self.guard.held()
    }

    pub(crate) fn changed(&self) -> bool {
        self.changed || self.guard.changed()
    }
}
