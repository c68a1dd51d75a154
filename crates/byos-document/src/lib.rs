//! Document Intelligence's engine, HTTP-free: what a document says, page by page.
//!
//! [`read`] turns a document's bytes into [`PageText`]s: words with their polygons (pixels for
//! images, inches for PDF pages) and confidence, lines and paragraphs in reading order. Text
//! PDFs give their own embedded text; images and scanned pages are read by Tesseract in
//! supervised worker processes ([`OcrEngine`], `byos ocr-worker`).

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// The unit of a page's size and polygons, as Azure names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Pixel,
    Inch,
}

/// A polygon as Azure gives it: x, y of the top-left, top-right, bottom-right, bottom-left corners.
pub type Polygon = [f64; 8];

/// A word read on a page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Word {
    pub text: String,
    pub polygon: Polygon,
    /// 0 to 1.
    pub confidence: f64,
}

/// A line: a run of the page's words, in reading order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub words: Range<usize>,
    pub polygon: Polygon,
}

/// A paragraph: a run of the page's lines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paragraph {
    pub lines: Range<usize>,
    pub polygon: Polygon,
}

/// What one page says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageText {
    /// From 1, as in the document.
    pub number: u32,
    pub width: f64,
    pub height: f64,
    pub unit: Unit,
    /// Degrees the text is turned clockwise (0 when upright).
    pub angle: f64,
    pub words: Vec<Word>,
    pub lines: Vec<Line>,
    pub paragraphs: Vec<Paragraph>,
}

/// The formats byos reads, told by their first bytes (the v4 client sends every document as
/// `application/octet-stream`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pdf,
    Jpeg,
    Png,
    Bmp,
    Tiff,
}

/// Why a document was not read; each maps to one of Azure's error codes in the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Not one of the formats byos reads (`UnsupportedContent` / `InvalidContent`).
    #[error("the document's format is not supported: {0}")]
    Unsupported(String),
    /// A format byos reads, but damaged (`InvalidContent`).
    #[error("the document is damaged: {0}")]
    Corrupt(String),
    /// A password-protected PDF (`InvalidContent`).
    #[error("the document is encrypted (password protected)")]
    Encrypted,
    /// No bytes (`InvalidContentLength`).
    #[error("the document is empty")]
    Empty,
    /// Over the size limit (`InvalidContentLength`).
    #[error("the document is {size} bytes; at most {limit} are taken")]
    TooLarge { size: u64, limit: u64 },
    /// An image outside 50x50 to 10000x10000 pixels (`InvalidContentDimensions`).
    #[error("the image is {width}x{height} pixels; images must be 50x50 to 10000x10000")]
    Dimensions { width: u64, height: u64 },
    /// More pages than Azure analyzes (`InvalidContent`... see the HTTP layer).
    #[error("the document has {pages} pages; at most {limit} are analyzed")]
    TooManyPages { pages: u64, limit: u64 },
    /// The `pages` asked for are not in the document (`InvalidParameter`).
    #[error("the pages asked for are not in the document: {0}")]
    Pages(String),
    /// The engine failed (crashed, hung, not installed); the message says which.
    #[error("the OCR engine failed: {0}")]
    Engine(String),
    /// Every worker is busy and the queue is full.
    #[error("the OCR engine is busy")]
    Busy,
}
