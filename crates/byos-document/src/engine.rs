//! The OCR engine as services use it: [`OcrEngine`], a pool of `byos ocr-worker` processes, and
//! the protocol between it and them.
//!
//! A request is a kind byte, then for an image page ([`IMAGE`]) its width, height and dpi (each a
//! 4-byte big-endian number) and its 8-bit gray pixels, answered with the page's words, lines and
//! paragraphs as JSON ([`Recognized`]). A PDF stays in the server, in a memfd the worker opens by
//! its `/proc` path: [`PDF_OPEN`] (document id, 8 bytes; page 0, 4 bytes; the path) is answered
//! with its page count, [`PDF_PAGE`] (the same with a page number from 1) with the page's
//! [`PageText`] in inches, [`PDF_LAYOUT_PAGE`] with the tables and check boxes drawn on a text page
//! too; a worker keeps the last document it opened, by id. A refusal is a
//! [`WorkerError`] as JSON in an error frame.

use std::sync::Arc;
use std::time::Duration;

use byos_speech::workers::{MAX_FRAME, PoolError, WorkerCommand, WorkerPool};
use serde::{Deserialize, Serialize};

use crate::decode::GrayPage;
use crate::poppler::{self, Page, PdfError, Poppler};
use crate::tesseract::{Recognized, Tesseract};
use crate::{PageText, ReadError, Unit};

/// The kinds of request a worker answers.
pub(crate) const IMAGE: u8 = 1;
pub(crate) const PDF_OPEN: u8 = 2;
pub(crate) const PDF_PAGE: u8 = 3;
pub(crate) const PDF_LAYOUT_PAGE: u8 = 4;
const IMAGE_HEADER: usize = 13;
/// The most pixels one request carries: a larger page is scaled down to fit the pool's frames
/// (Tesseract reads text at that size as well; the polygons are scaled back).
const MAX_PIXELS: u64 = (MAX_FRAME - IMAGE_HEADER) as u64 * 9 / 10;

/// Why a worker refused a request, as it tells the server.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum WorkerError {
    Engine(String),
    Corrupt(String),
    Encrypted,
}

impl WorkerError {
    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"Engine\":\"{e}\"}}"))
    }
}

impl From<WorkerError> for ReadError {
    fn from(e: WorkerError) -> ReadError {
        match e {
            WorkerError::Engine(message) => ReadError::Engine(message),
            WorkerError::Corrupt(message) => ReadError::Corrupt(message),
            WorkerError::Encrypted => ReadError::Encrypted,
        }
    }
}

impl From<PdfError> for WorkerError {
    fn from(e: PdfError) -> WorkerError {
        match e {
            PdfError::Engine(message) => WorkerError::Engine(message),
            PdfError::Corrupt(message) => WorkerError::Corrupt(message),
            PdfError::Encrypted => WorkerError::Encrypted,
        }
    }
}

fn pool_error(e: PoolError) -> ReadError {
    match e {
        PoolError::Busy => ReadError::Busy,
        PoolError::Failed(message) => {
            serde_json::from_str::<WorkerError>(&message).map(ReadError::from).unwrap_or(ReadError::Engine(message))
        }
        other => ReadError::Engine(other.to_string()),
    }
}

/// Tesseract in supervised worker processes (see `byos_speech::workers`).
pub struct OcrEngine {
    pool: Arc<WorkerPool>,
    workers: usize,
}

impl OcrEngine {
    /// `size` workers of `command` (each started on its first page), a page taking longer than
    /// `timeout` kills its worker. Must be called within a Tokio runtime.
    pub fn start(command: WorkerCommand, size: usize, timeout: Duration) -> Self {
        let workers = size.max(1);
        OcrEngine { pool: Arc::new(WorkerPool::start(command, workers, workers * 2, timeout)), workers }
    }

    /// How many pages of one document are read at once: one per worker.
    pub(crate) fn workers(&self) -> usize {
        self.workers
    }

    /// The pool, for tasks that read pages side by side.
    pub(crate) fn pool(&self) -> Arc<WorkerPool> {
        Arc::clone(&self.pool)
    }
}

