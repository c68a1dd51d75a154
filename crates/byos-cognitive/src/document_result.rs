//! What an analysis answers: the pages the engine read ([`byos_document::PageText`]) in Azure's
//! `AnalyzeResult` shape (2023-07-31 and 2024-11-30): one `content` string, and every word, line,
//! paragraph and page pointing into it with spans counted in the caller's `stringIndexType`.
//!
//! `prebuilt-read` gives pages (words, lines) and paragraphs; `prebuilt-layout` the same, and in
//! markdown its content separates paragraphs by blank lines and pages by `<!-- PageBreak -->`.
//! Nothing the engine did not detect (tables, selection marks, figures) is invented.

use byos_document::{PageText, Polygon, SelectionState, Table, Unit};
use serde_json::{Value, json};

/// How spans count characters (`stringIndexType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringIndex {
    /// User-perceived characters (Azure's v4 default); byos counts Unicode scalar values, which is
    /// the same for the text Tesseract and PDFs give outside combining sequences.
    TextElements,
    UnicodeCodePoint,
    Utf16CodeUnit,
}

impl StringIndex {
    pub fn parse(name: &str) -> Option<StringIndex> {
        match name {
            "textElements" => Some(StringIndex::TextElements),
            "unicodeCodePoint" => Some(StringIndex::UnicodeCodePoint),
            "utf16CodeUnit" => Some(StringIndex::Utf16CodeUnit),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            StringIndex::TextElements => "textElements",
            StringIndex::UnicodeCodePoint => "unicodeCodePoint",
            StringIndex::Utf16CodeUnit => "utf16CodeUnit",
        }
    }

    fn length(self, text: &str) -> usize {
        match self {
            StringIndex::TextElements | StringIndex::UnicodeCodePoint => text.chars().count(),
            StringIndex::Utf16CodeUnit => text.encode_utf16().count(),
        }
    }
}

/// What the result is asked to hold.
#[derive(Debug, Clone)]
pub struct Shape {
    pub api_version: String,
    pub model_id: String,
    pub string_index: StringIndex,
    /// `outputContentFormat=markdown` (v4 layout).
    pub markdown: bool,
    /// v4 results name their content format.
    pub content_format: bool,
}

/// The content string being written, and its length in the caller's units.
struct Content {
    text: String,
    length: usize,
    index: StringIndex,
}

impl Content {
    /// Appends `text`; answers its span.
    fn push(&mut self, text: &str) -> Value {
        let offset = self.length;
        let length = self.index.length(text);
        self.text.push_str(text);
        self.length += length;
        json!({"offset": offset, "length": length})
    }

    fn separate(&mut self, separator: &str) {
        if !self.text.is_empty() {
            self.push(separator);
        }
    }
}

fn polygon(p: &Polygon) -> Value {
    json!(p.iter().map(|v| (v * 10_000.0).round() / 10_000.0).collect::<Vec<f64>>())
}

fn unit(unit: Unit) -> &'static str {
    match unit {
        Unit::Pixel => "pixel",
        Unit::Inch => "inch",
    }
}

