//! The streaming half of stamping: what runs over the body after the header was decided.
//!
//! Every walker keeps the stream's length: metadata it finds is scrubbed in place, a block
//! it cannot scrub is zeroed, and bytes pass as zero-copy slices of the input wherever
//! nothing changes. Zero runs are slices of one static buffer, so blanking allocates nothing.
//!
//! - [`RiffWalker`]: WebP chunks after the header (`EXIF`, `XMP `), then the XMP tail.
//! - [`JpegWalker`]: scan data, later segments, images appended after `EOI` (MPF).
//! - [`PngWalker`]: chunks after the first `IDAT` (`eXIf`, XMP and raw-profile text).
//! - [`BmffWalker`]: the Exif and XMP items of a HEIF/AVIF file, by file offset.
//!
//! Bytes after the end of a format's structure go through a [`Guard`].

use bytes::Bytes;
use memchr::memmem;

pub(crate) use super::bmff::BmffWalker;
pub(crate) use super::jpeg_walk::JpegWalker;
pub(crate) use super::png_walk::PngWalker;
pub(crate) use super::riff_walk::RiffWalker;

#[derive(Debug)]
pub(crate) enum Walker {
    Riff(RiffWalker),
    Jpeg(JpegWalker),
    Png(PngWalker),
    Bmff(BmffWalker),
}

impl Walker {
    /// Feeds bytes of the original stream; appends output to `out`.
    pub(crate) fn push(&mut self, input: Bytes, out: &mut impl Extend<Bytes>) {
        match self {
            Walker::Riff(w) => w.push(input, out),
            Walker::Jpeg(w) => w.push(input, out),
            Walker::Png(w) => w.push(input, out),
            Walker::Bmff(w) => w.push(input, out),
        }
    }

    /// The input ended: flush what is held (a partial capture comes out blanked).
    pub(crate) fn finish(&mut self, out: &mut impl Extend<Bytes>) {
        match self {
            Walker::Riff(w) => w.finish(out),
            Walker::Jpeg(w) => w.finish(out),
            Walker::Png(w) => w.finish(out),
            Walker::Bmff(w) => w.finish(out),
        }
    }

    /// Whether nothing is held back.
    pub(crate) fn is_drained(&self) -> bool {
        self.held() == 0
    }

    /// Bytes held back (a capture in progress, the WebP XMP tail).
    pub(crate) fn held(&self) -> u64 {
        match self {
            Walker::Riff(w) => w.held(),
            Walker::Jpeg(w) => w.held(),
            Walker::Png(w) => w.held(),
            Walker::Bmff(w) => w.held(),
        }
    }

    /// Whether the walker changed any byte so far.
    pub(crate) fn changed(&self) -> bool {
        match self {
            Walker::Riff(w) => w.changed(),
            Walker::Jpeg(w) => w.changed(),
            Walker::Png(w) => w.changed(),
            Walker::Bmff(w) => w.changed(),
        }
    }
}

/// Passes on what is left of `seg` from `run`: the frame itself when it passes whole, so an
/// untouched frame costs no slicing.
pub(crate) fn pass_rest(seg: Bytes, run: usize, out: &mut impl Extend<Bytes>) {
    if run == 0 {
        if !seg.is_empty() {
            out.extend(Some(seg));
        }
    } else if run < seg.len() {
        out.extend(Some(seg.slice(run..)));
    }
}

static ZEROS: [u8; 16 * 1024] = [0; 16 * 1024];

/// Appends `n` zero bytes as slices of a static buffer.
pub(crate) fn zeros(mut n: u64, out: &mut impl Extend<Bytes>) {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        out.extend(Some(Bytes::from_static(&ZEROS[..k])));
        n -= k as u64;
    }
}

/// Byte strings that open a metadata block able to hold a position: Exif/TIFF headers, XMP
/// packets, QuickTime/MP4 location atoms.
const MARKERS: [&[u8]; 8] = [
    b"Exif\0\0",
    b"II*\0",
    b"MM\0*",
    b"<x:xmpmeta",
    b"<?xpacket",
    b"<rdf:RDF",
    b"\xA9xyz",
    b"ISO6709",
];
const LONGEST_MARKER: usize = 10;

