//! Aligning a document to a template model before its fields are read.
//!
//! A template's forms share printed text at fixed places (keys, headings, captions): its anchors,
//! learned from the training documents' words (the labeling tool's `X.ocr.json` where it is there,
//! else the document read by the engine). A document scanned or printed with an offset or at another
//! scale has its anchors elsewhere; where they are found, the displacement maps the learned field
//! regions onto the document, per axis (a scale and an offset), so the fields are read where this
//! document has them. Where too few anchors are found the regions are used as learned.

use std::collections::BTreeMap;

use byos_document::{PageText, Word};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A word printed at the same place on the template's forms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anchor {
    pub page: u32,
    pub text: String,
    /// Its centre in 0-1 page coordinates (the median over the training documents).
    pub at: [f64; 2],
}

/// A document's words: (page, text, centre in 0-1 page coordinates).
pub type Placed = Vec<(u32, String, [f64; 2])>;

/// How far (page-relative) a word may lie from its median place on the training documents and
/// still be the same anchor, and from where a document's alignment puts it and still agree with it.
const TOLERANCE: f64 = 0.03;
/// The share of training documents an anchor must be found on.
const SUPPORT: f64 = 0.6;
/// Anchors kept per page (the best supported).
const MAX_PER_PAGE: usize = 64;
/// Below this spread of the matched anchors along an axis a scale cannot be told from noise: the
/// axis is only shifted.
const MIN_SPREAD: f64 = 0.15;
/// Scales outside this range are not a rescan of the same form.
const SCALES: std::ops::RangeInclusive<f64> = 0.8..=1.25;

/// The words of pages the engine read.
pub fn placed(pages: &[PageText]) -> Placed {
    let mut words = Vec::new();
    for page in pages {
        for word in &page.words {
            words.push((page.number, word.text.clone(), word_centre(page, word)));
        }
    }
    words
}

/// The centre of a word of `page` in 0-1 page coordinates.
pub fn word_centre(page: &PageText, word: &Word) -> [f64; 2] {
    let p = &word.polygon;
    [centre([p[0], p[2], p[4], p[6]], page.width), centre([p[1], p[3], p[5], p[7]], page.height)]
}

/// Whether the point `at` lies in `region` (`[x0, y0, x1, y1]`) widened by `margin` on every side.
pub fn within(region: &[f64; 4], at: [f64; 2], margin: f64) -> bool {
    let [x, y] = at;
    x >= region[0] - margin && x <= region[2] + margin && y >= region[1] - margin && y <= region[3] + margin
}

fn centre(values: [f64; 4], extent: f64) -> f64 {
    values.iter().sum::<f64>() / 4.0 / extent.max(f64::EPSILON)
}

/// The words of a labeling tool's `X.ocr.json`: a v2.1 layout result (`analyzeResult.readResults`,
/// words with `boundingBox`) or a v3/v4 one (`analyzeResult.pages`, words with `polygon`).
pub fn from_ocr_json(bytes: &[u8]) -> Result<Placed, String> {
    let ocr: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let result = &ocr["analyzeResult"];
    let (pages, number_key, text_key, box_key) = match (result["readResults"].as_array(), result["pages"].as_array()) {
        (Some(pages), _) => (pages, "page", "text", "boundingBox"),
        (None, Some(pages)) => (pages, "pageNumber", "content", "polygon"),
        (None, None) => return Err("it has neither analyzeResult.readResults nor analyzeResult.pages".into()),
    };
    let mut words = Vec::new();
    for page in pages {
        let number = page[number_key].as_u64().ok_or("a page has no number")? as u32;
        let (width, height) = match (page["width"].as_f64(), page["height"].as_f64()) {
            (Some(w), Some(h)) if w > 0.0 && h > 0.0 => (w, h),
            _ => return Err(format!("page {number} has no width and height")),
        };
        // v2.1 keeps words under lines; v3/v4 on the page.
        let page_words = page["lines"].as_array().into_iter().flatten().flat_map(|l| l["words"].as_array()).flatten();
        for word in page_words.chain(page["words"].as_array().into_iter().flatten()) {
            let text = word[text_key].as_str().ok_or("a word has no text")?;
            let numbers: Vec<f64> = word[box_key].as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
            if numbers.len() != 8 {
                return Err(format!("the word {text:?} on page {number} has no box of 8 numbers"));
            }
            let xs = [numbers[0], numbers[2], numbers[4], numbers[6]];
            let ys = [numbers[1], numbers[3], numbers[5], numbers[7]];
            words.push((number, text.to_owned(), [centre(xs, width), centre(ys, height)]));
        }
    }
    Ok(words)
}

/// Whether a word can anchor: two characters or more, a letter or digit among them.
fn anchorable(text: &str) -> bool {
    text.chars().count() >= 2 && text.chars().any(char::is_alphanumeric)
}

