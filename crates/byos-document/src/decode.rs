//! Images (JPEG, PNG, BMP, TIFF with its pages) into 8-bit gray pages, one page at a time, their
//! size checked from the header before anything is decoded.

use std::io::Cursor;

use image::{ImageDecoder, ImageReader};
use tiff::decoder::{Decoder, DecodingResult};
use tiff::tags::{PhotometricInterpretation, Tag};

use crate::{Format, MAX_PAGES, ReadError};

/// Azure's image limits, each side in pixels.
pub(crate) const MIN_SIDE: u32 = 50;
pub(crate) const MAX_SIDE: u32 = 10_000;

/// One page as the engine reads it: 8-bit gray, row by row.
pub(crate) struct GrayPage {
    pub width: u32,
    pub height: u32,
    /// Dots per inch the file states, 0 when it does not.
    pub dpi: u32,
    pub pixels: Vec<u8>,
}

pub(crate) fn sniff(bytes: &[u8]) -> Option<Format> {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(b"%PDF-") {
        Some(Format::Pdf)
    } else if starts(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if starts(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if starts(b"BM") && bytes.len() >= 26 {
        Some(Format::Bmp)
    } else if starts(b"II*\0") || starts(b"MM\0*") || starts(b"II+\0") || starts(b"MM\0+") {
        Some(Format::Tiff)
    } else {
        None
    }
}

fn corrupt(e: impl std::fmt::Display) -> ReadError {
    ReadError::Corrupt(e.to_string())
}

pub(crate) fn check_dimensions(width: u32, height: u32) -> Result<(), ReadError> {
    let side = MIN_SIDE..=MAX_SIDE;
    if side.contains(&width) && side.contains(&height) {
        Ok(())
    } else {
        Err(ReadError::Dimensions { width: width.into(), height: height.into() })
    }
}

/// How many pages the image has, every page's size checked from its header (nothing decoded).
pub(crate) fn count_pages(bytes: &[u8], format: Format) -> Result<u32, ReadError> {
    if format != Format::Tiff {
        let reader = ImageReader::with_format(Cursor::new(bytes), image_format(format)?);
        let (width, height) = reader.into_dimensions().map_err(corrupt)?;
        check_dimensions(width, height)?;
        return Ok(1);
    }
    let mut tiff = Decoder::new(Cursor::new(bytes)).map_err(corrupt)?;
    let mut pages = 0u32;
    loop {
        pages += 1;
        if u64::from(pages) > MAX_PAGES {
            return Err(ReadError::TooManyPages { pages: u64::from(pages), limit: MAX_PAGES });
        }
        let (width, height) = tiff.dimensions().map_err(corrupt)?;
        check_dimensions(width, height)?;
        if !tiff.more_images() {
            return Ok(pages);
        }
        tiff.next_image().map_err(corrupt)?;
    }
}

fn image_format(format: Format) -> Result<image::ImageFormat, ReadError> {
    match format {
        Format::Jpeg => Ok(image::ImageFormat::Jpeg),
        Format::Png => Ok(image::ImageFormat::Png),
        Format::Bmp => Ok(image::ImageFormat::Bmp),
        Format::Tiff => Ok(image::ImageFormat::Tiff),
        Format::Pdf => Err(ReadError::Unsupported("a PDF is not an image".into())),
    }
}

/// Decodes the `wanted` pages (1-based, ascending) one at a time, handing each to `page`; stops
/// early when `page` answers false (nobody wants the rest).
pub(crate) fn decode_pages(
    bytes: &[u8],
    format: Format,
    wanted: &[u32],
    mut page: impl FnMut(u32, Result<GrayPage, ReadError>) -> bool,
) {
    if format != Format::Tiff {
        if wanted.contains(&1) {
            page(1, decode_single(bytes, format));
        }
        return;
    }
    let mut tiff = match Decoder::new(Cursor::new(bytes)) {
        Ok(tiff) => tiff,
        Err(e) => {
            page(wanted.first().copied().unwrap_or(1), Err(corrupt(e)));
            return;
        }
    };
    let mut number = 1;
    for &want in wanted {
        while number < want {
            if let Err(e) = tiff.next_image() {
                page(want, Err(corrupt(e)));
                return;
            }
            number += 1;
        }
        if !page(want, decode_tiff_page(&mut tiff)) {
            return;
        }
    }
}

fn decode_single(bytes: &[u8], format: Format) -> Result<GrayPage, ReadError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format(format)?);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    // Phone photos are stored sideways with an EXIF orientation: read them as they are shown.
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut decoded = image::DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    decoded.apply_orientation(orientation);
    let gray = decoded.into_luma8();
    let (width, height) = gray.dimensions();
    Ok(GrayPage { width, height, dpi: stated_dpi(bytes, format), pixels: gray.into_raw() })
}

