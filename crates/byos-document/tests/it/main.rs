//! Documents read end to end: known text drawn into images (and PDFs), read through real
//! `ocr-worker` processes by Tesseract.
//!
//! This test binary is its own worker: run as `it ocr-worker` it serves OCR requests (the
//! harness is off, so nothing else writes to its stdout); run without arguments it runs the tests.

use std::io::Cursor;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use byos_document::{Detail, Format, OcrEngine, PageText, ReadError, SelectionState, Unit, read, sniff};
use byos_speech::workers::WorkerCommand;
use image::{GrayImage, ImageFormat, Luma};

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FIRST: [&str; 2] = ["The quick brown fox jumps over the lazy dog", "Document Intelligence reads every page"];
const SECOND: [&str; 1] = ["Invoice number 12345 totals 678.90 dollars"];

type Test = fn(&OcrEngine) -> Result<(), String>;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("ocr-worker") {
        if let Err(e) = byos_document::serve_ocr_worker() {
            eprintln!("ocr worker: {e}");
            std::process::exit(1);
        }
        return;
    }
    let tests: [(&str, Test); 19] = [
        ("png_text_is_read_where_it_was_drawn", png_text_is_read_where_it_was_drawn),
        ("jpeg_and_bmp_are_read", jpeg_and_bmp_are_read),
        ("a_sideways_photo_is_read_upright", a_sideways_photo_is_read_upright),
        ("a_two_page_tiff_gives_both_pages_in_order", a_two_page_tiff_gives_both_pages_in_order),
        ("pages_selects_pages", pages_selects_pages),
        ("limits_are_refused", limits_are_refused),
        ("a_huge_header_is_refused_without_decoding", a_huge_header_is_refused_without_decoding),
        ("a_crashing_worker_fails_the_read", a_crashing_worker_fails_the_read),
        ("a_missing_worker_fails_the_read", a_missing_worker_fails_the_read),
        ("sniff_tells_formats", sniff_tells_formats),
        ("a_blank_page_has_no_words", a_blank_page_has_no_words),
        ("a_text_pdf_gives_its_words_in_inches", a_text_pdf_gives_its_words_in_inches),
        ("a_scanned_pdf_page_is_read_by_ocr", a_scanned_pdf_page_is_read_by_ocr),
        ("an_image_on_a_text_page_is_read_too", an_image_on_a_text_page_is_read_too),
        ("a_searchable_scan_is_not_read_twice", a_searchable_scan_is_not_read_twice),
        (
            "regression_a_text_pdfs_ruled_table_and_check_boxes_were_not_found",
            regression_a_text_pdfs_ruled_table_and_check_boxes_were_not_found,
        ),
        ("an_encrypted_pdf_is_refused", an_encrypted_pdf_is_refused),
        ("a_damaged_pdf_is_corrupt", a_damaged_pdf_is_corrupt),
        ("a_pdf_of_too_many_pages_is_refused_quickly", a_pdf_of_too_many_pages_is_refused_quickly),
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Enough of libtest's command line for cargo test and cargo nextest: `--list` (none of the
    // tests is ignored), `--exact NAME`, a name filter.
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            tests.iter().for_each(|(name, _)| println!("{name}: test"));
        }
        return;
    }
    let exact = args.iter().any(|a| a == "--exact");
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned();
    let runtime = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    // Engines start their pools on this runtime; each test blocks on its reads.
    let _runtime = runtime.enter();
    let mut failed = Vec::new();
    for (name, test) in tests {
        if filter.as_deref().is_some_and(|f| if exact { name != f } else { !name.contains(f) }) {
            continue;
        }
        let started = Instant::now();
        let engine = OcrEngine::start(worker(), 2, Duration::from_secs(60));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| test(&engine)));
        match outcome {
            Ok(Ok(())) => println!("test {name} ... ok ({:.1} s)", started.elapsed().as_secs_f64()),
            Ok(Err(e)) => {
                println!("test {name} ... FAILED: {e}");
                failed.push(name);
            }
            Err(_) => {
                println!("test {name} ... FAILED (panicked)");
                failed.push(name);
            }
        }
    }
    if !failed.is_empty() {
        println!("failed: {failed:?}");
        std::process::exit(1);
    }
}