/// A document's words that occur once on their page: (page, text) -> centre.
fn unique(words: &Placed) -> BTreeMap<(u32, &str), [f64; 2]> {
    let mut seen: BTreeMap<(u32, &str), Option<[f64; 2]>> = BTreeMap::new();
    for (page, text, at) in words.iter().filter(|(_, text, _)| anchorable(text)) {
        seen.entry((*page, text.as_str())).and_modify(|again| *again = None).or_insert(Some(*at));
    }
    seen.into_iter().filter_map(|(key, at)| at.map(|at| (key, at))).collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The anchors of the training documents: words found once on the same page of most of them, at
/// the same place, outside `excluded` (the learned field regions: values change from form to form).
pub fn learn(documents: &[Placed], excluded: &[(u32, [f64; 4])]) -> Vec<Anchor> {
    let read: Vec<BTreeMap<(u32, &str), [f64; 2]>> = documents.iter().filter(|d| !d.is_empty()).map(unique).collect();
    let needed = ((read.len() as f64 * SUPPORT).ceil() as usize).max(1);
    let mut places: BTreeMap<(u32, &str), Vec<[f64; 2]>> = BTreeMap::new();
    for document in &read {
        for (key, at) in document {
            places.entry(*key).or_default().push(*at);
        }
    }
    let in_field = |page: u32, at: [f64; 2]| excluded.iter().any(|(p, r)| *p == page && within(r, at, 0.0));
    let mut found: Vec<(usize, Anchor)> = Vec::new();
    for ((page, text), at) in places {
        let m = [median(at.iter().map(|a| a[0]).collect()), median(at.iter().map(|a| a[1]).collect())];
        let agreeing = at.iter().filter(|a| (a[0] - m[0]).abs() <= TOLERANCE && (a[1] - m[1]).abs() <= TOLERANCE);
        let support = agreeing.count();
        if support >= needed && !in_field(page, m) {
            found.push((support, Anchor { page, text: text.to_owned(), at: m }));
        }
    }
    // The best supported first; per page at most MAX_PER_PAGE.
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| (a.1.page, &a.1.text).cmp(&(b.1.page, &b.1.text))));
    let mut per_page: BTreeMap<u32, usize> = BTreeMap::new();
    let mut anchors = Vec::new();
    for (_, anchor) in found {
        let kept = per_page.entry(anchor.page).or_default();
        if *kept < MAX_PER_PAGE {
            *kept += 1;
            anchors.push(anchor);
        }
    }
    anchors
}

/// Where a page has its template's regions: per axis, learned coordinate c -> scale * c + offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alignment {
    x: (f64, f64),
    y: (f64, f64),
}

impl Alignment {
    pub const IDENTITY: Alignment = Alignment { x: (1.0, 0.0), y: (1.0, 0.0) };

    /// A learned region `[x0, y0, x1, y1]` where this page has it.
    pub fn region(&self, r: &[f64; 4]) -> [f64; 4] {
        let (sx, ox) = self.x;
        let (sy, oy) = self.y;
        [sx * r[0] + ox, sy * r[1] + oy, sx * r[2] + ox, sy * r[3] + oy]
    }

    /// A learned point where this page has it.
    fn point(&self, at: [f64; 2]) -> [f64; 2] {
        [self.x.0 * at[0] + self.x.1, self.y.0 * at[1] + self.y.1]
    }
}

/// The alignment of `page` to the template from the anchors it has, else the identity. The fit is
/// repeated without the anchor that fits it worst until every anchor left lies within
/// `TOLERANCE` of where it puts it (a word printed elsewhere on this page is not an anchor), and
/// needs at least two.
pub fn align(anchors: &[Anchor], page: &PageText) -> Alignment {
    let words = placed(std::slice::from_ref(page));
    let found = unique(&words);
    let mut pairs: Vec<([f64; 2], [f64; 2])> = anchors
        .iter()
        .filter(|a| a.page == page.number)
        .filter_map(|a| found.get(&(page.number, a.text.as_str())).map(|at| (a.at, *at)))
        .collect();
    while pairs.len() >= 2 {
        let axis = |i: usize| fit(&pairs.iter().map(|(a, d)| (a[i], d[i])).collect::<Vec<_>>());
        let alignment = Alignment { x: axis(0), y: axis(1) };
        let miss = |(a, d): &([f64; 2], [f64; 2])| {
            let at = alignment.point(*a);
            (at[0] - d[0]).abs().max((at[1] - d[1]).abs())
        };
        let Some((worst, residual)) = pairs.iter().map(miss).enumerate().max_by(|a, b| a.1.total_cmp(&b.1)) else {
            break;
        };
        if residual <= TOLERANCE {
            return alignment;
        }
        pairs.swap_remove(worst);
    }
    Alignment::IDENTITY
}

