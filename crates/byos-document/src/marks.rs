//! Selection marks (check boxes) found on a page image: small square outlines, drawn as a closed
//! ring of ink, selected when their inside holds ink (a tick, a cross, a fill). Only what is drawn
//! as a box counts; round radio buttons and marks without a box are not detected.

use crate::{Polygon, SelectionMark, SelectionState};

/// Darker than this (0-255) is ink.
const INK: u8 = 128;
/// A box is this many pixels wide and high, at least and at most.
const SIDES: std::ops::RangeInclusive<u32> = 12..=90;
/// Its outline covers at least this share of each of its four edges.
const OUTLINE: f64 = 0.95;
/// It is selected when at least this share of its inside is ink.
const FILLED: f64 = 0.06;

/// The selection marks of an 8-bit gray page.
pub(crate) fn selection_marks(pixels: &[u8], width: u32, height: u32) -> Vec<SelectionMark> {
    if pixels.len() < (width as usize) * (height as usize) {
        return Vec::new();
    }
    let ink = |x: u32, y: u32| pixels[(y * width + x) as usize] < INK;
    let mut seen = vec![false; pixels.len()];
    let mut marks = Vec::new();
    for y in 0..height {
        for x in 0..width {
            let at = (y * width + x) as usize;
            if seen[at] || !ink(x, y) {
                continue;
            }
            let (x0, y0, x1, y1) = component(x, y, width, height, &ink, &mut seen);
            if let Some(mark) = as_mark((x0, y0, x1, y1), &ink) {
                marks.push(mark);
            }
        }
    }
    marks
}

/// The bounding box of the ink component at (x, y) (4-connected), marking its pixels seen.
fn component(
    x: u32,
    y: u32,
    width: u32,
    height: u32,
    ink: &impl Fn(u32, u32) -> bool,
    seen: &mut [bool],
) -> (u32, u32, u32, u32) {
    let (mut x0, mut y0, mut x1, mut y1) = (x, y, x, y);
    let mut stack = vec![(x, y)];
    seen[(y * width + x) as usize] = true;
    while let Some((cx, cy)) = stack.pop() {
        (x0, y0, x1, y1) = (x0.min(cx), y0.min(cy), x1.max(cx), y1.max(cy));
        let neighbours = [(cx.wrapping_sub(1), cy), (cx + 1, cy), (cx, cy.wrapping_sub(1)), (cx, cy + 1)];
        for (nx, ny) in neighbours {
            if nx < width && ny < height && !seen[(ny * width + nx) as usize] && ink(nx, ny) {
                seen[(ny * width + nx) as usize] = true;
                stack.push((nx, ny));
            }
        }
    }
    (x0, y0, x1, y1)
}

