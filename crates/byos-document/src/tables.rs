//! Ruled tables found on a page image: grids drawn with lines (horizontal and vertical rules that
//! cross), the only tables that can be told from pixels honestly. Each cell holds the words whose
//! centres lie in it. A table without its rules (aligned text only) is not detected, and nothing
//! is invented for it. The rules are erased before the page is read: Tesseract's layout analysis
//! takes a ruled grid for a picture and reads none of its text.

use crate::{Cell, Polygon, Table, Word};

/// Darker than this (0-255) is ink.
const INK: u8 = 128;
/// Rules meet within this many pixels.
const SLACK: u32 = 6;
/// A rule is at most this thick (thicker dark areas are pictures or filled shapes).
const MAX_THICKNESS: u32 = 8;

/// A straight rule: where it starts across (y for horizontal, x for vertical), how thick it is,
/// and from where to where along.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rule {
    at: u32,
    thickness: u32,
    from: u32,
    to: u32,
}

impl Rule {
    /// Its middle line.
    fn centre(&self) -> u32 {
        self.at + self.thickness / 2
    }
}

/// A ruled grid: its row rules (horizontal, top to bottom) and column rules (left to right).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Grid {
    rows: Vec<Rule>,
    columns: Vec<Rule>,
}

/// The ruled grids of an 8-bit gray page (`width` x `height`).
pub(crate) fn grids(pixels: &[u8], width: u32, height: u32) -> Vec<Grid> {
    if pixels.len() < (width as usize) * (height as usize) {
        return Vec::new();
    }
    let ink = |x: u32, y: u32| pixels[(y * width + x) as usize] < INK;
    let horizontal = rules(height, width, (width / 10).max(60), |across, along| ink(along, across));
    let vertical = rules(width, height, (height / 40).max(40), ink);
    find_grids(&horizontal, &vertical)
}

/// The page with the grids' rules and the check boxes painted white (None when there are none),
/// for reading its text: boxes would be read as letters.
pub(crate) fn without_rules(
    pixels: &[u8],
    width: u32,
    grids: &[Grid],
    marks: &[crate::SelectionMark],
) -> Option<Vec<u8>> {
    if grids.is_empty() && marks.is_empty() {
        return None;
    }
    let mut clean = pixels.to_vec();
    let mut white = |x: u32, y: u32| {
        if let Some(p) = clean.get_mut((y * width + x) as usize) {
            *p = 255;
        }
    };
    for grid in grids {
        for rule in &grid.rows {
            for y in rule.at.saturating_sub(1)..=rule.at + rule.thickness {
                (rule.from..=rule.to).for_each(|x| white(x, y));
            }
        }
        for rule in &grid.columns {
            for x in rule.at.saturating_sub(1)..=rule.at + rule.thickness {
                (rule.from..=rule.to).for_each(|y| white(x, y));
            }
        }
    }
    for mark in marks {
        let p = mark.polygon;
        for y in p[1] as u32..=p[5] as u32 {
            (p[0] as u32..=p[2] as u32).for_each(|x| white(x, y));
        }
    }
    Some(clean)
}

/// The tables of `grids`, with the page's `words` in their cells.
pub(crate) fn tables(grids: &[Grid], words: &[Word]) -> Vec<Table> {
    grids.iter().map(|g| table(&g.rows, &g.columns, words)).collect()
}

/// Rules in one direction: for each line across (`count` of them), runs of ink at least `min_length`
/// long along it, merged over neighbouring lines into rules no thicker than [`MAX_THICKNESS`].
fn rules(count: u32, length: u32, min_length: u32, ink: impl Fn(u32, u32) -> bool) -> Vec<Rule> {
    let mut open: Vec<Rule> = Vec::new();
    let mut done = Vec::new();
    for across in 0..count {
        let mut next = Vec::new();
        for (from, to) in runs(length, min_length, |along| ink(across, along)) {
            let continued = open.iter().position(|r| r.from.abs_diff(from) <= SLACK && r.to.abs_diff(to) <= SLACK);
            match continued {
                Some(i) => {
                    let rule = open.swap_remove(i);
                    next.push(Rule {
                        from: rule.from.min(from),
                        to: rule.to.max(to),
                        thickness: rule.thickness + 1,
                        ..rule
                    });
                }
                None => next.push(Rule { at: across, thickness: 1, from, to }),
            }
        }
        done.extend(open.drain(..).filter(|r| r.thickness <= MAX_THICKNESS));
        open = next;
    }
    done.extend(open.into_iter().filter(|r| r.thickness <= MAX_THICKNESS));
    done
}

/// The runs of ink along one line at least `min_length` long: (first, last).
fn runs(length: u32, min_length: u32, ink: impl Fn(u32) -> bool) -> Vec<(u32, u32)> {
    let mut runs = Vec::new();
    let mut start = None;
    for along in 0..=length {
        let dark = along < length && ink(along);
        match (dark, start) {
            (true, None) => start = Some(along),
            (false, Some(s)) => {
                if along - s >= min_length {
                    runs.push((s, along - 1));
                }
                start = None;
            }
            _ => {}
        }
    }
    runs
}

