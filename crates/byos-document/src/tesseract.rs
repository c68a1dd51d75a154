//! Tesseract 5, the OCR engine: Debian's `libtesseract5` and its English data
//! (`tesseract-ocr-eng`), loaded at run time so that byos builds and starts without them (a read
//! then fails with an engine error naming the packages).
//!
//! With [`crate::poppler`], one of the two modules of this crate that call C (through the C API of
//! `tesseract/capi.h`, declared here by hand: Debian ships no -dev package at run time). One
//! [`Tesseract`] per worker process reads one 8-bit gray page at a time.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_float, c_int, c_uchar, c_void};
use std::ptr::NonNull;

use crate::{Line, Paragraph, Polygon, Word};

const LIBRARY: &str = "libtesseract.so.5";
const INSTALL: &str = "install Debian's libtesseract5 and tesseract-ocr-eng";

// TessPageIteratorLevel.
const RIL_BLOCK: c_int = 0;
const RIL_PARA: c_int = 1;
const RIL_TEXTLINE: c_int = 2;
const RIL_WORD: c_int = 3;
/// TessPageSegMode PSM_AUTO: find the page's blocks and paragraphs (the API's default is one
/// uniform block; the `tesseract` program's is this).
const PSM_AUTO: c_int = 3;

type CreateFn = unsafe extern "C" fn() -> *mut c_void;
type HandleFn = unsafe extern "C" fn(*mut c_void);
type Init3Fn = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char) -> c_int;
type SetImageFn = unsafe extern "C" fn(*mut c_void, *const c_uchar, c_int, c_int, c_int, c_int);
type SetResolutionFn = unsafe extern "C" fn(*mut c_void, c_int);
type SetModeFn = unsafe extern "C" fn(*mut c_void, c_int);
type SetVariableFn = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char) -> c_int;
type RecognizeFn = unsafe extern "C" fn(*mut c_void, *mut c_void) -> c_int;
type GetIteratorFn = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type PageIteratorFn = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type BoundingBoxFn =
    unsafe extern "C" fn(*const c_void, c_int, *mut c_int, *mut c_int, *mut c_int, *mut c_int) -> c_int;
type NextFn = unsafe extern "C" fn(*mut c_void, c_int) -> c_int;
type AtBeginningFn = unsafe extern "C" fn(*const c_void, c_int) -> c_int;
type TextFn = unsafe extern "C" fn(*const c_void, c_int) -> *mut c_char;
type ConfidenceFn = unsafe extern "C" fn(*const c_void, c_int) -> c_float;
type DeleteTextFn = unsafe extern "C" fn(*const c_char);

/// Keeps Tesseract (its OpenMP loops) to one thread: the pool runs one worker per core.
pub(crate) fn one_thread() {
    // SAFETY: called first thing in the worker process, before any other thread exists and
    // before libgomp (loaded with Tesseract) reads its environment.
    unsafe { std::env::set_var("OMP_THREAD_LIMIT", "1") };
}

/// What Tesseract read on one page, in the page's pixels, in its reading order.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Recognized {
    pub words: Vec<Word>,
    pub lines: Vec<Line>,
    pub paragraphs: Vec<Paragraph>,
    #[serde(default)]
    pub tables: Vec<crate::Table>,
    #[serde(default)]
    pub selection_marks: Vec<crate::SelectionMark>,
}

/// The library, the functions byos uses, and one initialized `TessBaseAPI`.
pub(crate) struct Tesseract {
    // Kept loaded for as long as the function pointers below are used.
    _library: libloading::Library,
    api: NonNull<c_void>,
    end: HandleFn,
    delete: HandleFn,
    set_image: SetImageFn,
    set_resolution: SetResolutionFn,
    recognize: RecognizeFn,
    clear: HandleFn,
    get_iterator: GetIteratorFn,
    page_iterator: PageIteratorFn,
    bounding_box: BoundingBoxFn,
    next: NextFn,
    at_beginning: AtBeginningFn,
    text: TextFn,
    confidence: ConfidenceFn,
    delete_text: DeleteTextFn,
    delete_iterator: HandleFn,
}

fn unavailable(e: impl std::fmt::Display) -> String {
    format!("{LIBRARY} is not usable: {e} ({INSTALL})")
}

