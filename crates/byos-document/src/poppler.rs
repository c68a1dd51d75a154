//! PDF through Poppler's GLib API (Debian's `libpoppler-glib8`) and Cairo (`libcairo2`), loaded
//! at run time like Tesseract: a text page gives its embedded words with their positions (and, for
//! layout, is rendered for the tables and check boxes drawn on it; the images on it are cut from its
//! rendering for Tesseract to read), a page without text (a scan) is rendered and read by Tesseract.
//!
//! With [`crate::tesseract`], one of the two modules of this crate that call C. The document is
//! never written to disk: the server holds it in a memfd, which the worker maps (read only,
//! shared pages) and hands Poppler as data in memory.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_double, c_int, c_uint, c_void};
use std::ptr::NonNull;

use crate::tesseract::Recognized;
use crate::{Detail, Line, PageText, Paragraph, Polygon, Unit, Word};

const POPPLER: &str = "libpoppler-glib.so.8";
const GLIB: &str = "libglib-2.0.so.0";
const GOBJECT: &str = "libgobject-2.0.so.0";
const CAIRO: &str = "libcairo.so.2";
const INSTALL: &str = "install Debian's libpoppler-glib8 and libcairo2";
/// PopplerError's POPPLER_ERROR_ENCRYPTED.
const ERROR_ENCRYPTED: c_int = 1;
/// cairo_format_t's CAIRO_FORMAT_RGB24: 32 bits a pixel, xRGB in native byte order.
const FORMAT_RGB24: c_int = 1;
const POINTS_PER_INCH: f64 = 72.0;
/// The resolution a scanned page is rendered at for Tesseract.
const RENDER_DPI: f64 = 300.0;
/// The resolution a text page is rendered at to find the rules and boxes drawn on it: a quarter of
/// a scan's pixels, still several pixels per rule and a dozen or more per check box side.
const DRAWN_DPI: f64 = 150.0;
/// The longest side of a rendered page, in pixels (a larger page is rendered at a lower dpi).
const MAX_RENDER_SIDE: f64 = 10_000.0;

/// GLib's GError.
#[repr(C)]
struct GError {
    domain: u32,
    code: c_int,
    message: *const c_char,
}

/// Poppler's PopplerRectangle: points from the page's top-left corner.
#[repr(C)]
#[derive(Clone, Copy)]
struct Rectangle {
    x1: c_double,
    y1: c_double,
    x2: c_double,
    y2: c_double,
}

/// GLib's doubly linked list node.
#[repr(C)]
struct GList {
    data: *mut c_void,
    next: *mut GList,
    prev: *mut GList,
}

/// Poppler's PopplerImageMapping: where an image is drawn on the page.
#[repr(C)]
struct ImageMapping {
    area: Rectangle,
    image_id: c_int,
}

type QuarkFn = unsafe extern "C" fn() -> u32;
type NewFromDataFn = unsafe extern "C" fn(*mut c_char, c_int, *const c_char, *mut *mut GError) -> *mut c_void;
type PageCountFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type GetPageFn = unsafe extern "C" fn(*mut c_void, c_int) -> *mut c_void;
type PageSizeFn = unsafe extern "C" fn(*mut c_void, *mut c_double, *mut c_double);
type PageTextFn = unsafe extern "C" fn(*mut c_void) -> *mut c_char;
type TextLayoutFn = unsafe extern "C" fn(*mut c_void, *mut *mut Rectangle, *mut c_uint) -> c_int;
type ImageMappingFn = unsafe extern "C" fn(*mut c_void) -> *mut GList;
type FreeListFn = unsafe extern "C" fn(*mut GList);
type RenderFn = unsafe extern "C" fn(*mut c_void, *mut c_void);
type PointerFn = unsafe extern "C" fn(*mut c_void);
type ErrorFreeFn = unsafe extern "C" fn(*mut GError);
type SurfaceCreateFn = unsafe extern "C" fn(c_int, c_int, c_int) -> *mut c_void;
type StatusFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type CreateFn = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type ScaleFn = unsafe extern "C" fn(*mut c_void, c_double, c_double);
type SourceRgbFn = unsafe extern "C" fn(*mut c_void, c_double, c_double, c_double);
type DataFn = unsafe extern "C" fn(*mut c_void) -> *mut u8;
type StrideFn = unsafe extern "C" fn(*mut c_void) -> c_int;

