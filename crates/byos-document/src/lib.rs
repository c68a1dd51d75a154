//! Document Intelligence's engine, HTTP-free: what a document says, page by page.
//!
//! [`read`] turns a document's bytes into [`PageText`]s: words with their polygons (pixels for
//! images, inches for PDF pages) and confidence, lines and paragraphs in reading order. Text
//! PDFs give their own embedded text; images and scanned pages are read by Tesseract in
//! supervised worker processes ([`OcrEngine`], `byos ocr-worker`).

use std::ops::{Range, RangeInclusive};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

mod decode;
mod engine;
mod marks;
mod poppler;
mod tables;
mod tesseract;

pub use engine::OcrEngine;

/// The largest document taken (Azure's S0 limit).
pub const MAX_DOCUMENT_BYTES: u64 = 500 << 20;
/// The most pages a document may have.
pub const MAX_PAGES: u64 = 2000;

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
    /// Ruled tables found on the page's image (images, scanned pages, and text PDF pages read for
    /// layout).
    #[serde(default)]
    pub tables: Vec<Table>,
    /// Check boxes found on the page's image.
    #[serde(default)]
    pub selection_marks: Vec<SelectionMark>,
}

/// Whether a selection mark is ticked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SelectionState {
    Selected,
    Unselected,
}

/// A check box drawn on the page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectionMark {
    pub state: SelectionState,
    pub polygon: Polygon,
    /// 0 to 1: how closed its outline is.
    pub confidence: f64,
}

/// A ruled table: a grid of `rows` × `columns` cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub rows: usize,
    pub columns: usize,
    /// Row by row.
    pub cells: Vec<Cell>,
    pub polygon: Polygon,
}

/// A cell of a table: its place and the page's words in it (indices into the page's words).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    pub row: usize,
    pub column: usize,
    pub words: Vec<usize>,
    pub polygon: Polygon,
}

impl PageText {
    /// Every polygon of the page: its words', lines', paragraphs', tables' and cells'.
    pub(crate) fn polygons_mut(&mut self) -> impl Iterator<Item = &mut Polygon> {
        let words = self.words.iter_mut().map(|w| &mut w.polygon);
        let lines = self.lines.iter_mut().map(|l| &mut l.polygon);
        let paragraphs = self.paragraphs.iter_mut().map(|p| &mut p.polygon);
        let marks = self.selection_marks.iter_mut().map(|m| &mut m.polygon);
        words.chain(lines).chain(paragraphs).chain(self.tables.iter_mut().flat_map(Table::polygons_mut)).chain(marks)
    }
}

impl Table {
    /// The table's polygon and its cells'.
    pub(crate) fn polygons_mut(&mut self) -> impl Iterator<Item = &mut Polygon> {
        std::iter::once(&mut self.polygon).chain(self.cells.iter_mut().map(|c| &mut c.polygon))
    }
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

/// The document's format, told by its first bytes; `None` for anything else.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    decode::sniff(bytes)
}

/// How much of a PDF's text page is read: its own words (`prebuilt-read`), or also the ruled tables
/// and check boxes drawn on it, for which it is rendered (layout, custom models). Images and scans
/// are rendered anyway: theirs are always found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    Text,
    Layout,
}

/// Reads a document: every page (or only `pages`, 1-based inclusive ranges), in order.
///
/// Pages are decoded one at a time off the async threads and read by as many workers at once as
/// the engine has; a read waits for free workers rather than answering [`ReadError::Busy`].
pub async fn read(
    engine: &OcrEngine,
    bytes: &[u8],
    pages: Option<&[RangeInclusive<u32>]>,
    detail: Detail,
) -> Result<Vec<PageText>, ReadError> {
    let size = bytes.len() as u64;
    if size == 0 {
        return Err(ReadError::Empty);
    }
    if size > MAX_DOCUMENT_BYTES {
        return Err(ReadError::TooLarge { size, limit: MAX_DOCUMENT_BYTES });
    }
    match sniff(bytes) {
        None => Err(ReadError::Unsupported("not a PDF, JPEG, PNG, BMP or TIFF document".into())),
        Some(Format::Pdf) => read_pdf(engine, bytes, pages, detail).await,
        Some(format) => read_image(engine, bytes.to_vec(), format, pages).await,
    }
}

async fn read_image(
    engine: &OcrEngine,
    bytes: Vec<u8>,
    format: Format,
    pages: Option<&[RangeInclusive<u32>]>,
) -> Result<Vec<PageText>, ReadError> {
    let bytes = std::sync::Arc::new(bytes);
    let header = std::sync::Arc::clone(&bytes);
    let count = blocking(move || decode::count_pages(&header, format)).await??;
    let wanted = select(pages, count)?;
    // One decoded page waits while the workers read others: memory stays a few pages.
    let (decoded, mut next) = mpsc::channel(1);
    let decoder = tokio::task::spawn_blocking(move || {
        decode::decode_pages(&bytes, format, &wanted, |number, page| {
            decoded.blocking_send(page.and_then(|page| engine::ImageJob::new(number, page))).is_ok()
        })
    });
    let mut reading = Reading::new(engine.workers());
    while let Some(job) = next.recv().await {
        let job = job?;
        let pool = engine.pool();
        reading.add(async move { job.read(&pool).await }).await?;
    }
    let read = reading.finish().await?;
    decoder.await.map_err(|e| ReadError::Engine(format!("the decoder failed: {e}")))?;
    Ok(read)
}