fn decode_tiff_page(tiff: &mut Decoder<Cursor<&[u8]>>) -> Result<GrayPage, ReadError> {
    let (width, height) = tiff.dimensions().map_err(corrupt)?;
    check_dimensions(width, height)?;
    let color = tiff.colortype().map_err(corrupt)?;
    let white_is_zero = tiff.find_tag_unsigned::<u16>(Tag::PhotometricInterpretation).ok().flatten()
        == Some(PhotometricInterpretation::WhiteIsZero.to_u16());
    let dpi = tiff_dpi(tiff);
    let image = tiff.read_image().map_err(corrupt)?;
    let mut pixels = tiff_gray(image, color, width, height)?;
    if white_is_zero {
        pixels.iter_mut().for_each(|p| *p = 255 - *p);
    }
    Ok(GrayPage { width, height, dpi, pixels })
}

/// A TIFF page's samples as 8-bit gray (luma of RGB, alpha ignored, 16-bit scaled, 1-bit expanded).
fn tiff_gray(image: DecodingResult, color: tiff::ColorType, width: u32, height: u32) -> Result<Vec<u8>, ReadError> {
    use tiff::ColorType as C;
    let pixels = width as usize * height as usize;
    let samples: Vec<u8> = match image {
        DecodingResult::U8(v) => v,
        DecodingResult::U16(v) => v.into_iter().map(|s| (s >> 8) as u8).collect(),
        _ => return Err(ReadError::Unsupported(format!("TIFF samples of {color:?}"))),
    };
    let channels = match color {
        C::Gray(1) => return Ok(expand_bits(&samples, width as usize, height as usize)),
        C::Gray(8 | 16) => 1,
        C::GrayA(8 | 16) => 2,
        C::RGB(8 | 16) => 3,
        C::RGBA(8 | 16) => 4,
        other => return Err(ReadError::Unsupported(format!("TIFF pages of {other:?}"))),
    };
    if samples.len() < pixels * channels {
        return Err(ReadError::Corrupt("a TIFF page has fewer samples than pixels".into()));
    }
    Ok(samples.chunks_exact(channels).take(pixels).map(|px| luma(px, channels)).collect())
}

fn luma(px: &[u8], channels: usize) -> u8 {
    if channels < 3 {
        return px[0];
    }
    let [r, g, b] = [px[0], px[1], px[2]].map(u32::from);
    ((r * 299 + g * 587 + b * 114) / 1000) as u8
}

/// 1-bit rows (each padded to a byte, 1 = white for BlackIsZero) into 8-bit gray.
fn expand_bits(bits: &[u8], width: usize, height: usize) -> Vec<u8> {
    let row = width.div_ceil(8);
    let mut out = Vec::with_capacity(width * height);
    for y in 0..height {
        for x in 0..width {
            let byte = bits.get(y * row + x / 8).copied().unwrap_or(0);
            out.push(if byte & (0x80 >> (x % 8)) != 0 { 255 } else { 0 });
        }
    }
    out
}