/// Why a document could not be opened or a page read.
pub(crate) enum PdfError {
    /// The libraries are missing, or they failed (the message says which).
    Engine(String),
    Encrypted,
    Corrupt(String),
}

/// The libraries and the functions byos uses, resolved once per worker.
pub(crate) struct Poppler {
    // Kept loaded for as long as the function pointers below are used.
    _libraries: [libloading::Library; 4],
    error_quark: QuarkFn,
    new_from_data: NewFromDataFn,
    page_count: PageCountFn,
    get_page: GetPageFn,
    page_size: PageSizeFn,
    page_text: PageTextFn,
    text_layout: TextLayoutFn,
    image_mapping: ImageMappingFn,
    free_image_mapping: FreeListFn,
    render: RenderFn,
    object_unref: PointerFn,
    free: PointerFn,
    error_free: ErrorFreeFn,
    surface_create: SurfaceCreateFn,
    surface_status: StatusFn,
    surface_flush: PointerFn,
    surface_destroy: PointerFn,
    surface_data: DataFn,
    surface_stride: StrideFn,
    cairo_create: CreateFn,
    cairo_destroy: PointerFn,
    cairo_scale: ScaleFn,
    cairo_source_rgb: SourceRgbFn,
    cairo_paint: PointerFn,
}

fn unavailable(e: impl std::fmt::Display) -> PdfError {
    PdfError::Engine(format!("{e} ({INSTALL})"))
}

fn open_library(name: &str) -> Result<libloading::Library, PdfError> {
    // SAFETY: system libraries of Debian's poppler, glib and cairo packages; loading them runs
    // only their initializers.
    unsafe { libloading::Library::new(name) }.map_err(unavailable)
}

impl Poppler {
    pub(crate) fn load() -> Result<Poppler, PdfError> {
        let libraries = [open_library(POPPLER)?, open_library(GLIB)?, open_library(GOBJECT)?, open_library(CAIRO)?];
        let [poppler, glib, gobject, cairo] = &libraries;
        macro_rules! symbol {
            ($library:expr, $name:literal) => {
                // SAFETY: the type given is the function's C signature in the library's headers
                // (poppler-glib 22, GLib 2.74, Cairo 1.16).
                *unsafe { $library.get(concat!($name, "\0").as_bytes()) }.map_err(unavailable)?
            };
        }
        Ok(Poppler {
            error_quark: symbol!(poppler, "poppler_error_quark"),
            new_from_data: symbol!(poppler, "poppler_document_new_from_data"),
            page_count: symbol!(poppler, "poppler_document_get_n_pages"),
            get_page: symbol!(poppler, "poppler_document_get_page"),
            page_size: symbol!(poppler, "poppler_page_get_size"),
            page_text: symbol!(poppler, "poppler_page_get_text"),
            text_layout: symbol!(poppler, "poppler_page_get_text_layout"),
            image_mapping: symbol!(poppler, "poppler_page_get_image_mapping"),
            free_image_mapping: symbol!(poppler, "poppler_page_free_image_mapping"),
            render: symbol!(poppler, "poppler_page_render"),
            object_unref: symbol!(gobject, "g_object_unref"),
            free: symbol!(glib, "g_free"),
            error_free: symbol!(glib, "g_error_free"),
            surface_create: symbol!(cairo, "cairo_image_surface_create"),
            surface_status: symbol!(cairo, "cairo_surface_status"),
            surface_flush: symbol!(cairo, "cairo_surface_flush"),
            surface_destroy: symbol!(cairo, "cairo_surface_destroy"),
            surface_data: symbol!(cairo, "cairo_image_surface_get_data"),
            surface_stride: symbol!(cairo, "cairo_image_surface_get_stride"),
            cairo_create: symbol!(cairo, "cairo_create"),
            cairo_destroy: symbol!(cairo, "cairo_destroy"),
            cairo_scale: symbol!(cairo, "cairo_scale"),
            cairo_source_rgb: symbol!(cairo, "cairo_set_source_rgb"),
            cairo_paint: symbol!(cairo, "cairo_paint"),
            _libraries: libraries,
        })
    }

