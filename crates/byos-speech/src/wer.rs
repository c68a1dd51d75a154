//! Word error rate: how far a recognition is from what was said, by a Levenshtein alignment over
//! the words of both, normalized as adapted models normalize their training text
//! ([`crate::adapt::normalize`]), so that case and punctuation are not errors.

use crate::adapt::normalize;

/// The alignment of a hypothesis against its reference, counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WordErrors {
    pub reference_words: usize,
    pub insertions: usize,
    pub deletions: usize,
    pub substitutions: usize,
    pub correct: usize,
}

impl WordErrors {
    /// Insertions, deletions and substitutions.
    pub fn errors(&self) -> usize {
        self.insertions + self.deletions + self.substitutions
    }

    /// Errors per reference word (an empty reference counts as one word, so that any insertion
    /// into it is a rate above zero rather than a division by zero).
    pub fn rate(&self) -> f64 {
        self.errors() as f64 / self.reference_words.max(1) as f64
    }
}

impl std::ops::AddAssign for WordErrors {
    /// Sums alignments, for the rate of a whole test set.
    fn add_assign(&mut self, other: WordErrors) {
        self.reference_words += other.reference_words;
        self.insertions += other.insertions;
        self.deletions += other.deletions;
        self.substitutions += other.substitutions;
        self.correct += other.correct;
    }
}

/// Aligns `hypothesis` to `reference` with the fewest edits and counts them.
pub fn align(reference: &str, hypothesis: &str) -> WordErrors {
    let (reference, hypothesis) = (normalize(reference), normalize(hypothesis));
    // row[j]: the best alignment of the reference so far with the first j hypothesis words.
    let mut row: Vec<WordErrors> =
        (0..=hypothesis.len()).map(|j| WordErrors { insertions: j, ..Default::default() }).collect();
    for (i, said) in reference.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = WordErrors { reference_words: i + 1, deletions: i + 1, ..Default::default() };
        for (j, heard) in hypothesis.iter().enumerate() {
            let mut matched = diagonal;
            if said == heard {
                matched.correct += 1;
            } else {
                matched.substitutions += 1;
            }
            let mut deleted = row[j + 1];
            deleted.deletions += 1;
            let mut inserted = row[j];
            inserted.insertions += 1;
            diagonal = row[j + 1];
            row[j + 1] = fewest_errors([matched, deleted, inserted]);
            row[j + 1].reference_words = i + 1;
        }
    }
    row[hypothesis.len()]
}

/// The candidate with the fewest errors; on a tie the first (a match or substitution before a
/// deletion before an insertion, the usual convention).
fn fewest_errors(candidates: [WordErrors; 3]) -> WordErrors {
    let mut best = candidates[0];
    for candidate in &candidates[1..] {
        if candidate.errors() < best.errors() {
            best = *candidate;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(reference: &str, hypothesis: &str) -> (usize, usize, usize, usize, usize) {
        let e = align(reference, hypothesis);
        (e.reference_words, e.correct, e.substitutions, e.deletions, e.insertions)
    }

    #[test]
    fn identical_text_has_no_errors_whatever_its_case_and_punctuation() {
        assert_eq!(counts("Hello, World!", "hello world"), (2, 2, 0, 0, 0));
        assert_eq!(align("Don't stop.", "don't stop").rate(), 0.0);
    }

    #[test]
    fn each_kind_of_error_is_counted_where_it_is() {
        assert_eq!(counts("the cat sat on the mat", "the cat sat on a mat"), (6, 5, 1, 0, 0));
        assert_eq!(counts("the cat sat on the mat", "the cat on the mat"), (6, 5, 0, 1, 0));
        assert_eq!(counts("the cat sat on the mat", "the black cat sat on the mat"), (6, 6, 0, 0, 1));
        assert_eq!(counts("a b c d", "x a b d"), (4, 3, 0, 1, 1));
    }

    #[test]
    fn the_rate_is_errors_per_reference_word() {
        let e = align("one two three four", "one too three");
        assert_eq!((e.substitutions, e.deletions, e.errors()), (1, 1, 2));
        assert!((e.rate() - 0.5).abs() < 1e-12);
        assert_eq!(align("", "").rate(), 0.0);
        assert_eq!(align("", "noise noise").rate(), 2.0);
        assert_eq!(align("all of it", "").rate(), 1.0);
    }

    #[test]
    fn alignments_add_up_to_a_test_set() {
        let mut total = align("a b", "a c");
        total += align("d e f", "d e f");
        assert_eq!((total.reference_words, total.correct, total.substitutions), (5, 4, 1));
        assert!((total.rate() - 0.2).abs() < 1e-12);
    }
}
