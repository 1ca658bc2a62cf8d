//! Makes the demo venue gallery in `examples/gallery/`: pages and 66 small generated photos
//! (JPEG, PNG, WebP) of an imaginary pub, The Crown & Anchor. No third-party photos: every
//! picture is drawn here from shapes and gradients, deterministically (same bytes every run).
//!
//! Some JPEGs carry Exif with an orientation tag and GPS coordinates, as phone photos do, so
//! that stamping and scrubbing have something real to work on.
//!
//! ```text
//! cargo run --example make_gallery            # writes examples/gallery/
//! cargo run --example make_gallery -- OUTDIR
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder, Rgb, RgbImage};

const WIDTH: u32 = 128;
const HEIGHT: u32 = 96;

/// A deterministic pseudo-random sequence (xorshift), so the gallery is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }
}

#[derive(Clone, Copy)]
enum Scene {
    Terrace,
    Quiz,
    Garden,
    Bar,
    Band,
    Team,
}

impl Scene {
    const ALL: [Scene; 6] = [
        Scene::Terrace,
        Scene::Quiz,
        Scene::Garden,
        Scene::Bar,
        Scene::Band,
        Scene::Team,
    ];

    fn slug(self) -> &'static str {
        match self {
            Scene::Terrace => "terrace",
            Scene::Quiz => "quiz-night",
            Scene::Garden => "beer-garden",
            Scene::Bar => "the-bar",
            Scene::Band => "live-music",
            Scene::Team => "team-night",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Scene::Terrace => "Terrace re-opening",
            Scene::Quiz => "Thursday quiz night",
            Scene::Garden => "Beer garden in June",
            Scene::Bar => "Behind the bar",
            Scene::Band => "Live music Saturdays",
            Scene::Team => "Staff summer party",
        }
    }

    /// Sky (or ceiling) at top and bottom, and the ground.
    fn palette(self) -> ([u8; 3], [u8; 3], [u8; 3]) {
        match self {
            Scene::Terrace => ([90, 160, 230], [250, 210, 150], [150, 120, 90]),
            Scene::Quiz => ([40, 30, 60], [120, 80, 60], [90, 60, 40]),
            Scene::Garden => ([120, 190, 240], [220, 240, 250], [70, 140, 60]),
            Scene::Bar => ([70, 40, 30], [160, 100, 50], [60, 40, 30]),
            Scene::Band => ([20, 10, 40], [120, 30, 90], [40, 30, 30]),
            Scene::Team => ([250, 150, 90], [250, 220, 160], [110, 100, 90]),
        }
    }
}

fn lerp(a: u8, b: u8, t: f32) -> u8 {
    (f32::from(a) + (f32::from(b) - f32::from(a)) * t).round() as u8
}

fn fill_rect(img: &mut RgbImage, x: i32, y: i32, w: i32, h: i32, color: [u8; 3]) {
    for yy in y.max(0)..(y + h).min(HEIGHT as i32) {
        for xx in x.max(0)..(x + w).min(WIDTH as i32) {
            img.put_pixel(xx as u32, yy as u32, Rgb(color));
        }
    }
}

fn fill_circle(img: &mut RgbImage, cx: i32, cy: i32, r: i32, color: [u8; 3]) {
    for yy in (cy - r).max(0)..(cy + r + 1).min(HEIGHT as i32) {
        for xx in (cx - r).max(0)..(cx + r + 1).min(WIDTH as i32) {
            if (xx - cx).pow(2) + (yy - cy).pow(2) <= r * r {
                img.put_pixel(xx as u32, yy as u32, Rgb(color));
            }
        }
    }
}

/// A venue scene: a sky or ceiling gradient (in bands, so it compresses), a building or bar,
/// tables, people as simple figures, string lights.
fn draw(scene: Scene, seed: u64) -> RgbImage {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let (top, bottom, ground) = scene.palette();
    let horizon = 56 + rng.below(12) as i32;
    let mut img = RgbImage::new(WIDTH, HEIGHT);
    for y in 0..HEIGHT {
        // Eight bands: smooth enough to look like light, flat enough for PNG and WebP.
        let t = ((y * 8 / HEIGHT) as f32) / 7.0;
        let color = [
            lerp(top[0], bottom[0], t),
            lerp(top[1], bottom[1], t),
            lerp(top[2], bottom[2], t),
        ];
        for x in 0..WIDTH {
            img.put_pixel(x, y, Rgb(if (y as i32) < horizon { color } else { ground }));
        }
    }
    // The building or the bar counter.
    let bx = rng.below(40) as i32;
    let bw = 50 + rng.below(30) as i32;
    fill_rect(&mut img, bx, horizon - 30, bw, 30, [120, 60, 40]);
    for i in 0..(bw / 12) {
        fill_rect(
            &mut img,
            bx + 4 + i * 12,
            horizon - 24,
            6,
            8,
            [250, 220, 120],
        );
    }
    // String lights.
    for i in 0..12 {
        let x = 4 + i * 11;
        let y = 8 + ((i * 7) % 5);
        fill_circle(&mut img, x, y, 1, [255, 240, 170]);
    }
    // Tables and people.
    let people = 3 + rng.below(5) as i32;
    for _ in 0..people {
        let x = 8 + rng.below(WIDTH - 16) as i32;
        let y = horizon + 6 + rng.below((HEIGHT as i32 - horizon - 14).max(1) as u32) as i32;
        let shirt = [
            60 + rng.below(190) as u8,
            60 + rng.below(190) as u8,
            60 + rng.below(190) as u8,
        ];
        fill_rect(&mut img, x - 3, y - 10, 6, 10, shirt);
        fill_circle(&mut img, x, y - 14, 3, [230, 190, 160]);
    }
    for _ in 0..2 {
        let x = 10 + rng.below(WIDTH - 20) as i32;
        let y = horizon + 10;
        fill_rect(&mut img, x - 8, y, 16, 3, [90, 60, 30]);
        fill_rect(&mut img, x - 1, y + 3, 2, 6, [70, 50, 30]);
    }
    if matches!(scene, Scene::Terrace | Scene::Garden | Scene::Team) {
        fill_circle(&mut img, 110, 14, 7, [255, 230, 120]);
    }
    img
}