fn worker() -> WorkerCommand {
    let program = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    WorkerCommand { program, args: vec!["ocr-worker".into()] }
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Handle::current().block_on(future)
}

fn read_all(
    engine: &OcrEngine,
    bytes: &[u8],
    pages: Option<&[RangeInclusive<u32>]>,
) -> Result<Vec<PageText>, ReadError> {
    block_on(read(engine, bytes, pages, Detail::Text))
}

/// Where a word was drawn: left, top, right, bottom in pixels.
type Drawn = Vec<(String, [f32; 4])>;

/// `paragraphs` of lines drawn in black DejaVu Sans 40 px on white, 1700 x 1100 (a page at 200 dpi).
fn draw(paragraphs: &[&[&str]]) -> (GrayImage, Drawn) {
    let bytes = std::fs::read(FONT).unwrap_or_else(|e| panic!("{FONT}: {e} (install fonts-dejavu-core)"));
    let font = FontRef::try_from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
    let scaled = font.as_scaled(PxScale::from(40.0));
    let mut image = GrayImage::from_pixel(1700, 1100, Luma([255]));
    let mut drawn = Vec::new();
    let mut baseline = 150.0;
    for paragraph in paragraphs {
        for line in *paragraph {
            let mut x = 120.0;
            for word in line.split(' ') {
                let start = x;
                for c in word.chars() {
                    let glyph = scaled.scaled_glyph(c);
                    let advance = scaled.h_advance(glyph.id);
                    let glyph = glyph.id.with_scale_and_position(40.0, point(x, baseline));
                    if let Some(outline) = font.outline_glyph(glyph) {
                        let bounds = outline.px_bounds();
                        outline.draw(|gx, gy, coverage| {
                            let (px, py) = (bounds.min.x as i64 + gx as i64, bounds.min.y as i64 + gy as i64);
                            if let Some(p) = image.get_pixel_mut_checked(px as u32, py as u32) {
                                p.0[0] = p.0[0].min((255.0 * (1.0 - coverage)) as u8);
                            }
                        });
                    }
                    x += advance;
                }
                drawn.push((word.to_owned(), [start, baseline - scaled.ascent(), x, baseline - scaled.descent()]));
                x += scaled.h_advance(scaled.glyph_id(' '));
            }
            baseline += 48.0;
        }
        baseline += 200.0;
    }
    (image, drawn)
}

fn encode(image: &GrayImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap_or_else(|e| panic!("{e}"));
    out.into_inner()
}

fn tiff_pages(pages: &[&GrayImage]) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    let mut tiff = tiff::encoder::TiffEncoder::new(&mut out).unwrap_or_else(|e| panic!("{e}"));
    for page in pages {
        tiff.write_image::<tiff::encoder::colortype::Gray8>(page.width(), page.height(), page.as_raw())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    out.into_inner()
}