impl Tesseract {
    /// Loads the library and initializes English (from Tesseract's own tessdata directory, or
    /// `TESSDATA_PREFIX`).
    pub(crate) fn load() -> Result<Tesseract, String> {
        // SAFETY: the system's Tesseract library; loading it runs only its initializers.
        let library = unsafe { libloading::Library::new(LIBRARY) }.map_err(unavailable)?;
        macro_rules! symbol {
            ($name:literal) => {
                // SAFETY: the type given is the function's C signature in Tesseract 5's capi.h.
                *unsafe { library.get(concat!($name, "\0").as_bytes()) }.map_err(unavailable)?
            };
        }
        let create: CreateFn = symbol!("TessBaseAPICreate");
        let init: Init3Fn = symbol!("TessBaseAPIInit3");
        let delete: HandleFn = symbol!("TessBaseAPIDelete");
        // SAFETY: TessBaseAPICreate takes nothing and returns a new handle (or null).
        let api = NonNull::new(unsafe { create() }).ok_or_else(|| unavailable("TessBaseAPICreate failed"))?;
        // SAFETY: a fresh handle; a null datapath is Tesseract's default, "eng" a NUL-terminated name.
        if unsafe { init(api.as_ptr(), std::ptr::null(), c"eng".as_ptr()) } != 0 {
            // SAFETY: the handle made above, not used again.
            unsafe { delete(api.as_ptr()) };
            return Err(unavailable("its English data could not be loaded"));
        }
        let set_mode: SetModeFn = symbol!("TessBaseAPISetPageSegMode");
        let set_variable: SetVariableFn = symbol!("TessBaseAPISetVariable");
        // SAFETY: an initialized handle; PSM_AUTO is one of capi.h's TessPageSegMode values, the
        // variable's name and value NUL-terminated strings. Tesseract's notes ("Estimating
        // resolution as ...", on every page without a stated dpi) would fill the server's log.
        unsafe {
            set_mode(api.as_ptr(), PSM_AUTO);
            set_variable(api.as_ptr(), c"debug_file".as_ptr(), c"/dev/null".as_ptr());
        }
        Ok(Tesseract {
            api,
            end: symbol!("TessBaseAPIEnd"),
            delete,
            set_image: symbol!("TessBaseAPISetImage"),
            set_resolution: symbol!("TessBaseAPISetSourceResolution"),
            recognize: symbol!("TessBaseAPIRecognize"),
            clear: symbol!("TessBaseAPIClear"),
            get_iterator: symbol!("TessBaseAPIGetIterator"),
            page_iterator: symbol!("TessResultIteratorGetPageIterator"),
            bounding_box: symbol!("TessPageIteratorBoundingBox"),
            next: symbol!("TessPageIteratorNext"),
            at_beginning: symbol!("TessPageIteratorIsAtBeginningOf"),
            text: symbol!("TessResultIteratorGetUTF8Text"),
            confidence: symbol!("TessResultIteratorConfidence"),
            delete_text: symbol!("TessDeleteText"),
            delete_iterator: symbol!("TessResultIteratorDelete"),
            _library: library,
        })
    }

    /// Reads an 8-bit gray page of `width` x `height` (`pixels` row by row, one byte each) at
    /// `dpi` (0: unknown, Tesseract estimates it from the text).
    pub(crate) fn read(&mut self, pixels: &[u8], width: u32, height: u32, dpi: u32) -> Result<Recognized, String> {
        let (w, h) = (c_int::try_from(width), c_int::try_from(height));
        let (Ok(w), Ok(h)) = (w, h) else { return Err("the page is too large".into()) };
        if pixels.len() != width as usize * height as usize {
            return Err(format!("{} bytes are not a {width}x{height} gray page", pixels.len()));
        }
        let grids = crate::tables::grids(pixels, width, height);
        let marks = crate::marks::selection_marks(pixels, width, height);
        let clean = crate::tables::without_rules(pixels, width, &grids, &marks);
        let image = clean.as_deref().unwrap_or(pixels);
        let api = self.api.as_ptr();
        // SAFETY: `image` holds w*h bytes (the size checked above for `pixels`) and outlives the
        // recognition below: the image is cleared before this function returns. One byte per
        // pixel, w bytes per line.
        unsafe { (self.set_image)(api, image.as_ptr(), w, h, 1, w) };
        if dpi > 0 {
            // SAFETY: a handle with an image set.
            unsafe { (self.set_resolution)(api, c_int::try_from(dpi).unwrap_or(c_int::MAX)) };
        }
        // SAFETY: a handle with an image set; a null monitor is allowed.
        let outcome = if unsafe { (self.recognize)(api, std::ptr::null_mut()) } == 0 {
            // SAFETY: recognition succeeded on this handle.
            let iterator = unsafe { (self.get_iterator)(api) };
            let mut recognized = NonNull::new(iterator).map(|it| self.walk(it)).unwrap_or_default();
            recognized.tables = crate::tables::tables(&grids, &recognized.words);
            recognized.selection_marks = marks;
            if !iterator.is_null() {
                // SAFETY: the iterator made above, not used again.
                unsafe { (self.delete_iterator)(iterator) };
            }
            Ok(recognized)
        } else {
            Err("Tesseract could not recognize the page".into())
        };
        // SAFETY: drops the image and results (Tesseract never keeps a pointer into `image` after this).
        unsafe { (self.clear)(api) };
        outcome
    }