    /// Opens the PDF in the file at `path` (the server's memfd), mapped into memory.
    pub(crate) fn open(&self, path: &str) -> Result<Document, PdfError> {
        let file = std::fs::File::open(path).map_err(|e| PdfError::Engine(format!("the document is gone: {e}")))?;
        let len = file.metadata().map_err(|e| PdfError::Engine(e.to_string()))?.len() as usize;
        let length = c_int::try_from(len).map_err(|_| PdfError::Corrupt("the PDF is too large".into()))?;
        if len == 0 {
            return Err(PdfError::Corrupt("the PDF is empty".into()));
        }
        // SAFETY: a read-only private mapping of the whole file; nobody writes the memfd after
        // the server filled it (the server keeps it until every page is read).
        let data = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ,
                rustix::mm::MapFlags::PRIVATE,
                &file,
                0,
            )
        }
        .map_err(|e| PdfError::Engine(format!("mapping the document: {e}")))?;
        let map = Mapping { data, len };
        let mut error: *mut GError = std::ptr::null_mut();
        // SAFETY: `len` mapped bytes that outlive the document (`Document` drops it first);
        // Poppler only reads them (the pointer is `char *` for historic reasons). No password.
        let document = unsafe { (self.new_from_data)(data.cast(), length, std::ptr::null(), &mut error) };
        match NonNull::new(document) {
            Some(handle) => Ok(Document { handle, unref: self.object_unref, _map: map }),
            None => Err(self.take_error(error)),
        }
    }

    fn take_error(&self, error: *mut GError) -> PdfError {
        if error.is_null() {
            return PdfError::Corrupt("Poppler could not open the PDF".into());
        }
        // SAFETY: a GError Poppler set; its message (if any) is a NUL-terminated string, copied
        // before the error is freed once.
        let (domain, code, message) = unsafe {
            let text = (*error).message;
            let message =
                if text.is_null() { String::new() } else { CStr::from_ptr(text).to_string_lossy().into_owned() };
            let (domain, code) = ((*error).domain, (*error).code);
            (self.error_free)(error);
            (domain, code, message)
        };
        // SAFETY: takes nothing, returns Poppler's error domain.
        let poppler_domain = unsafe { (self.error_quark)() };
        // Every other error (Poppler's own or GLib's G_FILE_ERROR) says the file is damaged.
        if domain == poppler_domain && code == ERROR_ENCRYPTED {
            PdfError::Encrypted
        } else {
            PdfError::Corrupt(message)
        }
    }

    pub(crate) fn page_count(&self, document: &Document) -> u32 {
        // SAFETY: an open document.
        u32::try_from(unsafe { (self.page_count)(document.handle.as_ptr()) }).unwrap_or(0)
    }

    /// Page `number` (from 1): its embedded text (with the tables and check boxes drawn on it for
    /// [`Detail::Layout`]), or, when it has no text, its image to be read.
    pub(crate) fn read_page(&self, document: &Document, number: u32, detail: Detail) -> Result<Page, PdfError> {
        let index = c_int::try_from(number.saturating_sub(1)).map_err(|_| PdfError::Engine("no such page".into()))?;
        // SAFETY: an open document; an index out of range gives null.
        let page = NonNull::new(unsafe { (self.get_page)(document.handle.as_ptr(), index) })
            .ok_or_else(|| PdfError::Corrupt(format!("page {number} cannot be read")))?;
        let page = Object { handle: page, unref: self.object_unref };
        let (mut width, mut height) = (0.0, 0.0);
        // SAFETY: a live page; two doubles to write.
        unsafe { (self.page_size)(page.handle.as_ptr(), &mut width, &mut height) };
        let text = PageText {
            number,
            width: width / POINTS_PER_INCH,
            height: height / POINTS_PER_INCH,
            unit: Unit::Inch,
            angle: 0.0,
            words: Vec::new(),
            lines: Vec::new(),
            paragraphs: Vec::new(),
            tables: Vec::new(),
            selection_marks: Vec::new(),
        };
        let embedded = self.embedded_text(&page);
        if embedded.words.is_empty() {
            return Ok(Page::Scanned(text, self.render(&page, width, height, RENDER_DPI)?));
        }
        let pictures = self.pictures(&page, (width, height), &embedded)?;
        let text = match detail {
            Detail::Text => with(text, embedded),
            Detail::Layout => with(text, with_drawn(embedded, &self.render(&page, width, height, DRAWN_DPI)?)),
        };
        Ok(Page::Text(text, pictures))
    }

    /// The images drawn on a text page that may hold text of their own (large enough, and not
    /// under the page's text: a searchable scan's text layer already says what its image shows),
    /// cut from the page rendered at 300 dpi, to be read by Tesseract.
    fn pictures(
        &self,
        page: &Object,
        (width, height): (f64, f64),
        embedded: &Recognized,
    ) -> Result<Vec<Picture>, PdfError> {
        let covered = |area: &Rectangle| {
            embedded.words.iter().any(|w| {
                let (x, y) = (
                    (w.polygon[0] + w.polygon[2]) / 2.0 * POINTS_PER_INCH,
                    (w.polygon[1] + w.polygon[5]) / 2.0 * POINTS_PER_INCH,
                );
                (area.x1..=area.x2).contains(&x) && (area.y1..=area.y2).contains(&y)
            })
        };
        let areas: Vec<Rectangle> = self
            .image_areas(page)
            .into_iter()
            .filter(|a| a.x2 - a.x1 >= MIN_PICTURE.0 && a.y2 - a.y1 >= MIN_PICTURE.1 && !covered(a))
            .take(MAX_PICTURES)
            .scan(0.0, |pixels, area| {
                // Within the worker's time for a page: at most two full pages of pictures.
                *pixels += (area.x2 - area.x1) * (area.y2 - area.y1) * (RENDER_DPI / POINTS_PER_INCH).powi(2);
                (*pixels <= MAX_PICTURE_PIXELS).then_some(area)
            })
            .collect();
        if areas.is_empty() {
            return Ok(Vec::new());
        }
        let scan = self.render(page, width, height, RENDER_DPI)?;
        Ok(areas.iter().filter_map(|area| Picture::cut(&scan, area)).collect())
    }

    /// Where the page's images are drawn, in points from its (crop box's) top-left corner, as its
    /// words are.
    fn image_areas(&self, page: &Object) -> Vec<Rectangle> {
        // SAFETY: a live page; the list (of PopplerImageMapping) is Poppler's to free, below.
        let list = unsafe { (self.image_mapping)(page.handle.as_ptr()) };
        let mut areas = Vec::new();
        let mut node = list;
        while !node.is_null() {
            // SAFETY: a node of the list Poppler returned, its data an ImageMapping.
            let (data, next) = unsafe { ((*node).data.cast::<ImageMapping>(), (*node).next) };
            if !data.is_null() {
                // SAFETY: as above; copied before the list is freed.
                areas.push(unsafe { (*data).area });
            }
            node = next;
        }
        if !list.is_null() {
            // SAFETY: the list returned above, freed once with its mappings.
            unsafe { (self.free_image_mapping)(list) };
        }
        areas
    }

    /// The page's embedded words in inches, from its text and one rectangle per character.
    fn embedded_text(&self, page: &Object) -> Recognized {
        // SAFETY: a live page; the text is GLib's to free.
        let text = unsafe { (self.page_text)(page.handle.as_ptr()) };
        if text.is_null() {
            return Recognized::default();
        }
        // SAFETY: a NUL-terminated UTF-8 string from Poppler, copied before it is freed once.
        let chars: Vec<char> = unsafe { CStr::from_ptr(text) }.to_string_lossy().chars().collect();
        // SAFETY: the text returned above.
        unsafe { (self.free)(text.cast()) };
        if chars.iter().all(|c| c.is_whitespace()) {
            return Recognized::default();
        }
        let (mut rectangles, mut count): (*mut Rectangle, c_uint) = (std::ptr::null_mut(), 0);
        // SAFETY: a live page; Poppler writes an array of `count` rectangles for GLib to free.
        let found = unsafe { (self.text_layout)(page.handle.as_ptr(), &mut rectangles, &mut count) } != 0;
        if !found || rectangles.is_null() {
            return Recognized::default();
        }
        // SAFETY: the `count` rectangles Poppler returned, copied before they are freed once.
        let boxes = unsafe { std::slice::from_raw_parts(rectangles, count as usize) }.to_vec();
        // SAFETY: the array returned above.
        unsafe { (self.free)(rectangles.cast()) };
        layout(&chars, &boxes)
    }

    /// The page rendered white-backed at up to `dpi` as 8-bit gray.
    fn render(&self, page: &Object, width: f64, height: f64, dpi: f64) -> Result<Scan, PdfError> {
        let dpi = dpi.min(MAX_RENDER_SIDE * POINTS_PER_INCH / width.max(height).max(1.0));
        let (w, h) = ((width / POINTS_PER_INCH * dpi).ceil(), (height / POINTS_PER_INCH * dpi).ceil());
        if w < 1.0 || h < 1.0 {
            return Err(PdfError::Corrupt("a page has no size".into()));
        }
        let (w, h) = (w as c_int, h as c_int);
        // SAFETY: a new image surface of a valid format and size; destroyed below.
        let surface = unsafe { (self.surface_create)(FORMAT_RGB24, w, h) };
        // SAFETY: cairo returns an error surface rather than null; its status says which.
        if surface.is_null() || unsafe { (self.surface_status)(surface) } != 0 {
            return Err(PdfError::Engine("cairo could not make the page's image".into()));
        }
        let scale = dpi / POINTS_PER_INCH;
        // SAFETY: a valid surface; the context is destroyed before the surface is read.
        unsafe {
            let cr = (self.cairo_create)(surface);
            (self.cairo_source_rgb)(cr, 1.0, 1.0, 1.0);
            (self.cairo_paint)(cr);
            (self.cairo_scale)(cr, scale, scale);
            (self.render)(page.handle.as_ptr(), cr);
            (self.cairo_destroy)(cr);
            (self.surface_flush)(surface);
        }
        // SAFETY: the surface's rows, `stride` bytes each, `h` of them, read before it is destroyed.
        let gray = unsafe {
            let (data, stride) = ((self.surface_data)(surface), (self.surface_stride)(surface) as usize);
            let gray = (!data.is_null())
                .then(|| gray_from_rgb24(std::slice::from_raw_parts(data, stride * h as usize), stride, w as usize));
            (self.surface_destroy)(surface);
            gray
        };
        let gray = gray.ok_or_else(|| PdfError::Engine("cairo gave no pixels".into()))?;
        Ok(Scan { pixels: gray, width: w as u32, height: h as u32, dpi })
    }
}