fn levenshtein(a: &[char], b: &[char]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(previous + cost);
            previous = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// 1 - edit distance / length of the words read against the words drawn, joined by spaces.
fn accuracy(page: &PageText, drawn: &Drawn) -> f64 {
    let read: Vec<char> = page.words.iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(" ").chars().collect();
    let expected: Vec<char> = drawn.iter().map(|(w, _)| w.as_str()).collect::<Vec<_>>().join(" ").chars().collect();
    1.0 - levenshtein(&read, &expected) as f64 / expected.len() as f64
}

fn check(condition: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if condition { Ok(()) } else { Err(what()) }
}

/// The page read the text drawn: accuracy, where each word lies, confidence, lines, paragraphs.
fn check_page(label: &str, page: &PageText, drawn: &Drawn, paragraphs: &[usize]) -> Result<(), String> {
    let accuracy = accuracy(page, drawn);
    println!("  {label}: character accuracy {:.1}% ({} words)", accuracy * 100.0, page.words.len());
    check(accuracy >= 0.95, || format!("{label}: accuracy {accuracy:.3}: {:?}", texts(page)))?;
    check(page.unit == Unit::Pixel && page.width == 1700.0 && page.height == 1100.0, || format!("{page:?}"))?;
    for word in &page.words {
        check((0.0..=1.0).contains(&word.confidence), || format!("confidence {}", word.confidence))?;
        let Some((_, [l, t, r, b])) = drawn.iter().find(|(w, _)| *w == word.text) else { continue };
        let [x0, y0, x1, y1] = [word.polygon[0], word.polygon[1], word.polygon[4], word.polygon[5]];
        let close = |a: f64, b: f32| (a - f64::from(b)).abs() <= 15.0;
        check(close(x0, *l) && close(x1, *r) && x0 < x1, || format!("{}: x {x0}..{x1}, drawn {l}..{r}", word.text))?;
        check(y0 >= f64::from(*t) - 15.0 && y1 <= f64::from(*b) + 15.0 && y0 < y1, || {
            format!("{}: y {y0}..{y1}, drawn {t}..{b}", word.text)
        })?;
        let clockwise = word.polygon[2] > word.polygon[0] && word.polygon[5] > word.polygon[3];
        check(clockwise && word.polygon[6] == word.polygon[0], || format!("{:?}", word.polygon))?;
    }
    let lines: Vec<usize> = page.paragraphs.iter().map(|p| p.lines.len()).collect();
    check(lines == paragraphs, || format!("{label}: lines per paragraph {lines:?}, drawn {paragraphs:?}"))?;
    let words_in_lines: usize = page.lines.iter().map(|l| l.words.len()).sum();
    check(words_in_lines == page.words.len(), || format!("{label}: lines cover {words_in_lines} words"))?;
    let first_line = &page.lines[0];
    check(first_line.words.len() == FIRST[0].split(' ').count(), || format!("{label}: first line {first_line:?}"))
}

fn texts(page: &PageText) -> Vec<&str> {
    page.words.iter().map(|w| w.text.as_str()).collect()
}

fn png_text_is_read_where_it_was_drawn(engine: &OcrEngine) -> Result<(), String> {
    let (image, drawn) = draw(&[&FIRST, &SECOND]);
    let pages = read_all(engine, &encode(&image, ImageFormat::Png), None).map_err(|e| e.to_string())?;
    check(pages.len() == 1 && pages[0].number == 1, || format!("{} pages", pages.len()))?;
    check_page("PNG", &pages[0], &drawn, &[2, 1])
}

fn jpeg_and_bmp_are_read(engine: &OcrEngine) -> Result<(), String> {
    let (image, drawn) = draw(&[&FIRST, &SECOND]);
    for (label, format) in [("JPEG", ImageFormat::Jpeg), ("BMP", ImageFormat::Bmp)] {
        let pages = read_all(engine, &encode(&image, format), None).map_err(|e| format!("{label}: {e}"))?;
        check_page(label, &pages[0], &drawn, &[2, 1])?;
    }
    Ok(())
}

/// A JPEG stored turned a quarter to the left with EXIF orientation 6 (show it turned right).
fn a_sideways_photo_is_read_upright(engine: &OcrEngine) -> Result<(), String> {
    let (image, drawn) = draw(&[&FIRST, &SECOND]);
    let mut jpeg = encode(&image::imageops::rotate270(&image), ImageFormat::Jpeg);
    // After the JFIF segment: APP1 "Exif", a big-endian TIFF header and one IFD entry,
    // Orientation (0x0112) SHORT 6.
    let mut exif = vec![0xFF, 0xE1, 0, 34];
    exif.extend_from_slice(b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0");
    let after_jfif = 4 + usize::from(u16::from_be_bytes([jpeg[4], jpeg[5]]));
    jpeg.splice(after_jfif..after_jfif, exif);
    let pages = read_all(engine, &jpeg, None).map_err(|e| e.to_string())?;
    check_page("JPEG turned by EXIF", &pages[0], &drawn, &[2, 1])
}

fn a_two_page_tiff_gives_both_pages_in_order(engine: &OcrEngine) -> Result<(), String> {
    let (one, drawn_one) = draw(&[&FIRST, &SECOND]);
    let (two, drawn_two) = draw(&[&SECOND, &FIRST]);
    let pages = read_all(engine, &tiff_pages(&[&one, &two]), None).map_err(|e| e.to_string())?;
    let numbers: Vec<u32> = pages.iter().map(|p| p.number).collect();
    check(numbers == [1, 2], || format!("pages {numbers:?}"))?;
    check_page("TIFF page 1", &pages[0], &drawn_one, &[2, 1])?;
    let second = &pages[1];
    check(accuracy(second, &drawn_two) >= 0.95, || format!("TIFF page 2: {:?}", texts(second)))?;
    check(second.words[0].text == "Invoice", || format!("TIFF page 2 starts {:?}", texts(second)))
}

fn pages_selects_pages(engine: &OcrEngine) -> Result<(), String> {
    let (one, _) = draw(&[&FIRST]);
    let (two, _) = draw(&[&SECOND]);
    let tiff = tiff_pages(&[&one, &two, &one]);
    let pages = read_all(engine, &tiff, Some(&[2..=2, 3..=9])).map_err(|e| e.to_string())?;
    let numbers: Vec<u32> = pages.iter().map(|p| p.number).collect();
    check(numbers == [2, 3], || format!("pages {numbers:?}"))?;
    check(pages[0].words[0].text == "Invoice", || format!("page 2 reads {:?}", texts(&pages[0])))?;
    let beyond = read_all(engine, &tiff, Some(&[4..=5]));
    check(matches!(beyond, Err(ReadError::Pages(_))), || format!("pages 4-5 of 3: {beyond:?}"))
}

fn limits_are_refused(engine: &OcrEngine) -> Result<(), String> {
    let empty = read_all(engine, &[], None);
    check(empty == Err(ReadError::Empty), || format!("empty: {empty:?}"))?;
    let tiny = encode(&GrayImage::from_pixel(10, 10, Luma([255])), ImageFormat::Png);
    let tiny = read_all(engine, &tiny, None);
    check(tiny == Err(ReadError::Dimensions { width: 10, height: 10 }), || format!("10x10: {tiny:?}"))?;
    let mut png = encode(&draw(&[&FIRST]).0, ImageFormat::Png);
    let len = png.len();
    png[len / 2..].iter_mut().for_each(|b| *b = b.wrapping_mul(7).wrapping_add(3));
    let corrupt = read_all(engine, &png, None);
    check(matches!(corrupt, Err(ReadError::Corrupt(_))), || format!("corrupt PNG: {corrupt:?}"))?;
    let random: Vec<u8> = (0u32..4096).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let random = read_all(engine, &random, None);
    check(matches!(random, Err(ReadError::Unsupported(_))), || format!("random bytes: {random:?}"))
}

/// A PNG whose header says 100,000 x 100,000 (10 GB of pixels) and whose data is a few bytes.
fn a_huge_header_is_refused_without_decoding(engine: &OcrEngine) -> Result<(), String> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    let idat = b"IDAT\x78\x9c";
    png.extend_from_slice(&2u32.to_be_bytes());
    png.extend_from_slice(idat);
    png.extend_from_slice(&crc32(idat).to_be_bytes());
    png.extend_from_slice(&[0, 0, 0, 0]);
    png.extend_from_slice(b"IEND");
    png.extend_from_slice(&crc32(b"IEND").to_be_bytes());
    let started = Instant::now();
    let huge = read_all(engine, &png, None);
    check(huge == Err(ReadError::Dimensions { width: 100_000, height: 100_000 }), || format!("{huge:?}"))?;
    check(started.elapsed() < Duration::from_secs(1), || format!("took {:?}", started.elapsed()))
}

fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, &b| {
        (0..8).fold(crc ^ u32::from(b), |c, _| if c & 1 != 0 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 })
    })
}