/// The scale and offset taking learned coordinates to the document's along one axis (least
/// squares; only an offset where the anchors are too close together or the scale is implausible).
fn fit(pairs: &[(f64, f64)]) -> (f64, f64) {
    let n = pairs.len() as f64;
    let mean_a = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_d = pairs.iter().map(|p| p.1).sum::<f64>() / n;
    let (low, high) = pairs.iter().fold((f64::MAX, f64::MIN), |(l, h), p| (l.min(p.0), h.max(p.0)));
    if high - low >= MIN_SPREAD {
        let covariance: f64 = pairs.iter().map(|p| (p.0 - mean_a) * (p.1 - mean_d)).sum();
        let variance: f64 = pairs.iter().map(|p| (p.0 - mean_a).powi(2)).sum();
        let scale = covariance / variance;
        if SCALES.contains(&scale) {
            return (scale, mean_d - scale * mean_a);
        }
    }
    (1.0, mean_d - mean_a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use byos_document::Unit;

    fn page(words: &[(&str, f64, f64)]) -> PageText {
        let words = words
            .iter()
            .map(|(text, x, y)| Word {
                text: (*text).to_owned(),
                polygon: [x - 5.0, y - 5.0, x + 5.0, y - 5.0, x + 5.0, y + 5.0, x - 5.0, y + 5.0],
                confidence: 1.0,
            })
            .collect();
        PageText {
            number: 1,
            width: 1000.0,
            height: 1000.0,
            unit: Unit::Pixel,
            angle: 0.0,
            words,
            lines: Vec::new(),
            paragraphs: Vec::new(),
            tables: Vec::new(),
            selection_marks: Vec::new(),
        }
    }

    fn form(name: &str, shift: (f64, f64)) -> PageText {
        let (dx, dy) = shift;
        page(&[
            ("Name:", 100.0 + dx, 100.0 + dy),
            (name, 400.0 + dx, 100.0 + dy),
            ("Date:", 100.0 + dx, 400.0 + dy),
            ("Total:", 100.0 + dx, 700.0 + dy),
            ("Signed", 800.0 + dx, 900.0 + dy),
        ])
    }

    fn trained() -> Vec<Anchor> {
        let documents: Vec<Placed> = ["Ada", "Alan", "Grace"].iter().map(|n| placed(&[form(n, (0.0, 0.0))])).collect();
        learn(&documents, &[(1, [0.3, 0.05, 0.6, 0.15])])
    }

    #[test]
    fn anchors_are_the_words_every_form_prints_at_one_place_outside_the_fields() {
        let texts: Vec<String> = trained().into_iter().map(|a| a.text).collect();
        assert_eq!(texts, ["Date:", "Name:", "Signed", "Total:"]);
    }

    #[test]
    fn a_shifted_form_moves_the_regions_with_it() {
        let alignment = align(&trained(), &form("Edsger", (80.0, -50.0)));
        let moved = alignment.region(&[0.3, 0.05, 0.6, 0.15]);
        let expected = [0.38, 0.0, 0.68, 0.1];
        assert!(moved.iter().zip(expected).all(|(m, e)| (m - e).abs() < 1e-9), "{moved:?}");
    }

    #[test]
    fn a_rescaled_form_scales_the_regions() {
        let scaled = page(&[
            ("Name:", 110.0, 110.0),
            ("Date:", 110.0, 440.0),
            ("Total:", 110.0, 770.0),
            ("Signed", 880.0, 990.0),
        ]);
        let moved = align(&trained(), &scaled).region(&[0.3, 0.1, 0.6, 0.2]);
        let expected = [0.33, 0.11, 0.66, 0.22];
        assert!(moved.iter().zip(expected).all(|(m, e)| (m - e).abs() < 1e-9), "{moved:?}");
    }

    #[test]
    fn too_few_agreeing_anchors_leave_the_regions_as_learned() {
        let anchors = trained();
        assert_eq!(align(&anchors, &page(&[("Name:", 300.0, 300.0)])), Alignment::IDENTITY);
        let scattered = page(&[("Name:", 300.0, 300.0), ("Date:", 100.0, 900.0), ("Total:", 700.0, 100.0)]);
        assert_eq!(align(&anchors, &scattered), Alignment::IDENTITY);
    }

    #[test]
    fn ocr_json_of_both_layout_versions_is_read_and_a_broken_one_says_why() {
        let v2 = br#"{"status":"succeeded","analyzeResult":{"readResults":[{"page":1,"width":200,"height":100,"unit":"pixel",
            "lines":[{"text":"Name: Ada","words":[{"text":"Name:","boundingBox":[10,10,30,10,30,20,10,20]}]}]}]}}"#;
        assert_eq!(from_ocr_json(v2).unwrap_or_else(|e| panic!("{e}")), vec![(1, "Name:".to_owned(), [0.1, 0.15])]);
        let v3 = br#"{"analyzeResult":{"pages":[{"pageNumber":2,"width":8.5,"height":11,"unit":"inch",
            "words":[{"content":"Total:","polygon":[0,0,1.7,0,1.7,2.2,0,2.2]}]}]}}"#;
        let read = from_ocr_json(v3).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(read.as_slice(), [(2, text, [x, y])] if text == "Total:" && (x - 0.1).abs() < 1e-9 && (y - 0.1).abs() < 1e-9),
            "{read:?}"
        );
        let broken = br#"{"analyzeResult":{"pages":[{"pageNumber":1,"width":1,"height":1,"words":[{"content":"x","polygon":[1]}]}]}}"#;
        assert!(from_ocr_json(broken).is_err_and(|e| e.contains("8 numbers")));
        assert!(from_ocr_json(b"{}").is_err_and(|e| e.contains("readResults")));
    }
}