/// The smallest image (width, height in points) read for text: a line of small print.
const MIN_PICTURE: (f64, f64) = (36.0, 10.0);
/// The most images of one page read, and their most pixels at 300 dpi (two US Letter pages), all
/// within the worker's time for a page.
const MAX_PICTURES: usize = 16;
const MAX_PICTURE_PIXELS: f64 = 2.0 * 2550.0 * 3300.0;

/// A page as Poppler gives it.
pub(crate) enum Page {
    /// With its embedded words, in inches, and the pictures on it still to be read.
    Text(PageText, Vec<Picture>),
    /// Without text: the page (no words yet) and its image.
    Scanned(PageText, Scan),
}

/// A rendered page: 8-bit gray pixels at `dpi`.
pub(crate) struct Scan {
    pub pixels: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub dpi: f64,
}

/// An image drawn on a text page, cut from the page's rendering: its pixels and where its top-left
/// corner lies on the page, in inches.
pub(crate) struct Picture {
    pub scan: Scan,
    pub left: f64,
    pub top: f64,
}

impl Picture {
    /// The part of `scan` under `area` (points), when it has pixels.
    fn cut(scan: &Scan, area: &Rectangle) -> Option<Picture> {
        let to_pixels =
            |points: f64, most: u32| ((points / POINTS_PER_INCH * scan.dpi).round().max(0.0) as u32).min(most);
        let (x0, x1) = (to_pixels(area.x1, scan.width), to_pixels(area.x2, scan.width));
        let (y0, y1) = (to_pixels(area.y1, scan.height), to_pixels(area.y2, scan.height));
        let (width, height) = (x1.checked_sub(x0)?, y1.checked_sub(y0)?);
        if width == 0 || height == 0 {
            return None;
        }
        let row = scan.width as usize;
        let pixels = (y0..y1)
            .flat_map(|y| &scan.pixels[y as usize * row + x0 as usize..y as usize * row + x1 as usize])
            .copied()
            .collect();
        let (left, top) = (f64::from(x0) / scan.dpi, f64::from(y0) / scan.dpi);
        Some(Picture { scan: Scan { pixels, width, height, dpi: scan.dpi }, left, top })
    }