/// A worker that dies on its first request fails the document with an engine error.
fn a_crashing_worker_fails_the_read(_: &OcrEngine) -> Result<(), String> {
    let dies =
        WorkerCommand { program: "/bin/sh".into(), args: vec!["-c".into(), "head -c 5 >/dev/null; exit 3".into()] };
    let engine = OcrEngine::start(dies, 1, Duration::from_secs(10));
    let png = encode(&draw(&[&FIRST]).0, ImageFormat::Png);
    let crashed = read_all(&engine, &png, None);
    check(matches!(crashed, Err(ReadError::Engine(_))), || format!("{crashed:?}"))?;
    let hangs = WorkerCommand { program: "/bin/sh".into(), args: vec!["-c".into(), "exec sleep 60".into()] };
    let engine = OcrEngine::start(hangs, 1, Duration::from_millis(500));
    let hung = read_all(&engine, &png, None);
    check(matches!(hung, Err(ReadError::Engine(_))), || format!("{hung:?}"))
}

fn a_missing_worker_fails_the_read(_: &OcrEngine) -> Result<(), String> {
    let missing = WorkerCommand { program: "/nonexistent/byos".into(), args: vec![] };
    let engine = OcrEngine::start(missing, 1, Duration::from_secs(10));
    let png = encode(&draw(&[&FIRST]).0, ImageFormat::Png);
    let outcome = read_all(&engine, &png, None);
    check(matches!(outcome, Err(ReadError::Engine(_))), || format!("{outcome:?}"))
}