/// The `AnalyzeResult` of `pages`.
pub fn analyze_result(pages: &[PageText], shape: &Shape) -> Value {
    let mut content = Content { text: String::new(), length: 0, index: shape.string_index };
    let (line_gap, paragraph_gap, page_gap) =
        if shape.markdown { ("\n", "\n\n", "\n\n<!-- PageBreak -->\n\n") } else { ("\n", "\n", "\n") };
    let mut out_pages = Vec::new();
    let mut paragraphs = Vec::new();
    let mut tables = Vec::new();
    for (index, page) in pages.iter().enumerate() {
        if index > 0 {
            content.separate(page_gap);
        }
        let start = content.length;
        let mut words = vec![Value::Null; page.words.len()];
        let mut lines = Vec::with_capacity(page.lines.len());
        let mut line_spans = vec![Value::Null; page.lines.len()];
        let grouped = paragraph_groups(page);
        for (p, group) in grouped.iter().enumerate() {
            if p > 0 {
                content.separate(paragraph_gap);
            }
            let paragraph_start = content.length;
            let mut paragraph_text = Vec::new();
            for (n, line_index) in group.clone().enumerate() {
                if n > 0 {
                    content.push(line_gap);
                }
                let line = &page.lines[line_index];
                let line_start = content.length;
                let mut texts = Vec::new();
                for (w, word_index) in line.words.clone().enumerate() {
                    if w > 0 {
                        content.push(" ");
                    }
                    let word = &page.words[word_index];
                    let span = content.push(&word.text);
                    words[word_index] = json!({"content": word.text, "polygon": polygon(&word.polygon),
                                               "confidence": (word.confidence * 1000.0).round() / 1000.0, "span": span});
                    texts.push(word.text.as_str());
                }
                let text = texts.join(" ");
                line_spans[line_index] = json!([{"offset": line_start, "length": content.length - line_start}]);
                lines.push((line_index, json!({"content": text, "polygon": polygon(&line.polygon)})));
                paragraph_text.push(text);
            }
            if let Some(paragraph) = page.paragraphs.get(p) {
                paragraphs.push(json!({
                    "content": paragraph_text.join(line_gap),
                    "boundingRegions": [{"pageNumber": page.number, "polygon": polygon(&paragraph.polygon)}],
                    "spans": [{"offset": paragraph_start, "length": content.length - paragraph_start}],
                }));
            }
        }
        let lines: Vec<Value> = lines
            .into_iter()
            .map(|(i, mut line)| {
                line["spans"] = line_spans[i].take();
                line
            })
            .collect();
        let layout = shape.model_id != "prebuilt-read";
        if layout {
            tables.extend(page.tables.iter().map(|t| table_json(page, t, &words)));
        }
        // Layout puts each mark in `content` as `:selected:` / `:unselected:`, after the page's text.
        let marks: Vec<Value> = page
            .selection_marks
            .iter()
            .filter(|_| layout)
            .map(|mark| {
                content.separate(paragraph_gap);
                let span = content.push(mark_token(mark.state));
                json!({"state": state_name(mark.state), "polygon": polygon(&mark.polygon),
                       "confidence": mark.confidence, "span": span})
            })
            .collect();
        out_pages.push(json!({
            "pageNumber": page.number, "angle": page.angle, "width": page.width, "height": page.height,
            "unit": unit(page.unit), "words": words.into_iter().filter(|w| !w.is_null()).collect::<Vec<_>>(),
            "lines": lines, "selectionMarks": marks, "spans": [{"offset": start, "length": content.length - start}],
        }));
    }
    let mut result = json!({
        "apiVersion": shape.api_version, "modelId": shape.model_id, "stringIndexType": shape.string_index.name(),
        "content": content.text, "pages": out_pages, "paragraphs": paragraphs, "styles": [],
    });
    if shape.model_id != "prebuilt-read" {
        result["tables"] = json!(tables);
    }
    if shape.content_format {
        result["contentFormat"] = json!(if shape.markdown { "markdown" } else { "text" });
    }
    result
}

fn state_name(state: SelectionState) -> &'static str {
    match state {
        SelectionState::Selected => "selected",
        SelectionState::Unselected => "unselected",
    }
}

fn mark_token(state: SelectionState) -> &'static str {
    match state {
        SelectionState::Selected => ":selected:",
        SelectionState::Unselected => ":unselected:",
    }
}

/// A table of `page` (v3/v4): each cell's content and spans from its words (`words`: the page's
/// rendered words, by index).
fn table_json(page: &PageText, table: &Table, words: &[Value]) -> Value {
    let region = |polygon: &Polygon| json!([{"pageNumber": page.number, "polygon": self::polygon(polygon)}]);
    let cells: Vec<Value> = table
        .cells
        .iter()
        .map(|cell| {
            let texts: Vec<&str> =
                cell.words.iter().filter_map(|w| page.words.get(*w)).map(|w| w.text.as_str()).collect();
            let spans: Vec<Value> =
                cell.words.iter().filter_map(|w| words.get(*w)).map(|w| w["span"].clone()).collect();
            json!({"kind": "content", "rowIndex": cell.row, "columnIndex": cell.column, "content": texts.join(" "),
                   "boundingRegions": region(&cell.polygon), "spans": spans})
        })
        .collect();
    let spans: Vec<Value> = table
        .cells
        .iter()
        .flat_map(|c| c.words.iter())
        .filter_map(|w| words.get(*w))
        .map(|w| w["span"].clone())
        .collect();
    json!({"rowCount": table.rows, "columnCount": table.columns, "cells": cells,
           "boundingRegions": region(&table.polygon), "spans": spans})
}

/// A table of `page` in v2.1's `pageResults` shape.
fn v2_table_json(page: &PageText, table: &Table) -> Value {
    let cells: Vec<Value> = table
        .cells
        .iter()
        .map(|cell| {
            let words: Vec<&byos_document::Word> = cell.words.iter().filter_map(|w| page.words.get(*w)).collect();
            let texts: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
            let confidence = if words.is_empty() {
                1.0
            } else {
                words.iter().map(|w| w.confidence).sum::<f64>() / words.len() as f64
            };
            json!({"rowIndex": cell.row, "columnIndex": cell.column, "text": texts.join(" "),
                   "boundingBox": polygon(&cell.polygon), "confidence": (confidence * 1000.0).round() / 1000.0})
        })
        .collect();
    json!({"rows": table.rows, "columns": table.columns, "cells": cells, "boundingBox": polygon(&table.polygon)})
}