/// Passes bytes nothing structured describes (data after a JPEG's last `EOI`, a PNG's
/// `IEND`, a WebP's RIFF end) unchanged until one of [`MARKERS`] appears, and zeros from
/// the marker on. The last few bytes are held back, so a marker split across two pushes is
/// caught where it starts and the output does not depend on how the body was chunked.
#[derive(Debug, Default)]
pub(crate) struct Guard {
    tripped: bool,
    /// Bytes not emitted yet: fewer than the longest marker.
    pending: Vec<u8>,
    changed: bool,
}

impl Guard {
    pub(crate) fn pass(&mut self, seg: Bytes, out: &mut impl Extend<Bytes>) {
        if seg.is_empty() {
            return;
        }
        if self.tripped {
            self.blank(seg.len(), out);
            return;
        }
        let p = self.pending.len();
        let mut joined = self.pending.clone();
        joined.extend_from_slice(&seg[..seg.len().min(LONGEST_MARKER)]);
        let straddle = MARKERS
            .iter()
            .filter_map(|m| memmem::find(&joined, m))
            .filter(|at| *at < p)
            .min();
        let hit = straddle.or_else(|| {
            MARKERS
                .iter()
                .filter_map(|m| memmem::find(&seg, m))
                .min()
                .map(|at| at + p)
        });
        if let Some(at) = hit {
            let pending = std::mem::take(&mut self.pending);
            if at < p {
                out.extend(Some(Bytes::copy_from_slice(&pending[..at])));
            } else {
                if p > 0 {
                    out.extend(Some(Bytes::from(pending)));
                }
                if at > p {
                    out.extend(Some(seg.slice(..at - p)));
                }
            }
            self.tripped = true;
            tracing::debug!("metadata found after the end of the image: blanked");
            self.blank(p + seg.len() - at, out);
            return;
        }
        let keep = LONGEST_MARKER - 1;
        let total = p + seg.len();
        if total <= keep {
            self.pending.extend_from_slice(&seg);
            return;
        }
        let emit = total - keep;
        if emit <= p {
            out.extend(Some(Bytes::copy_from_slice(&self.pending[..emit])));
            self.pending.drain(..emit);
            self.pending.extend_from_slice(&seg);
        } else {
            if p > 0 {
                out.extend(Some(Bytes::from(std::mem::take(&mut self.pending))));
            }
            out.extend(Some(seg.slice(..emit - p)));
            self.pending = seg[emit - p..].to_vec();
        }
    }

    /// The input ended: what was held back goes out.
    pub(crate) fn finish(&mut self, out: &mut impl Extend<Bytes>) {
        if !self.pending.is_empty() {
            out.extend(Some(Bytes::from(std::mem::take(&mut self.pending))));
        }
    }

    pub(crate) fn held(&self) -> u64 {
        self.pending.len() as u64
    }

    fn blank(&mut self, n: usize, out: &mut impl Extend<Bytes>) {
        self.changed = true;
        zeros(n as u64, out);
    }

    pub(crate) fn changed(&self) -> bool {
        self.changed
    }
}

/// Whether some bytes hold one of the metadata [`MARKERS`].
pub(crate) fn has_marker(data: &[u8]) -> bool {
    first_marker(data).is_some()
}

/// Where the first of the metadata [`MARKERS`] starts.
pub(crate) fn first_marker(data: &[u8]) -> Option<usize> {
    MARKERS.iter().filter_map(|m| memmem::find(data, m)).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_blanks_from_a_marker_even_across_pushes() {
        let mut input = b"padding-padding".to_vec();
        input.extend_from_slice(b"Exif\0\0MM\0*GPSDATA");
        for size in [1, 2, 5, input.len()] {
            let mut g = Guard::default();
            let mut out: Vec<Bytes> = Vec::new();
            for part in input.chunks(size) {
                g.pass(Bytes::copy_from_slice(part), &mut out);
            }
            g.finish(&mut out);
            let out = out.concat();
            assert_eq!(out.len(), input.len());
            assert!(!out.windows(7).any(|w| w == b"GPSDATA"), "size {size}");
            // Blanked from where the marker starts, whatever the chunking.
            assert_eq!(&out[..15], b"padding-padding", "size {size}");
            assert!(out[15..].iter().all(|b| *b == 0), "size {size}");
            assert!(g.changed());
        }
        let mut g = Guard::default();
        let mut out: Vec<Bytes> = Vec::new();
        g.pass(Bytes::from_static(b"nothing here"), &mut out);
        assert_eq!(g.held(), 9);
        g.finish(&mut out);
        assert_eq!(out.concat(), b"nothing here");
        assert!(!g.changed());
    }
}
