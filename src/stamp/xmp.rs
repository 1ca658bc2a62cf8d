//! The XMP packet we write, and same-length edits of packets already in an image.
//!
//! Location and serial properties are recognised by their local name whatever prefix the
//! packet binds (readers resolve `ns1:GPSLatitude` as well as `exif:GPSLatitude`):
//! - location: every name starting with `GPS`/`Gps` (`exif:GPS…`, `exifEX:GPS…`,
//!   `drone-dji:GpsLatitude`, the `exif:GPS…` fields of IPTC location structures), and the
//!   IPTC `LocationCreated` / `LocationShown` structures whole;
//! - serials and owners: `SerialNumber`, `BodySerialNumber`, `CameraSerialNumber`,
//!   `LensSerialNumber`, `OwnerName`, `CameraOwnerName`.
//!
//! Each is blanked with spaces, attribute or element (with its content), so the packet keeps
//! its length. If such a name is found but its extent cannot be delimited, the whole packet
//! is blanked: it cannot be left carrying a position.

use super::exif::ScrubOptions;
use super::{DATA_MINING_VOCABULARY, DATA_MINING_VOCABULARY_URI, StampConfig, StampError};

/// The PLUS namespace that holds `DataMining` and `OtherConstraints`.
pub(crate) const PLUS_NS: &str = "http://ns.useplus.org/ldf/xmp/1.0/";

/// Returns the vocabulary token for a configured value (token or full URI).
pub(crate) fn data_mining_token(value: &str) -> Result<&'static str, StampError> {
    let token = value
        .strip_prefix(DATA_MINING_VOCABULARY_URI)
        .unwrap_or(value);
    DATA_MINING_VOCABULARY
        .iter()
        .find(|v| **v == token)
        .copied()
        .ok_or_else(|| StampError::UnknownDataMining(value.to_owned()))
}