/// Runs one request, waiting for a worker (documents are read in the background of an
/// asynchronous analysis: there is no client to tell to retry).
pub(crate) async fn run(pool: &WorkerPool, request: Vec<u8>) -> Result<Vec<u8>, ReadError> {
    pool.run_waiting(request).await.map_err(pool_error)
}

/// An image page ready to be sent: the request, and what its answer is measured against.
pub(crate) struct ImageJob {
    pub number: u32,
    pub request: Vec<u8>,
    /// The page's own size, in pixels.
    pub width: u32,
    pub height: u32,
    /// The request's pixels per page pixel (below 1 when the page was scaled down to fit).
    pub scale: f64,
}

impl ImageJob {
    pub(crate) fn new(number: u32, page: GrayPage) -> Result<ImageJob, ReadError> {
        let (width, height) = (page.width, page.height);
        let (page, scale) = fit(page, MAX_PIXELS)?;
        let mut request = Vec::with_capacity(IMAGE_HEADER + page.pixels.len());
        request.push(IMAGE);
        for n in [page.width, page.height, page.dpi] {
            request.extend_from_slice(&n.to_be_bytes());
        }
        request.extend_from_slice(&page.pixels);
        Ok(ImageJob { number, request, width, height, scale })
    }

    /// Reads the page on a worker.
    pub(crate) async fn read(self, pool: &WorkerPool) -> Result<PageText, ReadError> {
        let answer = run(pool, self.request).await?;
        let recognized: Recognized = serde_json::from_slice(&answer)
            .map_err(|e| ReadError::Engine(format!("the worker's answer is not understood: {e}")))?;
        let mut page = PageText {
            number: self.number,
            width: self.width.into(),
            height: self.height.into(),
            unit: Unit::Pixel,
            angle: 0.0,
            words: recognized.words,
            lines: recognized.lines,
            paragraphs: recognized.paragraphs,
            tables: recognized.tables,
            selection_marks: recognized.selection_marks,
        };
        if self.scale != 1.0 {
            scale_page(&mut page, 1.0 / self.scale);
        }
        Ok(page)
    }
}

/// The page scaled down, if it must be, to at most `max_pixels`, and the scale.
fn fit(page: GrayPage, max_pixels: u64) -> Result<(GrayPage, f64), ReadError> {
    let pixels = u64::from(page.width) * u64::from(page.height);
    if pixels <= max_pixels {
        return Ok((page, 1.0));
    }
    let scale = (max_pixels as f64 / pixels as f64).sqrt();
    let (width, height) = ((page.width as f64 * scale) as u32, (page.height as f64 * scale) as u32);
    let gray = image::GrayImage::from_raw(page.width, page.height, page.pixels)
        .ok_or_else(|| ReadError::Corrupt("the page's pixels do not fill it".into()))?;
    let smaller = image::imageops::resize(&gray, width, height, image::imageops::FilterType::Triangle);
    let dpi = (f64::from(page.dpi) * scale) as u32;
    Ok((GrayPage { width, height, dpi, pixels: smaller.into_raw() }, scale))
}

/// Multiplies every coordinate of the page's polygons by `factor`.
pub(crate) fn scale_page(page: &mut PageText, factor: f64) {
    for polygon in page.polygons_mut() {
        polygon.iter_mut().for_each(|c| *c *= factor);
    }
}

/// A PDF in a memfd of this process, which workers open by its `/proc` path: in memory only,
/// shared by every worker reading its pages, gone when dropped.
pub(crate) struct SharedPdf {
    // Kept open (the path names it) until every page is read.
    _file: std::fs::File,
    id: u64,
    path: String,
}

impl SharedPdf {
    pub(crate) fn new(bytes: &[u8]) -> Result<SharedPdf, ReadError> {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let engine = |e: std::io::Error| ReadError::Engine(format!("the document could not be held in memory: {e}"));
        let fd =
            rustix::fs::memfd_create("byos-document", rustix::fs::MemfdFlags::CLOEXEC).map_err(|e| engine(e.into()))?;
        let mut file = std::fs::File::from(fd);
        // A copy in memory (no disk): quick next to reading a single page.
        file.write_all(bytes).map_err(engine)?;
        let path = format!("/proc/{}/fd/{}", std::process::id(), file.as_raw_fd());
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(SharedPdf { _file: file, id, path })
    }