fn tiff_dpi(tiff: &mut Decoder<Cursor<&[u8]>>) -> u32 {
    use tiff::decoder::ifd::Value;
    let resolution = match tiff.find_tag(Tag::XResolution) {
        Ok(Some(Value::Rational(n, d))) if d > 0 => f64::from(n) / f64::from(d),
        Ok(Some(Value::Double(v))) => v,
        Ok(Some(Value::Float(v))) => f64::from(v),
        _ => return 0,
    };
    // ResolutionUnit: 2 inch (the default), 3 centimetre, 1 none.
    match tiff.find_tag_unsigned::<u16>(Tag::ResolutionUnit).ok().flatten().unwrap_or(2) {
        2 => plausible_dpi(resolution),
        3 => plausible_dpi(resolution * 2.54),
        _ => 0,
    }
}

/// The resolution a PNG (pHYs), JPEG (JFIF) or BMP header states, 0 when it states none.
fn stated_dpi(bytes: &[u8], format: Format) -> u32 {
    match format {
        Format::Png => png_dpi(bytes),
        Format::Jpeg if bytes.get(6..11) == Some(b"JFIF\0") => {
            let density = bytes.get(14..16).map(|d| u16::from_be_bytes([d[0], d[1]])).unwrap_or(0);
            match bytes.get(13) {
                Some(1) => plausible_dpi(f64::from(density)),
                Some(2) => plausible_dpi(f64::from(density) * 2.54),
                _ => 0,
            }
        }
        Format::Bmp => {
            // BITMAPINFOHEADER's biXPelsPerMeter, little-endian.
            let per_metre = bytes.get(38..42).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            plausible_dpi(f64::from(per_metre) * 0.0254)
        }
        _ => 0,
    }
}

/// The pHYs chunk (pixels per metre) if it comes before the image data, as PNG requires.
fn png_dpi(bytes: &[u8]) -> u32 {
    let mut at = 8;
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        match &header[4..8] {
            b"pHYs" => {
                let Some(body) = bytes.get(at + 8..at + 17) else { return 0 };
                let per_metre = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                return if body[8] == 1 { plausible_dpi(f64::from(per_metre) * 0.0254) } else { 0 };
            }
            b"IDAT" | b"IEND" => return 0,
            _ => at += 12 + len,
        }
    }
    0
}

/// A stated resolution, rounded, if it is one a scan or photo could have (files often say 1 or
/// 72 by default; below 70 Tesseract does better estimating).
fn plausible_dpi(dpi: f64) -> u32 {
    if (70.0..=2400.0).contains(&dpi) { dpi.round() as u32 } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stated_resolution_is_read_from_png_jpeg_and_bmp_headers() {
        // A PNG signature, an IHDR chunk, then pHYs: 11811 pixels a metre (300 dpi), unit metre.
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&[0; 13 + 4]);
        png.extend_from_slice(b"\0\0\0\x09pHYs");
        png.extend_from_slice(&[0, 0, 0x2e, 0x23, 0, 0, 0x2e, 0x23, 1]);
        assert_eq!(stated_dpi(&png, Format::Png), 300);
        let jfif = b"\xff\xd8\xff\xe0\0\x10JFIF\0\x01\x01\x01\x00\xc8\x00\xc8";
        assert_eq!(stated_dpi(jfif, Format::Jpeg), 200, "JFIF density 200 dots an inch");
        let mut bmp = vec![0u8; 54];
        bmp[38..42].copy_from_slice(&3780u32.to_le_bytes());
        assert_eq!(stated_dpi(&bmp, Format::Bmp), 96);
        bmp[38..42].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(stated_dpi(&bmp, Format::Bmp), 0, "not stated: Tesseract estimates it");
    }

    #[test]
    fn one_bit_rows_expand_to_black_and_white() {
        // 10 pixels a row, padded to 2 bytes: 1 is white.
        assert_eq!(expand_bits(&[0b1010_0000, 0b0100_0000], 10, 1), [255, 0, 255, 0, 0, 0, 0, 0, 0, 255]);
    }
}
