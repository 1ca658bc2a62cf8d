//! The response body of a [`Lenscap`](super::Lenscap) service.
//!
//! Besides passing the inner body on (stamped, or with meta tags injected), it reads an HTML
//! page's bytes for the images the page embeds, and puts the page's render proof (a
//! stylesheet link, `limit::render`) right after its `</head>` (found across chunks, never in a
//! comment or a script); the search gives up after [`HEAD_SEARCH_LIMIT`] bytes, leaving a page
//! without `</head>` untouched.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::limit::PageEmbeds;
use crate::stamp::StampBody;
use crate::tag::range::Sliced;
use crate::tag::{HtmlBody, TaggedBody};

/// Bytes of a page searched for `</head>` before the render proof is given up on it.
pub(crate) const HEAD_SEARCH_LIMIT: usize = 64 * 1024;

pin_project! {
    /// The inner service's body (passed through, stamped, or with meta tags injected) or a body
    /// Lenscap wrote itself (a block, a document).
    pub struct ResponseBody<B: Body> {
        #[pin]
        kind: Kind<B>,
        // Reads the images an HTML page embeds as it streams out (the limit stage's).
        embeds: Option<Box<PageEmbeds>>,
        // Where the render proof goes: the end of the page's `</head>` tag.
        head_end: HeadEndSearch,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B: Body> {
        Inner { #[pin] body: B },
        Stamped { #[pin] body: Sliced<StampBody<B>> },
        Sliced { #[pin] body: Sliced<B> },
        Html { #[pin] body: HtmlBody<B> },
        Full { data: Option<Bytes> },
    }
}

/// Where the search for the end of `</head>` stands, across chunks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Search {
    /// In markup, between tags.
    #[default]
    Markup,
    /// After `<`: the first bytes of the tag (lower case), up to 7.
    Tag { name: [u8; 7], len: u8 },
    /// Inside `<!-- … -->`: the dashes just seen.
    Comment { dashes: u8 },
    /// Inside a `<script …>` start tag.
    ScriptTag,
    /// Inside a script: how much of `</script` was just seen.
    Script { matched: u8 },
    /// Inside `</head …>`, before its `>`.
    HeadEndTag,
}

/// Finds the end of the page's `</head>` (its `>`), skipping comments and scripts, where
/// browsers would not see it either. The proof goes right after it: HTML parsers put a
/// `<link>` found between `</head>` and `<body>` into the head.
#[derive(Debug, Default)]
struct HeadEndSearch {
    state: Search,
    searched: usize,
}

const SCRIPT_END: &[u8] = b"</script";

impl HeadEndSearch {
    /// The offset just after the `>` of `</head>` in `bytes`, if it ends there.
    fn find(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < bytes.len() {
            if self.state == Search::Markup {
                i += memchr::memchr(b'<', &bytes[i..])?;
                self.state = Search::Tag {
                    name: [0; 7],
                    len: 0,
                };
                i += 1;
                continue;
            }
            let b = bytes[i];
            i += 1;
            if self.step(b.to_ascii_lowercase()) {
                return Some(i);
            }
        }
        None
    }

    /// One byte (lower case) outside plain markup; whether it closed `</head>`.
    fn step(&mut self, b: u8) -> bool {
        self.state = match self.state {
            Search::Markup => Search::Markup,
            Search::Tag { mut name, len } => {
                name[usize::from(len)] = b;
                let seen = &name[..=usize::from(len)];
                let delimiter = matches!(b, b'>' | b'/' | b' ' | b'\t' | b'\n' | b'\r' | b'\x0c');
                match seen {
                    b"!--" => Search::Comment { dashes: 0 },
                    [b'/', b'h', b'e', b'a', b'd', _] if delimiter => {
                        if b == b'>' {
                            self.state = Search::Markup;
                            return true;
                        }
                        Search::HeadEndTag
                    }
                    [b's', b'c', b'r', b'i', b'p', b't', _] if delimiter => {
                        if b == b'>' {
                            Search::Script { matched: 0 }
                        } else {
                            Search::ScriptTag
                        }
                    }
                    _ if b"!--".starts_with(seen)
                        || b"/head".starts_with(seen)
                        || b"script".starts_with(seen) =>
                    {
                        Search::Tag { name, len: len + 1 }
                    }
                    _ if b == b'<' => Search::Tag {
                        name: [0; 7],
                        len: 0,
                    },
                    _ => Search::Markup,
                }
            }
            Search::Comment { dashes } => match b {
                b'-' => Search::Comment {
                    dashes: dashes.saturating_add(1),
                },
                b'>' if dashes >= 2 => Search::Markup,
                _ => Search::Comment { dashes: 0 },
            },
            Search::ScriptTag if b == b'>' => Search::Script { matched: 0 },
            Search::ScriptTag => Search::ScriptTag,
            Search::Script { matched } => {
                let matched = usize::from(matched);
                if b == SCRIPT_END[matched] {
                    if matched + 1 == SCRIPT_END.len() {
                        Search::Markup
                    } else {
                        Search::Script {
                            matched: matched as u8 + 1,
                        }
                    }
                } else {
                    Search::Script {
                        matched: u8::from(b == b'<'),
                    }
                }
            }
            Search::HeadEndTag if b == b'>' => {
                self.state = Search::Markup;
                return true;
            }
            Search::HeadEndTag => Search::HeadEndTag,
        };
        false
    }

    /// The bytes to send for `data`: the render proof's link spliced in after `</head>` when
    /// it ends in them.
    fn splice(&mut self, embeds: &mut PageEmbeds, data: Bytes) -> Bytes {
        let Some(link) = embeds.render_link() else {
            return data;
        };
        let Some(at) = self.find(&data) else {
            self.searched += data.len();
            if self.searched >= HEAD_SEARCH_LIMIT {
                embeds.render_given_up();
            }
            return data;
        };
        let mut out = Vec::with_capacity(data.len() + link.len());
        out.extend_from_slice(&data[..at]);
        out.extend_from_slice(link);
        out.extend_from_slice(&data[at..]);
        embeds.render_injected();
        Bytes::from(out)
    }
}

impl<B: Body> ResponseBody<B> {
    /// Wraps the inner body.
    pub fn inner(body: B) -> Self {
        ResponseBody {
            kind: Kind::Inner { body },
            embeds: None,
            head_end: HeadEndSearch::default(),
        }
    }

    pub(crate) fn stamped(body: Sliced<StampBody<B>>) -> Self {
        ResponseBody {
            kind: Kind::Stamped { body },
            embeds: None,
            head_end: HeadEndSearch::default(),
        }
    }

    pub(crate) fn tagged(body: TaggedBody<B>) -> Self {
        let kind = match body {
            TaggedBody::Inner(body) => Kind::Inner { body },
            TaggedBody::Html(body) => Kind::Html { body },
            TaggedBody::Sliced(body) => Kind::Sliced { body },
        };
        ResponseBody {
            kind,
            embeds: None,
            head_end: HeadEndSearch::default(),
        }
    }

    /// The same body, its bytes read for the images the page embeds.
    pub(crate) fn with_embeds(mut self, embeds: Option<Box<PageEmbeds>>) -> Self {
        self.embeds = embeds;
        self
    }

    /// A body of fixed bytes.
    pub fn full(data: Bytes) -> Self {
        ResponseBody {
            kind: Kind::Full {
                data: (!data.is_empty()).then_some(data),
            },
            embeds: None,
            head_end: HeadEndSearch::default(),
        }
    }

    /// An empty body.
    pub fn empty() -> Self {
        ResponseBody {
            kind: Kind::Full { data: None },
            embeds: None,
            head_end: HeadEndSearch::default(),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body + Unpin,
    B::Data: Buf,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let polled = poll_kind(this.kind.as_mut(), cx);
        let Some(embeds) = this.embeds.as_deref_mut() else {
            return polled;
        };
        let polled = polled.map(|frame| {
            frame.map(|result| {
                result.map(|frame| match frame.into_data() {
                    Ok(data) => {
                        let data = this.head_end.splice(embeds, data);
                        embeds.feed(&data);
                        Frame::data(data)
                    }
                    Err(frame) => frame,
                })
            })
        });
        // The page is complete: at its end, or when its last frame says so (a server may
        // never poll again after that).
        let ended = matches!(polled, Poll::Ready(None))
            || (matches!(polled, Poll::Ready(Some(Ok(_))))
                && kind_is_end_stream(&this.kind.as_ref()));
        if ended && let Some(embeds) = this.embeds.take() {
            embeds.finish();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        kind_is_end_stream(&self.kind)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Stamped { body } => body.size_hint(),
            Kind::Sliced { body } => body.size_hint(),
            Kind::Html { body } => body.size_hint(),
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

fn poll_kind<B>(
    kind: Pin<&mut Kind<B>>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, B::Error>>>
where
    B: Body + Unpin,
    B::Data: Buf,
{
    match kind.project() {
        KindProj::Inner { body } => body.poll_frame(cx).map(|frame| {
            frame.map(|result| {
                result.map(|f| f.map_data(|mut data| data.copy_to_bytes(data.remaining())))
            })
        }),
        KindProj::Stamped { body } => body.poll_frame(cx),
        KindProj::Sliced { body } => body.poll_frame(cx),
        KindProj::Html { body } => body.poll_frame(cx),
        KindProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
    }
}

fn kind_is_end_stream<B>(kind: &Kind<B>) -> bool
where
    B: Body + Unpin,
    B::Data: Buf,
{
    match kind {
        Kind::Inner { body } => body.is_end_stream(),
        Kind::Stamped { body } => body.is_end_stream(),
        Kind::Sliced { body } => body.is_end_stream(),
        Kind::Html { body } => body.is_end_stream(),
        Kind::Full { data } => data.is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    const LINK: &str = "<link rel=stylesheet href=/r.css>";

    fn end_of_head(html: &str) -> Option<usize> {
        HeadEndSearch::default().find(html.as_bytes())
    }

    #[test]
    fn the_end_of_head_is_found_and_never_taken_for_a_header_a_comment_or_a_script() {
        assert_eq!(end_of_head("<head><title>x</title></head>"), Some(29));
        assert_eq!(end_of_head("<HEAD></HEAD >"), Some(14));
        assert_eq!(end_of_head("<header></header><p>"), None);
        assert_eq!(end_of_head("<!-- </head> --></head>"), Some(23));
        assert_eq!(
            end_of_head("<script>w('</head>')</script></head>"),
            Some(36)
        );
        assert_eq!(end_of_head("<script src=a.js></SCRIPT></head>"), Some(33));
        assert_eq!(end_of_head("<<</head>"), Some(9));
        assert_eq!(end_of_head("<title>x</title></he"), None);
    }

    /// The page `chunks` stream through a body with the render proof: what comes out.
    async fn through(chunks: Vec<String>) -> String {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = chunks
            .into_iter()
            .map(|c| Ok(Frame::data(Bytes::from(c))))
            .collect();
        let inner = StreamBody::new(futures_util::stream::iter(frames));
        let mut body =
            ResponseBody::inner(inner).with_embeds(Some(Box::new(PageEmbeds::for_test(LINK))));
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            out.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn the_proof_goes_after_the_end_of_head_wherever_the_chunks_split() {
        let page = "<html><head><!-- </head> --><script>'</head>'</script></head><body><header>x</header></body></html>";
        let want = page.replacen("</script></head>", &format!("</script></head>{LINK}"), 1);
        for split in 1..page.len() {
            let (a, b) = page.split_at(split);
            let got = through(vec![a.to_owned(), b.to_owned()]).await;
            assert_eq!(got, want, "split at {split}");
        }
    }

    #[tokio::test]
    async fn a_page_without_an_end_of_head_passes_unchanged() {
        let got = through(vec!["<p>no head here</p><".into(), "/hea".into()]).await;
        assert_eq!(got, "<p>no head here</p></hea");
        let long = "x".repeat(HEAD_SEARCH_LIMIT + 10);
        let got = through(vec![long.clone(), "</head>".into()]).await;
        assert_eq!(got, format!("{long}</head>"));
    }

    #[test]
    fn splicing_notes_the_injection_once() {
        let mut embeds = PageEmbeds::for_test(LINK);
        let mut search = HeadEndSearch::default();
        let out = search.splice(&mut embeds, Bytes::from_static(b"<head></head>"));
        assert_eq!(&out[..], format!("<head></head>{LINK}").as_bytes());
        assert!(embeds.was_injected());
        let out = search.splice(&mut embeds, Bytes::from_static(b"</head>"));
        assert_eq!(&out[..], b"</head>");
    }
}