/// A mark, when the component's box is a square with an inked outline.
fn as_mark((x0, y0, x1, y1): (u32, u32, u32, u32), ink: &impl Fn(u32, u32) -> bool) -> Option<SelectionMark> {
    let (w, h) = (x1 - x0 + 1, y1 - y0 + 1);
    if !SIDES.contains(&w) || !SIDES.contains(&h) || w.abs_diff(h) * 4 > w.max(h) {
        return None;
    }
    // The outline: for each position along an edge, ink within 3 px inside it.
    let near = |along: u32, edge: &dyn Fn(u32, u32) -> (u32, u32)| {
        (0..3).any(|d| {
            let (x, y) = edge(along, d);
            ink(x, y)
        })
    };
    let edges: [&dyn Fn(u32, u32) -> (u32, u32); 4] =
        [&|i, d| (x0 + i, y0 + d), &|i, d| (x0 + i, y1 - d), &|i, d| (x0 + d, y0 + i), &|i, d| (x1 - d, y0 + i)];
    // Every edge on its own must be drawn (letters such as u, n or a leave one open or round).
    let lengths = [w, w, h, h];
    let coverage: Vec<f64> = edges
        .iter()
        .zip(lengths)
        .map(|(edge, n)| (0..n).filter(|i| near(*i, *edge)).count() as f64 / f64::from(n))
        .collect();
    if coverage.iter().any(|c| *c < OUTLINE) {
        return None;
    }
    let outline = coverage.iter().sum::<f64>() / 4.0;
    let (ix0, iy0, ix1, iy1) = (x0 + w / 4, y0 + h / 4, x1 - w / 4, y1 - h / 4);
    let inside = ((ix1 - ix0 + 1) * (iy1 - iy0 + 1)).max(1);
    let inked = (iy0..=iy1).flat_map(|y| (ix0..=ix1).map(move |x| (x, y))).filter(|(x, y)| ink(*x, *y)).count() as u32;
    let fill = f64::from(inked) / f64::from(inside);
    let state = if fill >= FILLED { SelectionState::Selected } else { SelectionState::Unselected };
    let polygon: Polygon = [
        f64::from(x0),
        f64::from(y0),
        f64::from(x1),
        f64::from(y0),
        f64::from(x1),
        f64::from(y1),
        f64::from(x0),
        f64::from(y1),
    ];
    Some(SelectionMark { state, polygon, confidence: (outline * 1000.0).round() / 1000.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A white page with a 30 px box at (x, y), crossed when `checked`.
    fn page_with_boxes(boxes: &[(u32, u32, bool)]) -> (Vec<u8>, u32, u32) {
        let (width, height) = (400, 200);
        let mut pixels = vec![255u8; (width * height) as usize];
        let mut dark = |x: u32, y: u32| pixels[(y * width + x) as usize] = 0;
        for &(bx, by, checked) in boxes {
            for i in 0..30 {
                for t in 0..2 {
                    dark(bx + i, by + t);
                    dark(bx + i, by + 29 - t);
                    dark(bx + t, by + i);
                    dark(bx + 29 - t, by + i);
                }
                if checked && (6..24).contains(&i) {
                    dark(bx + i, by + i);
                    dark(bx + i, by + 29 - i);
                }
            }
        }
        (pixels, width, height)
    }

    #[test]
    fn boxes_are_marks_and_a_crossed_one_is_selected() {
        let (pixels, width, height) = page_with_boxes(&[(40, 40, false), (200, 40, true)]);
        let marks = selection_marks(&pixels, width, height);
        let states: Vec<SelectionState> = marks.iter().map(|m| m.state).collect();
        assert_eq!(states, vec![SelectionState::Unselected, SelectionState::Selected], "{marks:?}");
        assert_eq!((marks[0].polygon[0], marks[0].polygon[1]), (40.0, 40.0));
        assert!(marks.iter().all(|m| m.confidence > 0.9));
    }

    /// The regression a first version had: small letters (u, a, n) taken for boxes and erased before the
    /// page was read.
    #[test]
    fn regression_letters_open_on_a_side_are_not_marks() {
        let (width, height) = (100, 100);
        let mut pixels = vec![255u8; (width * height) as usize];
        // A "u" 16 px wide: two stems and a bottom, no top.
        for y in 20..36 {
            for t in 0..3 {
                pixels[(y * width + 20 + t) as usize] = 0;
                pixels[(y * width + 33 + t) as usize] = 0;
            }
        }
        for x in 20..36 {
            for t in 0..3 {
                pixels[((33 + t) * width + x) as usize] = 0;
            }
        }
        assert!(selection_marks(&pixels, width, height).is_empty());
    }

    #[test]
    fn lines_and_letters_are_not_marks() {
        let (width, height) = (400, 200);
        let mut pixels = vec![255u8; (width * height) as usize];
        for x in 20..380 {
            pixels[(100 * width + x) as usize] = 0;
        }
        for y in 20..50 {
            pixels[(y * width + 50) as usize] = 0; // a stroke like an "l"
        }
        assert!(selection_marks(&pixels, width, height).is_empty());
    }
}