    /// What Tesseract read on the picture, placed on the page in inches.
    pub(crate) fn placed(&self, mut read: Recognized) -> Recognized {
        let (factor, left, top) = (1.0 / self.scan.dpi, self.left, self.top);
        for polygon in polygons_mut(&mut read) {
            for (i, c) in polygon.iter_mut().enumerate() {
                *c = *c * factor + if i % 2 == 0 { left } else { top };
            }
        }
        read
    }
}

/// `read` added to the end of the page: its words, lines and paragraphs after the page's own.
pub(crate) fn append(page: &mut PageText, read: Recognized) {
    let (words, lines) = (page.words.len(), page.lines.len());
    page.words.extend(read.words);
    page.lines.extend(read.lines.into_iter().map(|l| Line { words: l.words.start + words..l.words.end + words, ..l }));
    let paragraphs = read.paragraphs.into_iter();
    page.paragraphs.extend(paragraphs.map(|p| Paragraph { lines: p.lines.start + lines..p.lines.end + lines, ..p }));
    // The tables and marks of the pictures are not taken: the page's own rendering (layout) has
    // them already, and prebuilt-read gives none.
}

/// The page with what was read on it; Tesseract's pixels become inches at `dpi` when it is a scan.
pub(crate) fn with(mut page: PageText, recognized: Recognized) -> PageText {
    (page.words, page.lines, page.paragraphs) = (recognized.words, recognized.lines, recognized.paragraphs);
    page.tables = recognized.tables;
    page.selection_marks = recognized.selection_marks;
    page
}