    /// Every word in reading order, with the lines and paragraphs they begin.
    fn walk(&self, iterator: NonNull<c_void>) -> Recognized {
        let it = iterator.as_ptr();
        // SAFETY: a result iterator is a page iterator; this is its own view, freed with it.
        let page = unsafe { (self.page_iterator)(it) };
        let mut out = Recognized::default();
        let (mut new_paragraph, mut new_line) = (None, None);
        loop {
            if self.at_beginning(page, RIL_BLOCK) || self.at_beginning(page, RIL_PARA) {
                new_paragraph = self.bounding_box(page, RIL_PARA);
            }
            if self.at_beginning(page, RIL_TEXTLINE) {
                new_line = self.bounding_box(page, RIL_TEXTLINE);
            }
            if let (Some(text), Some(polygon)) = (self.word_text(it), self.bounding_box(page, RIL_WORD)) {
                // SAFETY: the iterator is on a word.
                let confidence = f64::from(unsafe { (self.confidence)(it, RIL_WORD) } / 100.0).clamp(0.0, 1.0);
                out.push(Word { text, polygon, confidence }, new_line.take(), new_paragraph.take());
            }
            // SAFETY: the page iterator of a live result iterator.
            if unsafe { (self.next)(page, RIL_WORD) } == 0 {
                return out;
            }
        }
    }

    fn at_beginning(&self, page: *mut c_void, level: c_int) -> bool {
        // SAFETY: the page iterator of a live result iterator.
        unsafe { (self.at_beginning)(page, level) != 0 }
    }

    fn bounding_box(&self, page: *mut c_void, level: c_int) -> Option<Polygon> {
        let (mut left, mut top, mut right, mut bottom) = (0, 0, 0, 0);
        // SAFETY: the page iterator of a live result iterator; four ints to write.
        let found = unsafe { (self.bounding_box)(page, level, &mut left, &mut top, &mut right, &mut bottom) };
        let [l, t, r, b] = [left, top, right, bottom].map(f64::from);
        (found != 0).then_some([l, t, r, t, r, b, l, b])
    }

    fn word_text(&self, it: *mut c_void) -> Option<String> {
        // SAFETY: a live result iterator; the text is Tesseract's to free with TessDeleteText.
        let text = unsafe { (self.text)(it, RIL_WORD) };
        if text.is_null() {
            return None;
        }
        // SAFETY: a NUL-terminated string from Tesseract, copied before it is freed.
        let word = unsafe { CStr::from_ptr(text) }.to_string_lossy().trim().to_owned();
        // SAFETY: the text returned above, freed once.
        unsafe { (self.delete_text)(text) };
        (!word.is_empty()).then_some(word)
    }
}

impl Recognized {
    /// Adds a word; `line` and `paragraph` are the boxes of those it begins, if it does.
    fn push(&mut self, word: Word, line: Option<Polygon>, paragraph: Option<Polygon>) {
        let at = self.words.len();
        if let Some(polygon) = paragraph.or(if self.paragraphs.is_empty() { Some(word.polygon) } else { None }) {
            self.paragraphs.push(Paragraph { lines: self.lines.len()..self.lines.len(), polygon });
        }
        let starts_line = line.is_some() || self.lines.is_empty() || self.lines_of_last_paragraph_empty();
        if starts_line {
            let polygon = line.unwrap_or(word.polygon);
            self.lines.push(Line { words: at..at, polygon });
            if let Some(paragraph) = self.paragraphs.last_mut() {
                paragraph.lines.end = self.lines.len();
            }
        }
        if let Some(line) = self.lines.last_mut() {
            line.words.end = at + 1;
        }
        self.words.push(word);
    }

    fn lines_of_last_paragraph_empty(&self) -> bool {
        self.paragraphs.last().is_some_and(|p| p.lines.is_empty())
    }
}

impl Drop for Tesseract {
    fn drop(&mut self) {
        // SAFETY: the handle made in `load`, ended and deleted once.
        unsafe {
            (self.end)(self.api.as_ptr());
            (self.delete)(self.api.as_ptr());
        }
    }
}