fn checked_text<'a>(field: &'static str, value: &'a str) -> Result<&'a str, StampError> {
    let bad = value.trim().is_empty()
        || value
            .chars()
            .any(|c| (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{FFFE}');
    if bad {
        Err(StampError::InvalidText {
            field,
            value: value.to_owned(),
        })
    } else {
        Ok(value)
    }
}

/// Escapes text for XMP (XML) content and double- or single-quoted attributes.
///
/// Differs from the HTML escaper of the documents on purpose: `'` becomes `&apos;` (an XML
/// entity), and a carriage return becomes `&#13;`, since an XML parser would otherwise
/// normalise it to a line feed and change the value a reader sees.
pub(crate) fn escape(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

fn lang_alt(out: &mut String, property: &str, value: &str) {
    out.push_str("   <");
    out.push_str(property);
    out.push_str(">\n    <rdf:Alt>\n     <rdf:li xml:lang=\"x-default\">");
    escape(value, out);
    out.push_str("</rdf:li>\n    </rdf:Alt>\n   </");
    out.push_str(property);
    out.push_str(">\n");
}

fn simple(out: &mut String, property: &str, value: &str) {
    out.push_str("   <");
    out.push_str(property);
    out.push('>');
    escape(value, out);
    out.push_str("</");
    out.push_str(property);
    out.push_str(">\n");
}

/// Builds the complete `<?xpacket …?>`-wrapped packet for `config`.
pub(crate) fn build_packet(config: &StampConfig) -> Result<Vec<u8>, StampError> {
    let token = data_mining_token(&config.data_mining)?;
    let other = config
        .other_constraints
        .as_deref()
        .map(|v| checked_text("other_constraints", v))
        .transpose()?;
    if token == "DMI-PROHIBITED-SEECONSTRAINT" && other.is_none() {
        return Err(StampError::MissingOtherConstraints);
    }
    let copyright = config
        .copyright
        .as_deref()
        .map(|v| checked_text("copyright", v))
        .transpose()?;
    let credit = config
        .credit
        .as_deref()
        .map(|v| checked_text("credit", v))
        .transpose()?;
    let web = config
        .web_statement
        .as_deref()
        .map(|v| checked_text("web_statement", v))
        .transpose()?;
    if let Some(url) = web {
        let ok = (url.starts_with("http://") || url.starts_with("https://"))
            && url.len() > "https://".len()
            && !url.chars().any(char::is_whitespace);
        if !ok {
            return Err(StampError::InvalidWebStatement(url.to_owned()));
        }
    }

    let mut x = String::with_capacity(1024);
    x.push_str("<?xpacket begin=\"\u{FEFF}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\n");
    x.push_str("<x:xmpmeta xmlns:x=\"adobe:ns:meta/\" x:xmptk=\"Lenscap\">\n");
    x.push_str(" <rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\n");
    x.push_str("  <rdf:Description rdf:about=\"\"\n    xmlns:plus=\"");
    x.push_str(PLUS_NS);
    x.push('"');
    if copyright.is_some() {
        x.push_str("\n    xmlns:dc=\"http://purl.org/dc/elements/1.1/\"");
    }
    if credit.is_some() {
        x.push_str("\n    xmlns:photoshop=\"http://ns.adobe.com/photoshop/1.0/\"");
    }
    if web.is_some() {
        x.push_str("\n    xmlns:xmpRights=\"http://ns.adobe.com/xap/1.0/rights/\"");
    }
    x.push_str(">\n");
    simple(
        &mut x,
        "plus:DataMining",
        &format!("{DATA_MINING_VOCABULARY_URI}{token}"),
    );
    if let Some(v) = other {
        lang_alt(&mut x, "plus:OtherConstraints", v);
    }
    if let Some(v) = copyright {
        lang_alt(&mut x, "dc:rights", v);
    }
    if let Some(v) = credit {
        simple(&mut x, "photoshop:Credit", v);
    }
    if let Some(v) = web {
        simple(&mut x, "xmpRights:WebStatement", v);
    }
    x.push_str("  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n<?xpacket end=\"w\"?>");
    Ok(x.into_bytes())
}

// === same-length edits of an existing packet ===

/// What [`edit_in_place`] did to an existing packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Edit {
    /// `plus:DataMining` was merged.
    pub(crate) merged: bool,
    /// The packet already declares a data-mining value.
    pub(crate) declared: bool,
    /// `exif:GPS…` properties were blanked.
    pub(crate) scrubbed: bool,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The index of the `>` that ends the tag whose name starts at `from`, skipping quoted values.
fn tag_end(packet: &[u8], from: usize) -> Option<usize> {
    let mut quote = None;
    for (i, &b) in packet.iter().enumerate().skip(from) {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), _) if q == b => quote = None,
            (None, b'>') => return Some(i),
            (None, b'<') => return None,
            _ => {}
        }
    }
    None
}

/// Merges `attrs` into the first `rdf:Description` and blanks location (and, when asked,
/// serial) properties, never changing the packet's length. `attrs` is `None` when merging
/// is off.
pub(crate) fn edit_in_place(packet: &mut [u8], attrs: Option<&[u8]>, scrub: ScrubOptions) -> Edit {
    let mut edit = Edit {
        declared: find(packet, b"DataMining", 0).is_some(),
        ..Edit::default()
    };
    edit.scrubbed = blank_properties(packet, scrub);
    if let Some(attrs) = attrs
        && !edit.declared
    {
        edit.merged = merge(packet, attrs).is_some();
    }
    edit
}

fn merge(packet: &mut [u8], attrs: &[u8]) -> Option<()> {
    if find(packet, b"xmlns:plus=", 0).is_some() {
        return None;
    }
    let end_pi = find(packet, b"<?xpacket end=", 0)?;
    let mode = packet.get(end_pi + 15)?;
    if *mode != b'w' {
        return None;
    }
    let pad = packet[..end_pi]
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_whitespace())
        .count();
    // Keep one newline of padding so the closing tags stay readable.
    if pad < attrs.len() + 1 {
        return None;
    }
    let desc = find(packet, b"<rdf:Description", 0)?;
    let name_end = desc + b"<rdf:Description".len();
    if !packet.get(name_end)?.is_ascii_whitespace() && packet.get(name_end) != Some(&b'>') {
        return None;
    }
    let mut at = tag_end(packet, name_end)?;
    if at > 0 && packet[at - 1] == b'/' {
        at -= 1;
    }
    let pad_start = end_pi - pad;
    if at >= pad_start {
        return None;
    }
    // Shift [at, pad_start) right by attrs.len(), eating padding, then write attrs at `at`.
    packet.copy_within(at..pad_start, at + attrs.len());
    packet[at..at + attrs.len()].copy_from_slice(attrs);
    Some(())
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.') || b >= 0x80
}