fn sniff_tells_formats(_: &OcrEngine) -> Result<(), String> {
    let image = GrayImage::from_pixel(60, 60, Luma([255]));
    let cases = [
        (encode(&image, ImageFormat::Png), Some(Format::Png)),
        (encode(&image, ImageFormat::Jpeg), Some(Format::Jpeg)),
        (encode(&image, ImageFormat::Bmp), Some(Format::Bmp)),
        (tiff_pages(&[&image]), Some(Format::Tiff)),
        (b"%PDF-1.7\n".to_vec(), Some(Format::Pdf)),
        (b"GIF89a......".to_vec(), None),
        (b"PK\x03\x04 a zip".to_vec(), None),
        (b"hello".to_vec(), None),
        (Vec::new(), None),
    ];
    for (bytes, expected) in cases {
        let told = sniff(&bytes);
        check(told == expected, || format!("{:?}: {told:?}, not {expected:?}", &bytes[..bytes.len().min(8)]))?;
    }
    Ok(())
}

fn a_blank_page_has_no_words(engine: &OcrEngine) -> Result<(), String> {
    let blank = encode(&GrayImage::from_pixel(800, 600, Luma([255])), ImageFormat::Png);
    let pages = read_all(engine, &blank, None).map_err(|e| e.to_string())?;
    check(pages.len() == 1 && pages[0].words.is_empty() && pages[0].lines.is_empty(), || format!("{pages:?}"))
}

/// A PDF of `objects` (numbered from 1; the first is the catalog), with its cross-reference table.
fn pdf(objects: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(object);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    let trailer = format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1);
    out.extend_from_slice(trailer.as_bytes());
    out
}

fn stream(dictionary: &str, data: &[u8]) -> Vec<u8> {
    let mut object = format!("<< {dictionary} /Length {} >>\nstream\n", data.len()).into_bytes();
    object.extend_from_slice(data);
    object.extend_from_slice(b"\nendstream");
    object
}

/// Two pages: page 1 text in Helvetica 24 pt (US letter), page 2 the drawn image only (a scan
/// at 200 dpi: 8.5 x 5.5 in).
fn two_page_pdf(scan: &GrayImage) -> Vec<u8> {
    let text = b"BT /F1 24 Tf 72 700 Td (Hello byos world) Tj ET\nBT /F1 24 Tf 72 664 Td (Second line here) Tj ET\n\
BT /F1 24 Tf 72 500 Td (Another paragraph) Tj ET";
    let objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R 6 0 R] /Count 2 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"
            .to_vec(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
        stream("", text),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 396] /Resources << /XObject << /Im1 7 0 R >> >> /Contents 8 0 R >>"
            .to_vec(),
        stream(
            &format!("/Type /XObject /Subtype /Image /Width {} /Height {} /ColorSpace /DeviceGray /BitsPerComponent 8", scan.width(), scan.height()),
            scan.as_raw(),
        ),
        stream("", b"q 612 0 0 396 0 0 cm /Im1 Do Q"),
    ];
    pdf(&objects)
}