    pub(crate) fn request(&self, kind: u8, page: u32) -> Vec<u8> {
        pdf_request(kind, self.id, page, &self.path)
    }
}

/// What a PDF worker answers to [`PDF_OPEN`].
#[derive(Serialize, Deserialize)]
pub(crate) struct PdfInfo {
    pub pages: u32,
}

/// A PDF request: the document's id, a page number (0 to open it), the path of its memfd.
fn pdf_request(kind: u8, id: u64, page: u32, path: &str) -> Vec<u8> {
    let mut request = vec![kind];
    request.extend_from_slice(&id.to_be_bytes());
    request.extend_from_slice(&page.to_be_bytes());
    request.extend_from_slice(path.as_bytes());
    request
}

fn parse_pdf_request(request: &[u8]) -> Result<(u64, u32, &str), WorkerError> {
    let short = || WorkerError::Engine("a short request".into());
    let id = request.get(1..9).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).ok_or_else(short)?;
    let page = request.get(9..13).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes).ok_or_else(short)?;
    let path = std::str::from_utf8(&request[13..]).map_err(|_| WorkerError::Engine("the path is not UTF-8".into()))?;
    Ok((id, page, path))
}

/// The worker process's state: the engines, each loaded on its first use, and the last PDF.
#[derive(Default)]
pub(crate) struct Worker {
    tesseract: Option<Tesseract>,
    poppler: Option<Poppler>,
    pdf: Option<(u64, poppler::Document)>,
}

fn json(value: &impl Serialize) -> Result<Vec<u8>, WorkerError> {
    serde_json::to_vec(value).map_err(|e| WorkerError::Engine(e.to_string()))
}

impl Worker {
    pub(crate) fn handle(&mut self, request: &[u8]) -> Result<Vec<u8>, WorkerError> {
        match request.first() {
            Some(&IMAGE) => json(&self.read_image(request)?),
            Some(&PDF_OPEN) => {
                let (id, _, path) = parse_pdf_request(request)?;
                let pages = self.open_pdf(id, path)?;
                json(&PdfInfo { pages })
            }
            Some(&kind @ (PDF_PAGE | PDF_LAYOUT_PAGE)) => {
                let (id, number, path) = parse_pdf_request(request)?;
                let detail = if kind == PDF_PAGE { crate::Detail::Text } else { crate::Detail::Layout };
                json(&self.read_pdf_page(id, number, path, detail)?)
            }
            _ => Err(WorkerError::Engine("the request is not one this worker knows".into())),
        }
    }