/// Grids: groups of at least two horizontal rules of the same extent, with the vertical rules that
/// run from the first to the last of them (at least two).
fn find_grids(horizontal: &[Rule], vertical: &[Rule]) -> Vec<Grid> {
    let mut sorted = horizontal.to_vec();
    sorted.sort_by_key(|r| (r.from, r.at));
    let mut groups: Vec<Vec<Rule>> = Vec::new();
    for rule in sorted {
        match groups.iter_mut().find(|g| g[0].from.abs_diff(rule.from) <= SLACK && g[0].to.abs_diff(rule.to) <= SLACK) {
            Some(group) => group.push(rule),
            None => groups.push(vec![rule]),
        }
    }
    let mut out = Vec::new();
    for mut rows in groups.into_iter().filter(|g| g.len() >= 2) {
        rows.sort_by_key(|r| r.at);
        let (top, bottom) = (rows[0].centre(), rows[rows.len() - 1].centre());
        let (left, right) = (rows[0].from, rows[0].to);
        let mut columns: Vec<Rule> = vertical
            .iter()
            .filter(|v| v.centre() + SLACK >= left && v.centre() <= right + SLACK)
            .filter(|v| v.from <= top + SLACK && v.to + SLACK >= bottom)
            .copied()
            .collect();
        columns.sort_by_key(|r| r.at);
        columns.dedup_by(|a, b| a.at.abs_diff(b.at) <= SLACK);
        if columns.len() >= 2 {
            out.push(Grid { rows, columns });
        }
    }
    out
}

fn rectangle(x0: f64, y0: f64, x1: f64, y1: f64) -> Polygon {
    [x0, y0, x1, y0, x1, y1, x0, y1]
}

/// The table of a grid: a cell between each pair of neighbouring rules, with the words inside.
fn table(rows: &[Rule], columns: &[Rule], words: &[Word]) -> Table {
    let mut cells = Vec::new();
    for (r, pair) in rows.windows(2).enumerate() {
        for (c, cols) in columns.windows(2).enumerate() {
            let (x0, x1) = (f64::from(cols[0].centre()), f64::from(cols[1].centre()));
            let (y0, y1) = (f64::from(pair[0].centre()), f64::from(pair[1].centre()));
            let inside: Vec<usize> = (0..words.len())
                .filter(|w| {
                    let p = &words[*w].polygon;
                    let (cx, cy) = ((p[0] + p[2] + p[4] + p[6]) / 4.0, (p[1] + p[3] + p[5] + p[7]) / 4.0);
                    cx > x0 && cx < x1 && cy > y0 && cy < y1
                })
                .collect();
            cells.push(Cell { row: r, column: c, words: inside, polygon: rectangle(x0, y0, x1, y1) });
        }
    }
    let (first, last) = (&columns[0], &columns[columns.len() - 1]);
    let (top, bottom) = (rows[0].centre(), rows[rows.len() - 1].centre());
    let polygon = rectangle(f64::from(first.centre()), f64::from(top), f64::from(last.centre()), f64::from(bottom));
    Table { rows: rows.len() - 1, columns: columns.len() - 1, cells, polygon }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A white page with the rules of a `rows` × `columns` grid of 100 × 50 px cells from (40, 30).
    fn grid_page(rows: u32, columns: u32) -> (Vec<u8>, u32, u32) {
        let (width, height) = (600, 400);
        let mut pixels = vec![255u8; (width * height) as usize];
        let mut dark = |x: u32, y: u32| pixels[(y * width + x) as usize] = 0;
        for r in 0..=rows {
            for x in 40..=40 + columns * 100 {
                for t in 0..2 {
                    dark(x, 30 + r * 50 + t);
                }
            }
        }
        for c in 0..=columns {
            for y in 30..=30 + rows * 50 {
                for t in 0..2 {
                    dark(40 + c * 100 + t, y);
                }
            }
        }
        (pixels, width, height)
    }

    fn word(text: &str, x: f64, y: f64) -> Word {
        Word { text: text.into(), polygon: rectangle(x, y, x + 30.0, y + 12.0), confidence: 0.9 }
    }

    #[test]
    fn a_ruled_grid_is_a_table_with_its_words_in_their_cells() {
        let (pixels, width, height) = grid_page(3, 2);
        let words = [word("a", 60.0, 45.0), word("b", 160.0, 45.0), word("c", 160.0, 145.0), word("out", 500.0, 300.0)];
        let found = grids(&pixels, width, height);
        let tables = tables(&found, &words);
        let clean = without_rules(&pixels, width, &found, &[]).unwrap_or_default();
        assert!(clean.iter().all(|p| *p == 255), "the rules are erased");
        assert_eq!(tables.len(), 1, "{tables:?}");
        let table = &tables[0];
        assert_eq!((table.rows, table.columns, table.cells.len()), (3, 2, 6));
        let at = |r: usize, c: usize| {
            &table
                .cells
                .iter()
                .find(|cell| cell.row == r && cell.column == c)
                .unwrap_or_else(|| panic!("cell {r},{c}"))
                .words
        };
        assert_eq!(
            (at(0, 0).clone(), at(0, 1).clone(), at(2, 1).clone(), at(1, 0).clone()),
            (vec![0], vec![1], vec![2], vec![])
        );
        assert!(
            (table.polygon[0] - 40.0).abs() <= 2.0 && (table.polygon[5] - 180.0).abs() <= 2.0,
            "{:?}",
            table.polygon
        );
    }

    #[test]
    fn text_and_lone_rules_are_no_table() {
        let (width, height) = (600, 400);
        let mut pixels = vec![255u8; (width * height) as usize];
        for x in 40..560 {
            pixels[(200 * width + x) as usize] = 0; // an underline, not a table
        }
        for y in 100..130 {
            for x in (50..300).step_by(7) {
                pixels[(y * width + x) as usize] = 0; // strokes of text
            }
        }
        assert!(grids(&pixels, width, height).is_empty());
        assert!(grids(&[], 10, 10).is_empty());
        assert!(without_rules(&pixels, width, &[], &[]).is_none());
    }
}