/// A text page's own words (in inches) with the ruled tables and check boxes drawn on it, found in
/// its rendering as on a scan: a PDF's text layer says nothing of the lines drawn around it.
fn with_drawn(mut embedded: Recognized, scan: &Scan) -> Recognized {
    let grids = crate::tables::grids(&scan.pixels, scan.width, scan.height);
    let marks = crate::marks::selection_marks(&scan.pixels, scan.width, scan.height);
    scale(&mut embedded, scan.dpi);
    embedded.tables = crate::tables::tables(&grids, &embedded.words);
    embedded.selection_marks = marks;
    in_inches(embedded, scan.dpi)
}

/// What Tesseract read on a scan at `dpi`, in inches.
pub(crate) fn in_inches(mut recognized: Recognized, dpi: f64) -> Recognized {
    scale(&mut recognized, 1.0 / dpi);
    recognized
}

/// Rows of xRGB (native-endian 32-bit) pixels as 8-bit gray.
fn gray_from_rgb24(data: &[u8], stride: usize, width: usize) -> Vec<u8> {
    let mut gray = Vec::with_capacity(width * data.len() / stride.max(1));
    for row in data.chunks_exact(stride) {
        for px in row[..width * 4].chunks_exact(4) {
            let pixel = u32::from_ne_bytes([px[0], px[1], px[2], px[3]]);
            let [r, g, b] = [(pixel >> 16) & 0xFF, (pixel >> 8) & 0xFF, pixel & 0xFF];
            gray.push(((r * 299 + g * 587 + b * 114) / 1000) as u8);
        }
    }
    gray
}

/// Every polygon of what was read: its words', lines', paragraphs', tables' and marks'.
fn polygons_mut(recognized: &mut Recognized) -> impl Iterator<Item = &mut Polygon> {
    let polygons = recognized.words.iter_mut().map(|w| &mut w.polygon);
    let polygons = polygons.chain(recognized.lines.iter_mut().map(|l| &mut l.polygon));
    let tables = recognized.tables.iter_mut().flat_map(crate::Table::polygons_mut);
    let tables = tables.chain(recognized.selection_marks.iter_mut().map(|m| &mut m.polygon));
    polygons.chain(recognized.paragraphs.iter_mut().map(|p| &mut p.polygon)).chain(tables)
}

/// Multiplies every polygon's coordinates by `factor` (pixels to inches).
fn scale(recognized: &mut Recognized, factor: f64) {
    for polygon in polygons_mut(recognized) {
        polygon.iter_mut().for_each(|c| *c *= factor);
    }
}

/// A gap between two characters wider than this share of their height parts two words (a space
/// is about 0.28 em wide; letters of a word touch or nearly).
const WORD_GAP: f64 = 0.3;