fn is_location(local: &[u8]) -> bool {
    local.len() >= 3 && local[..3].eq_ignore_ascii_case(b"GPS")
        || local == b"LocationCreated"
        || local == b"LocationShown"
}

fn is_serial(local: &[u8]) -> bool {
    matches!(
        local,
        b"SerialNumber"
            | b"BodySerialNumber"
            | b"CameraSerialNumber"
            | b"LensSerialNumber"
            | b"OwnerName"
            | b"CameraOwnerName"
    )
}

/// Whether some bytes hold a property [`blank_properties`] would blank.
pub(crate) fn has_properties(packet: &[u8], scrub: ScrubOptions) -> bool {
    let mut copy = packet.to_vec();
    blank_properties(&mut copy, scrub)
}

/// Blanks location (and with `scrub.serials` serial) properties with spaces; see the
/// module docs. Returns whether anything changed.
pub(crate) fn blank_properties(packet: &mut [u8], scrub: ScrubOptions) -> bool {
    if !scrub.any() {
        return false;
    }
    let mut changed = false;
    let mut from = 0;
    while let Some(p) = memchr::memchr(b':', &packet[from..]) {
        let colon = from + p;
        from = colon + 1;
        let local_len = packet[colon + 1..]
            .iter()
            .take_while(|b| is_name_byte(**b))
            .count();
        let local = &packet[colon + 1..colon + 1 + local_len];
        if !(scrub.gps && is_location(local) || scrub.serials && is_serial(local)) {
            continue;
        }
        let mut start = colon;
        while start > 0 && is_name_byte(packet[start - 1]) {
            start -= 1;
        }
        if start == colon {
            continue;
        }
        let name_len = colon + 1 + local_len - start;
        let range = match start.checked_sub(1).map(|p| packet[p]) {
            // <exif:GPSLatitude>…</exif:GPSLatitude> or <exif:GPSVersionID … />
            Some(b'<') => element_range(packet, start - 1, name_len),
            // exif:GPSLatitude="…" as an attribute
            Some(b) if b.is_ascii_whitespace() => attribute_range(packet, start, name_len),
            // A closing tag, or the name inside text: not a property.
            _ => continue,
        };
        match range {
            Some((s, e)) => {
                packet[s..e].fill(b' ');
                changed = true;
                from = e;
            }
            None => {
                // A property we cannot delimit: nothing of this packet may stay.
                tracing::debug!("xmp packet blanked: a location property could not be delimited");
                packet.fill(b' ');
                return true;
            }
        }
    }
    changed
}

fn attribute_range(packet: &[u8], at: usize, name_len: usize) -> Option<(usize, usize)> {
    let mut i = at + name_len;
    while packet.get(i)?.is_ascii_whitespace() {
        i += 1;
    }
    if *packet.get(i)? != b'=' {
        return None;
    }
    i += 1;
    while packet.get(i)?.is_ascii_whitespace() {
        i += 1;
    }
    let quote = *packet.get(i)?;
    if quote != b'"' && quote != b'\'' {
        return None;
    }
    let close = packet.get(i + 1..)?.iter().position(|b| *b == quote)? + i + 1;
    Some((at, close + 1))
}