/// A JPEG APP1 Exif segment: Orientation, and GPS latitude and longitude.
fn exif_segment(orientation: u16, lat: (u32, u32, u32), lon: (u32, u32, u32)) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\0\x2a\0\0\0\x08");
    let entry = |t: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: [u8; 4]| {
        t.extend_from_slice(&tag.to_be_bytes());
        t.extend_from_slice(&kind.to_be_bytes());
        t.extend_from_slice(&count.to_be_bytes());
        t.extend_from_slice(&value);
    };
    // IFD0 at 8: two entries, ends at 8 + 2 + 24 + 4 = 38.
    tiff.extend_from_slice(&2u16.to_be_bytes());
    let o = orientation.to_be_bytes();
    entry(&mut tiff, 0x0112, 3, 1, [o[0], o[1], 0, 0]);
    entry(&mut tiff, 0x8825, 4, 1, 38u32.to_be_bytes());
    tiff.extend_from_slice(&0u32.to_be_bytes());
    // GPS IFD at 38: four entries, ends at 38 + 2 + 48 + 4 = 92; rationals at 92 and 116.
    tiff.extend_from_slice(&4u16.to_be_bytes());
    entry(&mut tiff, 0x0001, 2, 2, *b"N\0\0\0");
    entry(&mut tiff, 0x0002, 5, 3, 92u32.to_be_bytes());
    entry(&mut tiff, 0x0003, 2, 2, *b"W\0\0\0");
    entry(&mut tiff, 0x0004, 5, 3, 116u32.to_be_bytes());
    tiff.extend_from_slice(&0u32.to_be_bytes());
    for (d, m, s) in [lat, lon] {
        for (num, den) in [(d, 1u32), (m, 1), (s, 100)] {
            tiff.extend_from_slice(&num.to_be_bytes());
            tiff.extend_from_slice(&den.to_be_bytes());
        }
    }
    let mut segment = vec![0xFF, 0xE1];
    let length = (2 + 6 + tiff.len()) as u16;
    segment.extend_from_slice(&length.to_be_bytes());
    segment.extend_from_slice(b"Exif\0\0");
    segment.extend_from_slice(&tiff);
    segment
}

/// Inserts `segment` after SOI and a JFIF APP0, where Exif belongs.
fn insert_after_app0(jpeg: &[u8], segment: &[u8]) -> Vec<u8> {
    let mut at = 2;
    if jpeg.len() > 4 && jpeg[2] == 0xFF && jpeg[3] == 0xE0 {
        at = 4 + usize::from(u16::from_be_bytes([jpeg[4], jpeg[5]]));
    }
    let mut out = Vec::with_capacity(jpeg.len() + segment.len());
    out.extend_from_slice(&jpeg[..at]);
    out.extend_from_slice(segment);
    out.extend_from_slice(&jpeg[at..]);
    out
}

fn encode(img: &RgbImage, ext: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (w, h) = img.dimensions();
    match ext {
        "jpg" => JpegEncoder::new_with_quality(&mut out, 70)
            .write_image(img.as_raw(), w, h, ExtendedColorType::Rgb8)
            .unwrap(),
        "png" => PngEncoder::new(&mut out)
            .write_image(img.as_raw(), w, h, ExtendedColorType::Rgb8)
            .unwrap(),
        "webp" => WebPEncoder::new_lossless(&mut out)
            .write_image(img.as_raw(), w, h, ExtendedColorType::Rgb8)
            .unwrap(),
        _ => unreachable!(),
    }
    out
}

struct Photo {
    file: String,
    scene: Scene,
    alt: String,
}