    fn read_image(&mut self, request: &[u8]) -> Result<Recognized, WorkerError> {
        let number = |at: usize| {
            let bytes = request.get(at..at + 4).ok_or_else(|| WorkerError::Engine("a short request".into()))?;
            Ok::<u32, WorkerError>(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
        };
        let (width, height, dpi) = (number(1)?, number(5)?, number(9)?);
        self.tesseract()?.read(&request[IMAGE_HEADER..], width, height, dpi).map_err(WorkerError::Engine)
    }

    fn tesseract(&mut self) -> Result<&mut Tesseract, WorkerError> {
        if self.tesseract.is_none() {
            self.tesseract = Some(Tesseract::load().map_err(WorkerError::Engine)?);
        }
        self.tesseract.as_mut().ok_or_else(|| WorkerError::Engine("Tesseract is not loaded".into()))
    }

    fn poppler(&mut self) -> Result<&Poppler, WorkerError> {
        if self.poppler.is_none() {
            self.poppler = Some(Poppler::load()?);
        }
        self.poppler.as_ref().ok_or_else(|| WorkerError::Engine("Poppler is not loaded".into()))
    }

    /// Opens document `id` unless it is the one open already; answers its page count.
    fn open_pdf(&mut self, id: u64, path: &str) -> Result<u32, WorkerError> {
        if self.pdf.as_ref().is_none_or(|(open, _)| *open != id) {
            // The previous document goes first: one document's memory at a time.
            self.pdf = None;
            let document = self.poppler()?.open(path)?;
            self.pdf = Some((id, document));
        }
        let (poppler, document) = self.open_document()?;
        Ok(poppler.page_count(document))
    }

    /// Poppler and the document open in it.
    fn open_document(&self) -> Result<(&Poppler, &poppler::Document), WorkerError> {
        match (&self.poppler, &self.pdf) {
            (Some(poppler), Some((_, document))) => Ok((poppler, document)),
            _ => Err(WorkerError::Engine("no document is open".into())),
        }
    }

    fn read_pdf_page(
        &mut self,
        id: u64,
        number: u32,
        path: &str,
        detail: crate::Detail,
    ) -> Result<PageText, WorkerError> {
        self.open_pdf(id, path)?;
        let (poppler, document) = self.open_document()?;
        match poppler.read_page(document, number, detail)? {
            Page::Text(mut page, pictures) => {
                for picture in pictures {
                    let scan = &picture.scan;
                    let dpi = scan.dpi.round() as u32;
                    // A picture that cannot be read leaves the page its own text.
                    match self.tesseract()?.read(&scan.pixels, scan.width, scan.height, dpi) {
                        Ok(read) => poppler::append(&mut page, picture.placed(read)),
                        Err(e) => tracing::warn!(page = number, error = %e, "a picture on a text page was not read"),
                    }
                }
                Ok(page)
            }
            Page::Scanned(page, scan) => {
                let dpi = scan.dpi.round() as u32;
                let read =
                    self.tesseract()?.read(&scan.pixels, scan.width, scan.height, dpi).map_err(WorkerError::Engine)?;
                Ok(poppler::with(page, poppler::in_inches(read, scan.dpi)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_too_large_for_a_frame_is_scaled_down_and_its_polygons_back_up() {
        // The largest page (10000 x 10000) is over the limit; the same arithmetic on a small one.
        assert!(10_000 * 10_000 > MAX_PIXELS && (MAX_PIXELS as usize + IMAGE_HEADER) <= MAX_FRAME);
        let page = GrayPage { width: 400, height: 300, dpi: 600, pixels: vec![255; 120_000] };
        let (smaller, scale) = fit(page, 30_000).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((smaller.width, smaller.height, smaller.dpi), (200, 150, 300));
        assert_eq!(smaller.pixels.len(), 30_000);
        let mut page = PageText {
            number: 1,
            width: 400.0,
            height: 300.0,
            unit: Unit::Pixel,
            angle: 0.0,
            words: vec![crate::Word { text: "x".into(), polygon: [10.0; 8], confidence: 1.0 }],
            lines: Vec::new(),
            paragraphs: Vec::new(),
            tables: Vec::new(),
            selection_marks: Vec::new(),
        };
        scale_page(&mut page, 1.0 / scale);
        assert_eq!(page.words[0].polygon, [20.0; 8], "back in the page's own pixels");
    }

    #[test]
    fn a_small_page_is_sent_as_it_is() {
        let page = GrayPage { width: 60, height: 50, dpi: 0, pixels: vec![7; 3000] };
        let job = ImageJob::new(3, page).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(job.scale, 1.0);
        assert_eq!(&job.request[..IMAGE_HEADER], &[IMAGE, 0, 0, 0, 60, 0, 0, 0, 50, 0, 0, 0, 0]);
        assert_eq!(job.request.len(), IMAGE_HEADER + 3000);
    }

    #[test]
    fn worker_refusals_become_read_errors() {
        let failed = |e: WorkerError| pool_error(PoolError::Failed(e.encode()));
        assert_eq!(failed(WorkerError::Encrypted), ReadError::Encrypted);
        assert_eq!(failed(WorkerError::Corrupt("bad xref".into())), ReadError::Corrupt("bad xref".into()));
        assert!(
            matches!(pool_error(PoolError::Crashed("signal 11".into())), ReadError::Engine(m) if m.contains("signal 11"))
        );
        assert_eq!(pool_error(PoolError::Failed("plain".into())), ReadError::Engine("plain".into()));
        assert_eq!(pool_error(PoolError::Busy), ReadError::Busy);
    }
}