fn element_range(packet: &[u8], lt: usize, name_len: usize) -> Option<(usize, usize)> {
    let name = packet.get(lt + 1..lt + 1 + name_len)?;
    let open_end = tag_end(packet, lt + 1)?;
    if open_end > 0 && packet[open_end - 1] == b'/' {
        return Some((lt, open_end + 1));
    }
    let mut close = Vec::with_capacity(name_len + 3);
    close.extend_from_slice(b"</");
    close.extend_from_slice(name);
    let c = find(packet, &close, open_end)?;
    let gt = tag_end(packet, c + 2)?;
    if !packet
        .get(c + close.len()..gt)?
        .iter()
        .all(u8::is_ascii_whitespace)
    {
        return None;
    }
    Some((lt, gt + 1))
}

/// Finds the XMP packet (`<?xpacket begin` … `end="…"?>`) inside some bytes; for tests and
/// tools that read a stamp back.
pub fn find_packet(data: &[u8]) -> Option<&[u8]> {
    let start = find(data, b"<?xpacket begin=", 0)?;
    let end_pi = find(data, b"<?xpacket end=", start)?;
    let close = find(data, b"?>", end_pi)?;
    data.get(start..close + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GPS: ScrubOptions = ScrubOptions {
        gps: true,
        serials: false,
    };
    const NONE: ScrubOptions = ScrubOptions {
        gps: false,
        serials: false,
    };
    const ALL: ScrubOptions = ScrubOptions {
        gps: true,
        serials: true,
    };

    #[test]
    fn blanks_any_prefix_structures_and_serials() {
        let mut p = b"<rdf:Description xmlns:ns1=\"http://ns.adobe.com/exif/1.0/\" ns1:GPSLatitude=\"52,22N\" drone-dji:GpsLongitude=\"+4.9\" aux:SerialNumber=\"123\" tiff:Make=\"X\">\n<Iptc4xmpExt:LocationCreated><rdf:Bag><rdf:li rdf:parseType=\"Resource\"><Iptc4xmpExt:City>Gouda</Iptc4xmpExt:City><exif:GPSLongitude>4,42E</exif:GPSLongitude></rdf:li></rdf:Bag></Iptc4xmpExt:LocationCreated>\n<exifEX:LensSerialNumber>L9</exifEX:LensSerialNumber></rdf:Description>".to_vec();
        let len = p.len();
        assert!(blank_properties(&mut p, ALL));
        assert_eq!(p.len(), len);
        let s = String::from_utf8(p).unwrap();
        for gone in [
            "GPS", "Gps", "52,22N", "Gouda", "4,42E", "123", "L9", "Location",
        ] {
            assert!(!s.contains(gone), "{gone} left in {s}");
        }
        assert!(
            s.contains("tiff:Make=\"X\">") && s.ends_with("</rdf:Description>"),
            "{s}"
        );
    }

    #[test]
    fn serials_kept_unless_asked_and_undelimited_property_blanks_packet() {
        let mut p = b"<a aux:SerialNumber=\"1\" exif:GPSAltitude=\"3\"/>".to_vec();
        assert!(blank_properties(&mut p, GPS));
        let s = String::from_utf8_lossy(&p).into_owned();
        assert!(
            s.starts_with("<a aux:SerialNumber=\"1\" ") && s.ends_with(" />") && !s.contains("GPS"),
            "{s}"
        );
        let mut broken = b"<x><exif:GPSLatitude>52,22N</x>".to_vec();
        assert!(blank_properties(&mut broken, GPS));
        assert!(broken.iter().all(|b| *b == b' '));
        let mut closing = b"text exif:GPS is off </exif:GPSLatitude".to_vec();
        let orig = closing.clone();
        // "exif:GPS is" as text: not an attribute (no '='), so the packet is blanked whole.
        assert!(blank_properties(&mut closing, GPS));
        assert_ne!(closing, orig);
    }

    fn adobe_like(padding: usize, extra: &str) -> Vec<u8> {
        let mut s = String::from(
            "<?xpacket begin=\"\u{FEFF}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\n<x:xmpmeta xmlns:x=\"adobe:ns:meta/\">\n <rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\n  <rdf:Description rdf:about=\"\" xmlns:exif=\"http://ns.adobe.com/exif/1.0/\" xmlns:xmp=\"http://ns.adobe.com/xap/1.0/\" xmp:CreatorTool=\"a > b\"",
        );
        s.push_str(extra);
        s.push_str(">\n   <exif:GPSLatitude>52,22.1N</exif:GPSLatitude>\n   <exif:GPSVersionID>2.2.0.0</exif:GPSVersionID>\n  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n");
        s.push_str(&" ".repeat(padding));
        s.push_str("\n<?xpacket end=\"w\"?>");
        s.into_bytes()
    }

    #[test]
    fn builds_escaped_packet() {
        let cfg = StampConfig {
            copyright: Some("© Bar & <Grill> \"Pub\"".into()),
            credit: Some("O'Neill".into()),
            web_statement: Some("https://pub.example/terms?a=1&b=2".into()),
            ..StampConfig::default()
        };
        let p = String::from_utf8(build_packet(&cfg).unwrap()).unwrap();
        assert!(p.contains("<plus:DataMining>http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED-AIMLTRAINING</plus:DataMining>"));
        assert!(p.contains("© Bar &amp; &lt;Grill&gt; &quot;Pub&quot;"));
        assert!(p.contains("O&apos;Neill"));
        assert!(p.contains("terms?a=1&amp;b=2"));
        assert!(p.contains("xmlns:plus=\"http://ns.useplus.org/ldf/xmp/1.0/\""));
        assert!(p.contains("<dc:rights>"));
        assert!(p.ends_with("<?xpacket end=\"w\"?>"));
    }

    #[test]
    fn see_constraint_writes_lang_alt() {
        let cfg = StampConfig {
            data_mining: "http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED-SEECONSTRAINT".into(),
            other_constraints: Some("Ask first".into()),
            ..StampConfig::default()
        };
        let p = String::from_utf8(build_packet(&cfg).unwrap()).unwrap();
        assert!(p.contains("<plus:OtherConstraints>"));
        assert!(p.contains("<rdf:li xml:lang=\"x-default\">Ask first</rdf:li>"));
    }

    #[test]
    fn merges_into_padding_and_blanks_gps_same_length() {
        let attrs = b" xmlns:plus=\"http://ns.useplus.org/ldf/xmp/1.0/\" plus:DataMining=\"http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED\"";
        let mut p = adobe_like(500, "");
        let before = p.len();
        let edit = edit_in_place(&mut p, Some(attrs), GPS);
        assert_eq!(p.len(), before);
        assert!(edit.merged && edit.scrubbed && !edit.declared);
        let s = String::from_utf8(p).unwrap();
        assert!(s.contains("xmp:CreatorTool=\"a > b\" xmlns:plus="), "{s}");
        assert!(!s.contains("GPS"));
        assert!(s.ends_with("<?xpacket end=\"w\"?>"));
    }

    #[test]
    fn no_merge_without_padding_or_when_declared() {
        let attrs = b" plus:DataMining=\"x\"";
        let mut p = adobe_like(3, "");
        let orig = p.clone();
        let edit = edit_in_place(&mut p, Some(attrs), NONE);
        assert!(!edit.merged);
        assert_eq!(p, orig);
        let mut p = adobe_like(500, " plus:DataMining=\"y\"");
        let orig = p.clone();
        let edit = edit_in_place(&mut p, Some(attrs), NONE);
        assert!(edit.declared && !edit.merged);
        assert_eq!(p, orig);
    }

    #[test]
    fn blanks_gps_attributes() {
        let mut p =
            b"<rdf:Description exif:GPSLatitude='1' exif:GPSLongitude=\"2\" a=\"b\"/>".to_vec();
        assert!(blank_properties(&mut p, GPS));
        let s = String::from_utf8(p).unwrap();
        assert!(!s.contains("GPS") && s.contains("a=\"b\"/>"), "{s}");
    }

    #[test]
    fn find_packet_reads_back() {
        let p = build_packet(&StampConfig::default()).unwrap();
        let mut wrapped = b"junk".to_vec();
        wrapped.extend_from_slice(&p);
        wrapped.extend_from_slice(b"junk");
        assert_eq!(find_packet(&wrapped), Some(&p[..]));
    }
}