fn page(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · The Crown &amp; Anchor</title>
<link rel="stylesheet" href="/style.css">
</head>
<body>
<header>
<h1><a href="/">The Crown &amp; Anchor</a></h1>
<p>Free house · real ales · Sunday roasts · quiz on Thursdays</p>
<nav><a href="/">Gallery</a> <a href="/events.html">Events</a> <a href="/visit.html">Visit us</a></nav>
</header>
<main>
{body}
</main>
<footer>
<p>Photos of our guests are for our guests. They may not be collected, indexed or used to
train AI models. <a href="/ai-policy">Our photo policy</a>.</p>
<a href="/lenscap-trap/" hidden tabindex="-1" aria-hidden="true">archive</a>
</footer>
</body>
</html>
"#
    )
}

fn main() {
    let out: PathBuf = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gallery"));
    let photos_dir = out.join("photos");
    std::fs::create_dir_all(&photos_dir).unwrap();

    let mut photos = Vec::new();
    let mut total = 0usize;
    for (scene_index, scene) in Scene::ALL.into_iter().enumerate() {
        for n in 0..11u64 {
            let seed = scene_index as u64 * 100 + n + 1;
            // Five JPEGs, three PNGs, three WebPs per scene: 66 photos.
            let ext = match n {
                0..=4 => "jpg",
                5..=7 => "png",
                _ => "webp",
            };
            let img = draw(scene, seed);
            let mut bytes = encode(&img, ext);
            // The first two JPEGs of each scene look like phone photos: Exif with
            // orientation and GPS (the pub's made-up position near Whitby).
            if ext == "jpg" && n < 2 {
                let orientation = if n == 0 { 1 } else { 6 };
                let segment = exif_segment(orientation, (54, 29, 1234 + n as u32), (0, 36, 4321));
                bytes = insert_after_app0(&bytes, &segment);
            }
            let file = format!("{}-{:02}.{ext}", scene.slug(), n + 1);
            std::fs::write(photos_dir.join(&file), &bytes).unwrap();
            total += bytes.len();
            photos.push(Photo {
                file,
                scene,
                alt: format!("{}, photo {}", scene.title(), n + 1),
            });
        }
    }

    let mut gallery = String::from(
        "<h2>Gallery</h2>\n<p>Sixty-six evenings at the Crown. Click a section for the story.</p>\n",
    );
    for scene in Scene::ALL {
        let _ = writeln!(
            gallery,
            "<section id=\"{slug}\">\n<h3><a href=\"/events/{slug}.html\">{title}</a></h3>\n<div class=\"grid\">",
            slug = scene.slug(),
            title = scene.title()
        );
        for photo in photos.iter().filter(|p| p.scene.slug() == scene.slug()) {
            let _ = writeln!(
                gallery,
                "<a href=\"/photos/{f}\"><img src=\"/photos/{f}\" alt=\"{a}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" loading=\"lazy\"></a>",
                f = photo.file,
                a = photo.alt
            );
        }
        gallery.push_str("</div>\n</section>\n");
    }
    std::fs::write(out.join("index.html"), page("Gallery", &gallery)).unwrap();

    std::fs::create_dir_all(out.join("events")).unwrap();
    let mut events = String::from("<h2>Events</h2>\n<ul>\n");
    for scene in Scene::ALL {
        let _ = writeln!(
            events,
            "<li><a href=\"/events/{}.html\">{}</a></li>",
            scene.slug(),
            scene.title()
        );
        let mut body = format!("<h2>{}</h2>\n<div class=\"grid\">\n", scene.title());
        for photo in photos.iter().filter(|p| p.scene.slug() == scene.slug()) {
            let _ = writeln!(
                body,
                "<img src=\"/photos/{}\" alt=\"{}\" width=\"{WIDTH}\" height=\"{HEIGHT}\">",
                photo.file, photo.alt
            );
        }
        body.push_str("</div>\n");
        std::fs::write(
            out.join("events").join(format!("{}.html", scene.slug())),
            page(scene.title(), &body),
        )
        .unwrap();
    }
    events.push_str("</ul>\n");
    std::fs::write(out.join("events.html"), page("Events", &events)).unwrap();
    std::fs::write(
        out.join("visit.html"),
        page(
            "Visit us",
            "<h2>Visit us</h2>\n<p>12 Harbour Street. Open noon till late, kitchen till nine.</p>\n",
        ),
    )
    .unwrap();
    std::fs::write(
        out.join("style.css"),
        "body{font-family:Georgia,serif;margin:0 auto;max-width:60rem;padding:1rem;background:#fbf7f0;color:#2b1d12}\n\
         header a{color:inherit;text-decoration:none}nav a{margin-right:1rem}\n\
         .grid{display:flex;flex-wrap:wrap;gap:.5rem}.grid img{border-radius:4px}\n\
         footer{margin-top:2rem;font-size:.9rem;color:#6b5a4a}\n",
    )
    .unwrap();
    println!(
        "wrote {} photos ({} KiB) and pages to {}",
        photos.len(),
        total / 1024,
        out.display()
    );
}