/// v2.1's `analyzeResult` of `pages` (layout): `readResults` with lines and their words, and a
/// `pageResults` entry per page with its ruled tables.
pub fn v2_analyze_result(pages: &[PageText]) -> Value {
    let read_results: Vec<Value> = pages
        .iter()
        .map(|page| {
            let lines: Vec<Value> = page
                .lines
                .iter()
                .map(|line| {
                    let words: Vec<Value> = page.words
                        [line.words.start.min(page.words.len())..line.words.end.min(page.words.len())]
                        .iter()
                        .map(|w| {
                            json!({"boundingBox": polygon(&w.polygon), "text": w.text,
                                        "confidence": (w.confidence * 1000.0).round() / 1000.0})
                        })
                        .collect();
                    let text: Vec<&str> = words.iter().filter_map(|w| w["text"].as_str()).collect();
                    json!({"boundingBox": polygon(&line.polygon), "text": text.join(" "), "words": words})
                })
                .collect();
            json!({"page": page.number, "angle": page.angle, "width": page.width, "height": page.height,
                   "unit": unit(page.unit), "lines": lines, "selectionMarks": page.selection_marks.iter().map(|m| {
                       json!({"boundingBox": polygon(&m.polygon), "confidence": m.confidence, "state": state_name(m.state)})
                   }).collect::<Vec<_>>()})
        })
        .collect();
    let page_results: Vec<Value> = pages
        .iter()
        .map(|p| json!({"page": p.number, "tables": p.tables.iter().map(|t| v2_table_json(p, t)).collect::<Vec<_>>()}))
        .collect();
    json!({"version": "2.1.0", "readResults": read_results, "pageResults": page_results})
}