/// A PDF: its page count from one worker, then its pages from all of them, the document shared
/// with them in memory.
async fn read_pdf(
    engine: &OcrEngine,
    bytes: &[u8],
    pages: Option<&[RangeInclusive<u32>]>,
    detail: Detail,
) -> Result<Vec<PageText>, ReadError> {
    let kind = match detail {
        Detail::Text => engine::PDF_PAGE,
        Detail::Layout => engine::PDF_LAYOUT_PAGE,
    };
    let document = std::sync::Arc::new(engine::SharedPdf::new(bytes)?);
    let pool = engine.pool();
    let info = engine::run(&pool, document.request(engine::PDF_OPEN, 0)).await?;
    let info: engine::PdfInfo = serde_json::from_slice(&info).map_err(not_understood)?;
    if u64::from(info.pages) > MAX_PAGES {
        return Err(ReadError::TooManyPages { pages: info.pages.into(), limit: MAX_PAGES });
    }
    if info.pages == 0 {
        return Err(ReadError::Corrupt("the PDF has no pages".into()));
    }
    let mut reading = Reading::new(engine.workers());
    for number in select(pages, info.pages)? {
        let (pool, document) = (engine.pool(), std::sync::Arc::clone(&document));
        reading
            .add(async move {
                let page = engine::run(&pool, document.request(kind, number)).await?;
                serde_json::from_slice::<PageText>(&page).map_err(not_understood)
            })
            .await?;
    }
    reading.finish().await
}

fn not_understood(e: serde_json::Error) -> ReadError {
    ReadError::Engine(format!("the worker's answer is not understood: {e}"))
}

/// Pages being read side by side, at most `limit` at once; put back in page order at the end.
struct Reading {
    running: JoinSet<Result<PageText, ReadError>>,
    read: Vec<PageText>,
    limit: usize,
}

impl Reading {
    fn new(limit: usize) -> Reading {
        Reading { running: JoinSet::new(), read: Vec::new(), limit: limit.max(1) }
    }

    /// Starts reading a page once fewer than `limit` are; the first failure fails the document
    /// (dropping the set stops the rest).
    async fn add(
        &mut self,
        page: impl std::future::Future<Output = Result<PageText, ReadError>> + Send + 'static,
    ) -> Result<(), ReadError> {
        while self.running.len() >= self.limit {
            let done = joined(self.running.join_next().await)?;
            self.read.push(done);
        }
        self.running.spawn(page);
        Ok(())
    }

    async fn finish(mut self) -> Result<Vec<PageText>, ReadError> {
        while let Some(page) = self.running.join_next().await {
            self.read.push(joined(Some(page))?);
        }
        self.read.sort_by_key(|page| page.number);
        Ok(self.read)
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, ReadError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| ReadError::Engine(format!("the decoder failed: {e}")))
}

fn joined(page: Option<Result<Result<PageText, ReadError>, tokio::task::JoinError>>) -> Result<PageText, ReadError> {
    match page {
        Some(Ok(page)) => page,
        Some(Err(e)) => Err(ReadError::Engine(format!("reading a page failed: {e}"))),
        None => Err(ReadError::Engine("a page was lost".into())),
    }
}

/// The pages of a `count`-page document that `pages` asks for, ascending, each once.
fn select(pages: Option<&[RangeInclusive<u32>]>, count: u32) -> Result<Vec<u32>, ReadError> {
    let Some(ranges) = pages else { return Ok((1..=count).collect()) };
    if let Some(bad) = ranges.iter().find(|r| *r.start() == 0 || r.start() > r.end()) {
        return Err(ReadError::Pages(format!("{}-{} is not a range of pages", bad.start(), bad.end())));
    }
    let wanted: Vec<u32> = (1..=count).filter(|n| ranges.iter().any(|r| r.contains(n))).collect();
    if wanted.is_empty() {
        return Err(ReadError::Pages(format!("the document has {count} page(s)")));
    }
    Ok(wanted)
}

/// The worker process's main loop (`byos ocr-worker`): reads pages for an [`OcrEngine`] until
/// its stdin closes.
pub fn serve_ocr_worker() -> std::io::Result<()> {
    tesseract::one_thread();
    let mut worker = engine::Worker::default();
    byos_speech::workers::serve(|request| worker.handle(request).map_err(|e| e.encode()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_is_read_unless_pages_says_otherwise() {
        assert_eq!(select(None, 3), Ok(vec![1, 2, 3]));
        assert_eq!(select(Some(&[3..=3, 1..=1]), 3), Ok(vec![1, 3]), "in document order");
        assert_eq!(select(Some(&[2..=9, 2..=2]), 3), Ok(vec![2, 3]), "each once, beyond the end ignored");
    }

    #[test]
    fn pages_outside_the_document_are_refused() {
        assert!(matches!(select(Some(&[4..=6]), 3), Err(ReadError::Pages(_))));
        assert!(matches!(select(Some(&[0..=1]), 3), Err(ReadError::Pages(_))), "pages count from 1");
        assert!(matches!(select(Some(&[]), 3), Err(ReadError::Pages(_))));
    }

    #[tokio::test]
    async fn empty_oversized_and_unknown_documents_are_refused_before_any_worker() {
        let never = byos_speech::workers::WorkerCommand { program: "/nonexistent".into(), args: Vec::new() };
        let engine = OcrEngine::start(never, 1, std::time::Duration::from_secs(1));
        assert_eq!(read(&engine, b"", None, Detail::Text).await, Err(ReadError::Empty));
        assert!(matches!(read(&engine, b"GIF89a", None, Detail::Text).await, Err(ReadError::Unsupported(_))));
        let huge = vec![0u8; MAX_DOCUMENT_BYTES as usize + 1];
        let too_large = ReadError::TooLarge { size: MAX_DOCUMENT_BYTES + 1, limit: MAX_DOCUMENT_BYTES };
        assert_eq!(read(&engine, &huge, None, Detail::Text).await, Err(too_large));
    }
}