fn a_text_pdf_gives_its_words_in_inches(engine: &OcrEngine) -> Result<(), String> {
    let (scan, _) = draw(&[&FIRST]);
    let pages = read_all(engine, &two_page_pdf(&scan), Some(&[1..=1])).map_err(|e| e.to_string())?;
    check(pages.len() == 1, || format!("{} pages", pages.len()))?;
    let page = &pages[0];
    check(page.unit == Unit::Inch && page.width == 8.5 && page.height == 11.0, || format!("{page:?}"))?;
    let words = texts(page);
    check(words == ["Hello", "byos", "world", "Second", "line", "here", "Another", "paragraph"], || {
        format!("{words:?}")
    })?;
    let hello = page.words[0].polygon;
    println!("  text PDF: 'Hello' at {hello:?} in");
    // Drawn at x = 72 pt (1 in), baseline 92 pt from the top (1.28 in), 24 pt high.
    check((hello[0] - 1.0).abs() < 0.05 && hello[1] > 0.9 && hello[5] < 1.45 && hello[1] < hello[5], || {
        format!("{hello:?}")
    })?;
    check(page.words.iter().all(|w| w.confidence == 1.0), || "confidence".into())?;
    let lines: Vec<usize> = page.lines.iter().map(|l| l.words.len()).collect();
    check(lines == [3, 3, 2], || format!("words per line {lines:?}"))?;
    let paragraphs: Vec<usize> = page.paragraphs.iter().map(|p| p.lines.len()).collect();
    check(paragraphs == [2, 1], || format!("lines per paragraph {paragraphs:?}"))
}

/// A text page (US Letter) with `text` (content operators) over `scan` drawn on its lower half
/// (8.5 x 5.5 in).
fn text_and_image_pdf(text: &[u8], scan: &GrayImage) -> Vec<u8> {
    text_and_image_pdf_in(text, scan, "/MediaBox [0 0 612 792]")
}

/// The same on a page of these boxes (`/MediaBox ...`, `/CropBox ...`).
fn text_and_image_pdf_in(text: &[u8], scan: &GrayImage, boxes: &str) -> Vec<u8> {
    let content = [b"q 612 0 0 396 0 0 cm /Im1 Do Q\n".as_slice(), text].concat();
    let objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        format!("<< /Type /Page /Parent 2 0 R {boxes} /Resources << /Font << /F1 4 0 R >> /XObject << /Im1 5 0 R >> >> /Contents 6 0 R >>")
            .into_bytes(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
        stream(
            &format!("/Type /XObject /Subtype /Image /Width {} /Height {} /ColorSpace /DeviceGray /BitsPerComponent 8", scan.width(), scan.height()),
            scan.as_raw(),
        ),
        stream("", &content),
    ];
    pdf(&objects)
}

fn an_image_on_a_text_page_is_read_too(engine: &OcrEngine) -> Result<(), String> {
    let (scan, drawn) = draw(&[&SECOND]);
    let document = text_and_image_pdf(b"BT /F1 24 Tf 72 700 Td (Hello byos world) Tj ET", &scan);
    let pages = read_all(engine, &document, None).map_err(|e| e.to_string())?;
    let page = &pages[0];
    let words = texts(page);
    check(words.len() > 3 && words[..3] == ["Hello", "byos", "world"], || format!("{words:?}"))?;
    let pictured = PageText { words: page.words[3..].to_vec(), ..page.clone() };
    let accuracy = accuracy(&pictured, &drawn);
    println!("  image on a text page: character accuracy {:.1}%", accuracy * 100.0);
    check(accuracy >= 0.95, || format!("accuracy {accuracy:.3}: {words:?}"))?;
    // The image covers the lower half (5.5 to 11 in); its first line was drawn at 150 / 200 in.
    let invoice = &page.words[3].polygon;
    check(invoice[1] > 5.5 + 0.5 && invoice[5] < 5.5 + 1.0 && (invoice[0] - 0.6).abs() < 0.1, || {
        format!("'{}' at {invoice:?}", page.words[3].text)
    })?;
    let words_in_lines: usize = page.lines.iter().map(|l| l.words.len()).sum();
    check(words_in_lines == page.words.len() && page.paragraphs.len() >= 2, || format!("{:?}", page.lines))?;
    // A crop box off the media box's corner moves everything 0.5 in up and left: the image's
    // words too (they are cut where Poppler renders the image).
    let boxes = "/MediaBox [0 0 612 792] /CropBox [36 36 576 756]";
    let cropped = text_and_image_pdf_in(b"BT /F1 24 Tf 72 700 Td (Hello byos world) Tj ET", &scan, boxes);
    let cropped = read_all(engine, &cropped, None).map_err(|e| e.to_string())?;
    let words = &cropped[0].words;
    check(words.len() > 3 && words[3].text == "Invoice", || format!("cropped: {:?}", texts(&cropped[0])))?;
    let (hello, invoice) = (&words[0].polygon, &words[3].polygon);
    check((hello[0] - 0.5).abs() < 0.05 && (invoice[0] - (page.words[3].polygon[0] - 0.5)).abs() < 0.05, || {
        format!("cropped: 'Hello' at {hello:?}, 'Invoice' at {invoice:?}")
    })?;
    check((invoice[1] - (page.words[3].polygon[1] - 0.5)).abs() < 0.05, || format!("cropped: 'Invoice' at {invoice:?}"))
}