/// The lines of each paragraph of `page`; a page without paragraphs is one paragraph of all its
/// lines (words outside any line are left out: the engine places every word in a line).
fn paragraph_groups(page: &PageText) -> Vec<std::ops::Range<usize>> {
    if page.paragraphs.is_empty() {
        let all = 0..page.lines.len();
        return if all.is_empty() { Vec::new() } else { std::iter::once(all).collect() };
    }
    page.paragraphs.iter().map(|p| p.lines.start.min(page.lines.len())..p.lines.end.min(page.lines.len())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use byos_document::{Line, Paragraph, Word};

    fn word(text: &str, x: f64) -> Word {
        Word { text: text.into(), polygon: [x, 0.0, x + 10.0, 0.0, x + 10.0, 5.0, x, 5.0], confidence: 0.9 }
    }

    fn page(number: u32) -> PageText {
        let words = vec![word("Hello", 0.0), word("wörld", 20.0), word("again", 0.0)];
        let polygon = [0.0, 0.0, 30.0, 0.0, 30.0, 5.0, 0.0, 5.0];
        PageText {
            number,
            width: 100.0,
            height: 200.0,
            unit: Unit::Pixel,
            angle: 0.0,
            words,
            lines: vec![Line { words: 0..2, polygon }, Line { words: 2..3, polygon }],
            paragraphs: vec![Paragraph { lines: 0..1, polygon }, Paragraph { lines: 1..2, polygon }],
            tables: vec![],
            selection_marks: vec![],
        }
    }

    fn shape(index: StringIndex, markdown: bool) -> Shape {
        Shape {
            api_version: "2024-11-30".into(),
            model_id: "prebuilt-read".into(),
            string_index: index,
            markdown,
            content_format: true,
        }
    }

    /// The text a span points at, counting in `index`'s units.
    fn at(content: &str, span: &Value, index: StringIndex) -> String {
        let (offset, length) =
            (span["offset"].as_u64().unwrap_or(0) as usize, span["length"].as_u64().unwrap_or(0) as usize);
        match index {
            StringIndex::Utf16CodeUnit => {
                let units: Vec<u16> = content.encode_utf16().collect();
                String::from_utf16_lossy(&units[offset..offset + length])
            }
            _ => content.chars().skip(offset).take(length).collect(),
        }
    }

    #[test]
    fn every_span_points_at_its_text_in_each_index_type() {
        for index in [StringIndex::TextElements, StringIndex::UnicodeCodePoint, StringIndex::Utf16CodeUnit] {
            let result = analyze_result(&[page(1), page(2)], &shape(index, false));
            let content = result["content"].as_str().unwrap_or_default();
            assert_eq!(content, "Hello wörld\nagain\nHello wörld\nagain");
            for page in result["pages"].as_array().into_iter().flatten() {
                for word in page["words"].as_array().into_iter().flatten() {
                    assert_eq!(at(content, &word["span"], index), word["content"].as_str().unwrap_or_default());
                }
                for line in page["lines"].as_array().into_iter().flatten() {
                    assert_eq!(at(content, &line["spans"][0], index), line["content"].as_str().unwrap_or_default());
                }
            }
            let paragraph = &result["paragraphs"][1];
            assert_eq!(at(content, &paragraph["spans"][0], index), "again");
            assert_eq!(paragraph["boundingRegions"][0]["pageNumber"], 1);
            assert_eq!(result["pages"][1]["spans"][0]["offset"], 18);
        }
    }

    #[test]
    fn markdown_separates_paragraphs_and_pages() {
        let result = analyze_result(&[page(1), page(2)], &shape(StringIndex::TextElements, true));
        let content = result["content"].as_str().unwrap_or_default();
        assert_eq!(content, "Hello wörld\n\nagain\n\n<!-- PageBreak -->\n\nHello wörld\n\nagain");
        assert_eq!(result["contentFormat"], "markdown");
        let last = &result["pages"][1]["words"][2];
        assert_eq!(at(content, &last["span"], StringIndex::TextElements), "again");
    }

    #[test]
    fn v2_read_results_hold_each_line_with_its_words() {
        let result = v2_analyze_result(&[page(3)]);
        let read = &result["readResults"][0];
        assert_eq!((read["page"].as_u64(), read["unit"].as_str()), (Some(3), Some("pixel")));
        assert_eq!(read["lines"][0]["text"], "Hello wörld");
        assert_eq!(read["lines"][0]["words"][1]["text"], "wörld");
        assert_eq!(read["lines"][1]["boundingBox"].as_array().map(Vec::len), Some(8));
        assert_eq!(result["pageResults"][0], json!({"page": 3, "tables": []}));
    }

    #[test]
    fn layout_gives_the_ruled_tables_with_their_cells_and_read_does_not() {
        let cell = |row, column, words: Vec<usize>| byos_document::Cell { row, column, words, polygon: [0.0; 8] };
        let table =
            Table { rows: 1, columns: 2, cells: vec![cell(0, 0, vec![0]), cell(0, 1, vec![1])], polygon: [0.0; 8] };
        let with_table = PageText { tables: vec![table], ..page(1) };
        let layout = Shape { model_id: "prebuilt-layout".into(), ..shape(StringIndex::TextElements, false) };
        let result = analyze_result(std::slice::from_ref(&with_table), &layout);
        let content = result["content"].as_str().unwrap_or_default();
        let cells = &result["tables"][0]["cells"];
        assert_eq!(
            (result["tables"][0]["rowCount"].as_u64(), result["tables"][0]["columnCount"].as_u64()),
            (Some(1), Some(2))
        );
        assert_eq!((cells[1]["content"].as_str(), cells[1]["columnIndex"].as_u64()), (Some("wörld"), Some(1)));
        assert_eq!(at(content, &cells[1]["spans"][0], StringIndex::TextElements), "wörld");
        let read = analyze_result(std::slice::from_ref(&with_table), &shape(StringIndex::TextElements, false));
        assert!(read.get("tables").is_none(), "prebuilt-read gives no tables");
        let v2 = v2_analyze_result(&[with_table]);
        assert_eq!(v2["pageResults"][0]["tables"][0]["cells"][0]["text"], "Hello");
    }

    #[test]
    fn layout_writes_selection_marks_into_the_content() {
        let mark =
            byos_document::SelectionMark { state: SelectionState::Selected, polygon: [1.0; 8], confidence: 0.95 };
        let marked = PageText { selection_marks: vec![mark], ..page(1) };
        let layout = Shape { model_id: "prebuilt-layout".into(), ..shape(StringIndex::Utf16CodeUnit, false) };
        let result = analyze_result(std::slice::from_ref(&marked), &layout);
        let content = result["content"].as_str().unwrap_or_default();
        let found = &result["pages"][0]["selectionMarks"][0];
        assert_eq!(found["state"], "selected");
        assert_eq!(at(content, &found["span"], StringIndex::Utf16CodeUnit), ":selected:");
        assert!(content.ends_with("again\n:selected:"), "{content:?}");
        let read = analyze_result(std::slice::from_ref(&marked), &shape(StringIndex::TextElements, false));
        assert_eq!(read["pages"][0]["selectionMarks"], json!([]));
        assert_eq!(v2_analyze_result(&[marked])["readResults"][0]["selectionMarks"][0]["state"], "selected");
    }

    #[test]
    fn a_page_with_nothing_on_it_is_still_a_page() {
        let empty = PageText {
            words: vec![],
            lines: vec![],
            paragraphs: vec![],
            tables: vec![],
            selection_marks: vec![],
            ..page(1)
        };
        let result = analyze_result(&[empty], &shape(StringIndex::TextElements, false));
        assert_eq!(result["content"], "");
        assert_eq!(result["pages"][0]["spans"][0], json!({"offset": 0, "length": 0}));
        assert_eq!(result["paragraphs"], json!([]));
    }
}