/// A word being read: its text, bounds, and whether it begins a line.
struct Pending {
    text: String,
    bounds: Rectangle,
    begins_line: bool,
}

/// Words (split at whitespace, and where characters stand apart), lines (at a newline or where the
/// text moves down past the previous character) and paragraphs (where the gap to the next line
/// exceeds a line's height).
fn layout(chars: &[char], boxes: &[Rectangle]) -> Recognized {
    let mut words: Vec<Pending> = Vec::new();
    let mut current: Option<Pending> = None;
    let (mut line_break, mut previous): (bool, Option<Rectangle>) = (true, None);
    for (&c, &r) in chars.iter().zip(boxes) {
        if c.is_whitespace() {
            words.extend(current.take());
            line_break |= c == '\n';
            continue;
        }
        if previous.is_some_and(|p| r.y1 >= p.y2) {
            words.extend(current.take());
            line_break = true;
        } else if previous.is_some_and(|p| r.x1 - p.x2 > WORD_GAP * (r.y2 - r.y1)) {
            // Text placed apart on one line (table cells, columns) comes without a space between.
            words.extend(current.take());
        }
        match current.as_mut() {
            Some(word) => {
                word.text.push(c);
                word.bounds = union(word.bounds, r);
            }
            None => {
                current = Some(Pending { text: c.to_string(), bounds: r, begins_line: std::mem::take(&mut line_break) })
            }
        }
        previous = Some(r);
    }
    words.extend(current);
    group(words)
}

fn union(a: Rectangle, b: Rectangle) -> Rectangle {
    Rectangle { x1: a.x1.min(b.x1), y1: a.y1.min(b.y1), x2: a.x2.max(b.x2), y2: a.y2.max(b.y2) }
}

fn polygon(r: Rectangle) -> Polygon {
    let [l, t, rt, b] = [r.x1, r.y1, r.x2, r.y2].map(|p| p / POINTS_PER_INCH);
    [l, t, rt, t, rt, b, l, b]
}

/// Words, each marked when it begins a line, into lines and paragraphs.
fn group(words: Vec<Pending>) -> Recognized {
    let mut out = Recognized::default();
    let mut line_boxes: Vec<Rectangle> = Vec::new();
    for Pending { text, bounds, begins_line } in words {
        let at = out.words.len();
        if begins_line || line_boxes.is_empty() {
            line_boxes.push(bounds);
            out.lines.push(Line { words: at..at, polygon: polygon(bounds) });
        }
        if let (Some(line), Some(line_box)) = (out.lines.last_mut(), line_boxes.last_mut()) {
            *line_box = union(*line_box, bounds);
            line.words.end = at + 1;
            line.polygon = polygon(*line_box);
        }
        out.words.push(Word { text, polygon: polygon(bounds), confidence: 1.0 });
    }
    let mut start = 0;
    for i in 0..line_boxes.len() {
        let last = i + 1 == line_boxes.len();
        let (this, height) = (line_boxes[i], line_boxes[i].y2 - line_boxes[i].y1);
        if last || line_boxes[i + 1].y1 - this.y2 > height {
            let bounds = line_boxes[start..=i].iter().copied().reduce(union).unwrap_or(this);
            out.paragraphs.push(Paragraph { lines: start..i + 1, polygon: polygon(bounds) });
            start = i + 1;
        }
    }
    out
}

/// A mapped file, unmapped when dropped.
struct Mapping {
    data: *mut c_void,
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, unmapped once, after the document that read it.
        let _ = unsafe { rustix::mm::munmap(self.data, self.len) };
    }
}

/// A GObject (page) released when dropped.
struct Object {
    handle: NonNull<c_void>,
    unref: PointerFn,
}

impl Drop for Object {
    fn drop(&mut self) {
        // SAFETY: a reference Poppler gave us, released once.
        unsafe { (self.unref)(self.handle.as_ptr()) };
    }
}

/// An open PDF and the memory it reads.
pub(crate) struct Document {
    handle: NonNull<c_void>,
    unref: PointerFn,
    // Dropped after the document (fields drop in order, `drop` below runs first).
    _map: Mapping,
}

impl Drop for Document {
    fn drop(&mut self) {
        // SAFETY: the document's reference, released once, before its data is unmapped.
        unsafe { (self.unref)(self.handle.as_ptr()) };
    }
}