fn a_searchable_scan_is_not_read_twice(engine: &OcrEngine) -> Result<(), String> {
    let (scan, _) = draw(&[&SECOND]);
    // Invisible text (render mode 3) over the image: the scan's own text layer.
    let text = b"BT /F1 24 Tf 72 700 Td (Hello) Tj ET BT 3 Tr /F1 24 Tf 72 300 Td (Invoice number) Tj ET";
    let pages = read_all(engine, &text_and_image_pdf(text, &scan), None).map_err(|e| e.to_string())?;
    check(texts(&pages[0]) == ["Hello", "Invoice", "number"], || format!("{:?}", texts(&pages[0])))
}

/// A text page (Helvetica 14 pt) with a ruled 2 x 2 table drawn around its words, and two check
/// boxes (14 pt squares), the second crossed.
fn ruled_text_pdf() -> Vec<u8> {
    let content = b"1 w 72 600 300 80 re S 222 600 m 222 680 l S 72 640 m 372 640 l S\n\
BT /F1 14 Tf 80 655 Td (Name) Tj ET BT /F1 14 Tf 230 655 Td (Total) Tj ET\n\
BT /F1 14 Tf 80 615 Td (Ada) Tj ET BT /F1 14 Tf 230 615 Td (42) Tj ET\n\
400 650 14 14 re S 400 610 14 14 re S 403 613 m 411 621 l 403 621 m 411 613 l S\n\
BT /F1 14 Tf 420 652 Td (Yes) Tj ET BT /F1 14 Tf 420 612 Td (No) Tj ET";
    let objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"
            .to_vec(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
        stream("", content),
    ];
    pdf(&objects)
}

fn regression_a_text_pdfs_ruled_table_and_check_boxes_were_not_found(engine: &OcrEngine) -> Result<(), String> {
    let text_only = read_all(engine, &ruled_text_pdf(), None).map_err(|e| e.to_string())?;
    check(text_only[0].tables.is_empty() && text_only[0].selection_marks.is_empty(), || "read as text".into())?;
    let pages = block_on(read(engine, &ruled_text_pdf(), None, Detail::Layout)).map_err(|e| e.to_string())?;
    let page = &pages[0];
    check(texts(page) == ["Name", "Total", "Yes", "Ada", "42", "No"], || format!("{:?}", texts(page)))?;
    check(page.tables.len() == 1, || format!("tables {:?}", page.tables))?;
    let table = &page.tables[0];
    check((table.rows, table.columns) == (2, 2), || format!("{table:?}"))?;
    let cells: Vec<Vec<&str>> =
        table.cells.iter().map(|c| c.words.iter().map(|&w| page.words[w].text.as_str()).collect()).collect();
    check(cells == [vec!["Name"], vec!["Total"], vec!["Ada"], vec!["42"]], || format!("cells {cells:?}"))?;
    // The table spans 72 to 372 pt across (1 to 5.17 in), in the page's inches like its words.
    check((table.polygon[0] - 1.0).abs() < 0.05 && (table.polygon[2] - 372.0 / 72.0).abs() < 0.05, || {
        format!("table at {:?}", table.polygon)
    })?;
    let mut marks: Vec<_> = page.selection_marks.iter().map(|m| (m.polygon[1], m.state)).collect();
    marks.sort_by(|a, b| a.0.total_cmp(&b.0));
    let states: Vec<_> = marks.iter().map(|(_, state)| *state).collect();
    check(states == [SelectionState::Unselected, SelectionState::Selected], || format!("marks {marks:?}"))
}

fn a_scanned_pdf_page_is_read_by_ocr(engine: &OcrEngine) -> Result<(), String> {
    let (scan, drawn) = draw(&[&FIRST, &SECOND]);
    let pages = read_all(engine, &two_page_pdf(&scan), None).map_err(|e| e.to_string())?;
    let numbers: Vec<u32> = pages.iter().map(|p| p.number).collect();
    check(numbers == [1, 2], || format!("pages {numbers:?}"))?;
    let page = &pages[1];
    check(page.unit == Unit::Inch && page.width == 8.5 && page.height == 5.5, || format!("{page:?}"))?;
    let accuracy = accuracy(page, &drawn);
    println!("  scanned PDF page: character accuracy {:.1}% ({} words)", accuracy * 100.0, page.words.len());
    check(accuracy >= 0.95, || format!("scanned page: {:?}", texts(page)))?;
    // The image fills the page at 200 dpi: its pixels / 200 are inches.
    for word in &page.words {
        let Some((_, [l, t, r, b])) = drawn.iter().find(|(w, _)| *w == word.text) else { continue };
        let [x0, y0, x1, y1] = [word.polygon[0], word.polygon[1], word.polygon[4], word.polygon[5]];
        let near = |inches: f64, pixels: f32| (inches - f64::from(pixels) / 200.0).abs() <= 0.1;
        check(near(x0, *l) && near(x1, *r) && near(y0, *t) && near(y1, *b), || {
            format!("{}: {:?}", word.text, word.polygon)
        })?;
        check((0.0..=1.0).contains(&word.confidence), || format!("confidence {}", word.confidence))?;
    }
    let paragraphs: Vec<usize> = page.paragraphs.iter().map(|p| p.lines.len()).collect();
    check(paragraphs == [2, 1], || format!("lines per paragraph {paragraphs:?}"))
}

/// Encrypted with a user password by Debian's qpdf (scripts/test.sh installs it).
fn an_encrypted_pdf_is_refused(engine: &OcrEngine) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("byos-document-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (plain, locked) = (dir.join("plain.pdf"), dir.join("locked.pdf"));
    std::fs::write(&plain, two_page_pdf(&draw(&[&FIRST]).0)).map_err(|e| e.to_string())?;
    let encrypted = std::process::Command::new("qpdf")
        .args(["--encrypt", "secret", "owner", "256", "--"])
        .arg(&plain)
        .arg(&locked)
        .status()
        .is_ok_and(|s| s.success());
    check(encrypted, || "qpdf could not encrypt the test PDF (install Debian's qpdf)".into())?;
    let bytes = std::fs::read(&locked).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    let outcome = read_all(engine, &bytes, None);
    check(outcome == Err(ReadError::Encrypted), || format!("{outcome:?}"))
}

fn a_damaged_pdf_is_corrupt(engine: &OcrEngine) -> Result<(), String> {
    let outcome = read_all(engine, b"%PDF-1.7\nthis is not a PDF at all\n%%EOF\n", None);
    check(matches!(outcome, Err(ReadError::Corrupt(_))), || format!("{outcome:?}"))
}

/// 10,001 pages (one shared empty content stream): refused from the count, no page read.
fn a_pdf_of_too_many_pages_is_refused_quickly(engine: &OcrEngine) -> Result<(), String> {
    const PAGES: usize = 10_001;
    let kids: Vec<String> = (0..PAGES).map(|i| format!("{} 0 R", i + 4)).collect();
    let mut objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        format!("<< /Type /Pages /Kids [{}] /Count {PAGES} >>", kids.join(" ")).into_bytes(),
        stream("", b""),
    ];
    let page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R >>";
    objects.extend(std::iter::repeat_n(page.to_vec(), PAGES));
    let started = Instant::now();
    let outcome = read_all(engine, &pdf(&objects), None);
    let expected = Err(ReadError::TooManyPages { pages: PAGES as u64, limit: 2000 });
    check(outcome == expected, || format!("{outcome:?}"))?;
    check(started.elapsed() < Duration::from_secs(5), || format!("took {:?}", started.elapsed()))
}
