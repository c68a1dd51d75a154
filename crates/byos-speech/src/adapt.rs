//! Custom Speech adapted models: a trigram language model estimated from a Language dataset (one
//! utterance a line) and the dictionary entries of a pronunciation file, which the engine decodes
//! with, interpolated with its base language model, so that the customer's words and phrases are
//! recognized.
//!
//! The language model is Witten-Bell smoothed and interpolated (each order's estimate is mixed with
//! the next lower one in proportion to how many distinct words followed the history), written in
//! ARPA text, the format every n-gram decoder reads. An [`AdaptedModel`] is bytes the server can
//! seal and store ([`AdaptedModel::to_bytes`]), and its [`ModelId`] is the SHA-256 of those bytes.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

/// What starts and ends each sentence in the language model.
const SENTENCE_START: &str = "<s>";
const SENTENCE_END: &str = "</s>";
/// The longest n-grams estimated.
const ORDER: usize = 3;
/// The start of an adapted model's bytes, then its format version.
const MAGIC: &[u8; 8] = b"byos-lm\0";
const FORMAT_VERSION: u32 = 1;

/// Why an adapted model could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdaptError {
    /// The language text has no sentence with a word the engine can pronounce.
    #[error("the language data has no sentence with a word that can be pronounced")]
    NoText,
    /// A line of the pronunciation file is not `display form<TAB>spoken form`.
    #[error("line {line} of the pronunciation data is not 'display form<TAB>spoken form'")]
    PronunciationLine { line: usize },
    /// A spoken form uses a word that the base dictionary does not have.
    #[error("line {line} of the pronunciation data: '{word}' is not a word the engine can pronounce")]
    UnknownSpokenWord { line: usize, word: String },
    /// The bytes are not an adapted model of a version this byos reads.
    #[error("the adapted model is unreadable: {0}")]
    Unreadable(String),
}

/// Lowercased words, punctuation dropped: every character but letters, digits and apostrophes
/// separates words; apostrophes inside a word are kept ("don't") and those around it, quotes, are not.
pub fn normalize(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|word| word.trim_matches('\''))
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// A pronunciation dictionary in CMUdict form (`word PH ON ES`, alternates as `word(2) ...`).
#[derive(Debug, Clone, Default)]
pub struct Dictionary {
    /// Each word's first pronunciation and how many it has.
    words: HashMap<String, (String, usize)>,
}

impl Dictionary {
    /// Parses dictionary text; lines that are not `word phones...` are ignored.
    pub fn parse(text: &str) -> Dictionary {
        let mut words: HashMap<String, (String, usize)> = HashMap::new();
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            let (Some(entry), phones) = (fields.next(), fields.collect::<Vec<_>>().join(" ")) else { continue };
            if phones.is_empty() || entry.starts_with(";;;") {
                continue;
            }
            let word = entry.split('(').next().unwrap_or(entry).to_lowercase();
            words.entry(word).and_modify(|(_, count)| *count += 1).or_insert((phones, 1));
        }
        Dictionary { words }
    }

    /// Reads a dictionary file (such as the base model's, [`crate::pocketsphinx::Model::dictionary`]).
    pub fn load(path: &std::path::Path) -> std::io::Result<Dictionary> {
        Ok(Dictionary::parse(&std::fs::read_to_string(path)?))
    }

    /// The phones of `word`'s first pronunciation.
    pub fn phones(&self, word: &str) -> Option<&str> {
        self.words.get(word).map(|(phones, _)| phones.as_str())
    }

    /// How many pronunciations `word` has (0: it is not in the dictionary).
    fn pronunciations(&self, word: &str) -> usize {
        self.words.get(word).map_or(0, |(_, count)| *count)
    }
}

/// A dictionary entry an adapted model adds to the base dictionary.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pronunciation {
    /// The entry as the dictionary spells it: the word, or `word(N)` when it is another
    /// pronunciation of a word the base dictionary has.
    pub entry: String,
    pub phones: String,
}

/// What training made of the data.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrainingReport {
    /// Lines of the language data with at least one word.
    pub sentences: usize,
    /// Words of the language data that the model learned.
    pub words: usize,
    /// Distinct words the language model knows (with the pronunciation file's).
    pub vocabulary: usize,
    /// Entries added to the dictionary by the pronunciation file.
    pub pronunciations: usize,
    /// Occurrences of words that neither the base dictionary nor the pronunciation file can
    /// pronounce; the n-grams containing them are left out.
    pub unknown_occurrences: usize,
    /// Those words, each once, sorted.
    pub unknown_words: Vec<String>,
    /// How many 1-, 2- and 3-grams the language model has.
    pub ngrams: Vec<usize>,
}

/// The SHA-256 of an adapted model's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModelId(pub [u8; 32]);

impl std::fmt::Display for ModelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// What an adapted model's bytes hold (after the magic and version).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Content {
    arpa: String,
    pronunciations: Vec<Pronunciation>,
    report: TrainingReport,
}

/// A Custom Speech adapted model: a language model and dictionary entries.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptedModel {
    content: Content,
    id: ModelId,
}

impl AdaptedModel {
    /// Builds a model from Language data (`language_text`, one utterance a line) and an Azure
    /// pronunciation file (`display form<TAB>spoken form` lines, the spoken form in words of
    /// `base`, whose phones make the new word's). Either may be empty, not both.
    pub fn build(language_text: &str, pronunciations: &str, base: &Dictionary) -> Result<AdaptedModel, AdaptError> {
        let added = parse_pronunciations(pronunciations, base)?;
        let pronounceable = |word: &str| base.phones(word).is_some() || added.contains_key(word);
        let mut counts = NgramCounts::default();
        let mut report = TrainingReport::default();
        let mut unknown = std::collections::BTreeSet::new();
        for line in language_text.lines() {
            let words = normalize(line);
            if words.is_empty() {
                continue;
            }
            report.sentences += 1;
            let sentence: Vec<Option<&str>> = words
                .iter()
                .map(|word| {
                    if pronounceable(word) {
                        report.words += 1;
                        Some(word.as_str())
                    } else {
                        report.unknown_occurrences += 1;
                        unknown.insert(word.clone());
                        None
                    }
                })
                .collect();
            counts.add_sentence(&sentence);
        }
        for word in added.keys() {
            counts.add_word(word);
        }
        if counts.observed_words() == 0 && added.is_empty() {
            return Err(AdaptError::NoText);
        }
        let (arpa, ngrams) = counts.arpa();
        report.vocabulary = counts.vocabulary.len() - 2;
        report.pronunciations = added.len();
        report.unknown_words = unknown.into_iter().collect();
        report.ngrams = ngrams;
        let pronunciations =
            added.into_iter().map(|(word, (extra, phones))| dictionary_entry(word, extra, phones, base)).collect();
        Ok(AdaptedModel::new(Content { arpa, pronunciations, report }))
    }

    fn new(content: Content) -> AdaptedModel {
        let mut model = AdaptedModel { content, id: ModelId([0; 32]) };
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &model.to_bytes());
        model.id.0.copy_from_slice(digest.as_ref());
        model
    }

    /// The model as bytes (versioned), for the server to seal and store.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        // Serializing plain strings and numbers cannot fail.
        bytes.extend_from_slice(&serde_json::to_vec(&self.content).unwrap_or_default());
        bytes
    }

    /// Reads what [`AdaptedModel::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<AdaptedModel, AdaptError> {
        let unreadable = |why: String| AdaptError::Unreadable(why);
        let rest = bytes.strip_prefix(MAGIC.as_slice()).ok_or_else(|| unreadable("not an adapted model".into()))?;
        let (version, content) = rest.split_first_chunk::<4>().ok_or_else(|| unreadable("it is truncated".into()))?;
        let version = u32::from_be_bytes(*version);
        if version != FORMAT_VERSION {
            return Err(unreadable(format!("format version {version} is not {FORMAT_VERSION}")));
        }
        let content = serde_json::from_slice(content).map_err(|e| unreadable(e.to_string()))?;
        Ok(AdaptedModel::new(content))
    }

    /// The SHA-256 of [`AdaptedModel::to_bytes`]: the same model, the same id.
    pub fn id(&self) -> ModelId {
        self.id
    }

    /// The language model, ARPA text.
    pub fn arpa(&self) -> &str {
        &self.content.arpa
    }

    /// The entries to add to the base dictionary.
    pub fn pronunciations(&self) -> &[Pronunciation] {
        &self.content.pronunciations
    }

    pub fn report(&self) -> &TrainingReport {
        &self.content.report
    }
}

/// The pronunciation file's words: each display form with the phones of its spoken form, and
/// whether the base dictionary already has the word (the entry is then one more pronunciation).
fn parse_pronunciations(text: &str, base: &Dictionary) -> Result<BTreeMap<String, (bool, String)>, AdaptError> {
    let mut added = BTreeMap::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let (display, spoken) = line.split_once('\t').ok_or(AdaptError::PronunciationLine { line: line_number })?;
        let (display, spoken) = (normalize(display), normalize(spoken));
        let [word] = display.as_slice() else { return Err(AdaptError::PronunciationLine { line: line_number }) };
        if spoken.is_empty() {
            return Err(AdaptError::PronunciationLine { line: line_number });
        }
        let phones = spoken
            .iter()
            .map(|part| {
                base.phones(part).ok_or_else(|| AdaptError::UnknownSpokenWord { line: line_number, word: part.clone() })
            })
            .collect::<Result<Vec<_>, _>>()?
            .join(" ");
        added.insert(word.clone(), (base.phones(word).is_some(), phones));
    }
    Ok(added)
}

/// The dictionary entry of an added word: a word the base has gets the next alternate number.
fn dictionary_entry(word: String, already_known: bool, phones: String, base: &Dictionary) -> Pronunciation {
    let entry = if already_known { format!("{word}({})", base.pronunciations(&word) + 1) } else { word };
    Pronunciation { entry, phones }
}

/// Word ids of the vocabulary: `<s>` is 0, `</s>` is 1, the rest in order of first appearance
/// (so that the same data always gives the same model, and the same id).
type Gram = Vec<u32>;
const START_ID: u32 = 0;
const END_ID: u32 = 1;

/// N-gram counts of the training sentences.
struct NgramCounts {
    vocabulary: Vec<String>,
    ids: HashMap<String, u32>,
    /// counts[n - 1]: the n-grams and how often each occurred.
    counts: [BTreeMap<Gram, u64>; ORDER],
}

impl Default for NgramCounts {
    fn default() -> Self {
        let mut counts = NgramCounts {
            vocabulary: Vec::new(),
            ids: HashMap::new(),
            counts: std::array::from_fn(|_| BTreeMap::new()),
        };
        counts.id(SENTENCE_START);
        counts.id(SENTENCE_END);
        counts
    }
}

impl NgramCounts {
    fn id(&mut self, word: &str) -> u32 {
        if let Some(id) = self.ids.get(word) {
            return *id;
        }
        let id = self.vocabulary.len() as u32;
        self.vocabulary.push(word.to_owned());
        self.ids.insert(word.to_owned(), id);
        id
    }

    /// A word the model must know even if the text never says it (a pronunciation file's).
    fn add_word(&mut self, word: &str) {
        self.id(word);
    }

    /// Counts the n-grams of one sentence between its markers; `None` is a word the engine cannot
    /// pronounce, and the n-grams through it are not counted (rather than inventing a sequence
    /// that joins the words either side of it).
    fn add_sentence(&mut self, words: &[Option<&str>]) {
        let mut ids = vec![Some(START_ID)];
        ids.extend(words.iter().map(|word| word.map(|w| self.id(w))));
        ids.push(Some(self.id(SENTENCE_END)));
        for n in 1..=ORDER {
            for window in ids.windows(n) {
                if n == 1 && window[0] == Some(START_ID) {
                    continue; // <s> is never predicted.
                }
                if let Some(gram) = window.iter().copied().collect::<Option<Gram>>() {
                    *self.counts[n - 1].entry(gram).or_insert(0) += 1;
                }
            }
        }
    }

    /// Occurrences of words (not `</s>`) counted.
    fn observed_words(&self) -> u64 {
        self.counts[0].iter().filter(|(gram, _)| gram[0] != END_ID).map(|(_, count)| count).sum()
    }

    /// The Witten-Bell model in ARPA text, and how many n-grams of each order it has.
    fn arpa(&self) -> (String, Vec<usize>) {
        let model = WittenBell::estimate(self);
        let highest = (1..=ORDER).rev().find(|n| !self.counts[n - 1].is_empty()).unwrap_or(1);
        let unigrams: Vec<u32> = (0..self.vocabulary.len() as u32).collect();
        let mut sizes = vec![unigrams.len()];
        sizes.extend((2..=highest).map(|n| self.counts[n - 1].len()));
        let mut arpa = String::from("\\data\\\n");
        for (n, size) in sizes.iter().enumerate() {
            let _ = writeln!(arpa, "ngram {}={size}", n + 1);
        }
        let _ = writeln!(arpa, "\n\\1-grams:");
        for id in unigrams {
            // <s> is only a history: its probability is the conventional log10 of zero.
            let log_prob = if id == START_ID { -99.0 } else { model.probability(&[id]).log10() };
            self.write_entry(&mut arpa, log_prob, &[id], model.backoff(&[id]), highest > 1);
        }
        for n in 2..=highest {
            let _ = writeln!(arpa, "\n\\{n}-grams:");
            for gram in self.counts[n - 1].keys() {
                self.write_entry(&mut arpa, model.probability(gram).log10(), gram, model.backoff(gram), n < highest);
            }
        }
        arpa.push_str("\n\\end\\\n");
        (arpa, sizes)
    }

    fn write_entry(&self, arpa: &mut String, log_prob: f64, gram: &[u32], backoff: Option<f64>, with_backoff: bool) {
        let words: Vec<&str> = gram.iter().map(|id| self.vocabulary[*id as usize].as_str()).collect();
        let _ = write!(arpa, "{log_prob:.6}\t{}", words.join(" "));
        if with_backoff {
            let _ = write!(arpa, "\t{:.6}", backoff.unwrap_or(1.0).log10());
        }
        arpa.push('\n');
    }
}

/// Interpolated Witten-Bell estimates: P(w|h) = (c(h,w) + T(h)·P(w|h')) / (c(h) + T(h)), with
/// c(h) the count of the history h, T(h) how many distinct words followed it and h' the history
/// without its first word; the unigrams are interpolated with the uniform distribution. For a
/// word never seen after h this is λ(h)·P(w|h'), λ(h) = T(h)/(c(h)+T(h)): exactly ARPA's backoff
/// weight, so the ARPA file gives the interpolated model itself.
struct WittenBell<'a> {
    counts: &'a NgramCounts,
    /// Each history's total count and number of distinct followers.
    histories: HashMap<Gram, (u64, u64)>,
    /// Words predicted (the unigram counts' sum), distinct ones, and the vocabulary they share.
    tokens: u64,
    types: u64,
    vocabulary: u64,
}

impl<'a> WittenBell<'a> {
    fn estimate(counts: &'a NgramCounts) -> WittenBell<'a> {
        let mut histories: HashMap<Gram, (u64, u64)> = HashMap::new();
        for order in &counts.counts[1..] {
            for (gram, count) in order {
                let history = histories.entry(gram[..gram.len() - 1].to_vec()).or_insert((0, 0));
                history.0 += count;
                history.1 += 1;
            }
        }
        WittenBell {
            counts,
            histories,
            tokens: counts.counts[0].values().sum(),
            types: counts.counts[0].len() as u64,
            // Every word but <s> can be predicted.
            vocabulary: counts.vocabulary.len() as u64 - 1,
        }
    }

    fn count(&self, gram: &[u32]) -> f64 {
        self.counts.counts[gram.len() - 1].get(gram).copied().unwrap_or(0) as f64
    }

    /// P(last word of `gram` | the words before it).
    fn probability(&self, gram: &[u32]) -> f64 {
        if gram.len() == 1 {
            let uniform = 1.0 / self.vocabulary as f64;
            if self.tokens == 0 {
                return uniform; // A model of a pronunciation file's words alone.
            }
            return (self.count(gram) + self.types as f64 * uniform) / (self.tokens + self.types) as f64;
        }
        let lower = self.probability(&gram[1..]);
        match self.histories.get(&gram[..gram.len() - 1]) {
            Some(&(total, followers)) => (self.count(gram) + followers as f64 * lower) / (total + followers) as f64,
            None => lower,
        }
    }

    /// λ(h) of a history that was followed by something.
    fn backoff(&self, history: &[u32]) -> Option<f64> {
        self.histories.get(history).map(|&(total, followers)| followers as f64 / (total + followers) as f64)
    }
}

/// The few adapted models (or what an engine made of them) a worker keeps, the most recently used
/// first: a batch transcription with one model loads it once, not once an utterance.
pub(crate) struct ModelCache<T> {
    entries: Vec<(ModelId, T)>,
    capacity: usize,
}

impl<T> ModelCache<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        ModelCache { entries: Vec::new(), capacity: capacity.max(1) }
    }

    /// The entry of `id`, now the most recently used.
    pub(crate) fn get(&mut self, id: ModelId) -> Option<&mut T> {
        let position = self.entries.iter().position(|(key, _)| *key == id)?;
        let entry = self.entries.remove(position);
        self.entries.insert(0, entry);
        self.entries.first_mut().map(|(_, value)| value)
    }

    /// Keeps `value` for `id`, dropping the least recently used entry when full.
    pub(crate) fn insert(&mut self, id: ModelId, value: T) -> &mut T {
        self.entries.retain(|(key, _)| *key != id);
        self.entries.insert(0, (id, value));
        self.entries.truncate(self.capacity);
        &mut self.entries[0].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dictionary() -> Dictionary {
        Dictionary::parse(
            "the DH AH\nthe(2) DH IY\ncat K AE T\nsat S AE T\non AA N\nmat M AE T\nbee B IY\noh OW\ness EH S\n\
             a AH\ndog D AO G\n",
        )
    }

    /// The ARPA entries of one order: words → (log10 probability, log10 backoff).
    fn entries(arpa: &str, order: usize) -> HashMap<String, (f64, Option<f64>)> {
        let section = format!("\\{order}-grams:");
        arpa.lines()
            .skip_while(|line| *line != section)
            .skip(1)
            .take_while(|line| !line.is_empty())
            .map(|line| {
                let fields: Vec<&str> = line.split('\t').collect();
                let number = |s: &str| s.parse::<f64>().unwrap_or_else(|e| panic!("{s}: {e}"));
                (fields[1].to_owned(), (number(fields[0]), fields.get(2).map(|b| number(b))))
            })
            .collect()
    }

    #[test]
    fn text_is_lowercased_and_stripped_of_punctuation_but_not_of_apostrophes() {
        assert_eq!(
            normalize("Hello, World! It's 'quoted' -- state-of-the-art."),
            ["hello", "world", "it's", "quoted", "state", "of", "the", "art"]
        );
        assert!(normalize(" ...\t").is_empty());
    }

    #[test]
    fn the_dictionary_keeps_first_pronunciations_and_counts_alternates() {
        let d = dictionary();
        assert_eq!(d.phones("the"), Some("DH AH"));
        assert_eq!((d.pronunciations("the"), d.pronunciations("cat"), d.pronunciations("byos")), (2, 1, 0));
    }

    #[test]
    fn every_distribution_of_the_model_sums_to_one() {
        let counts = {
            let mut c = NgramCounts::default();
            for s in ["the cat sat on the mat", "the dog sat", "a cat sat on a mat"] {
                let words = normalize(s);
                c.add_sentence(&words.iter().map(|w| Some(w.as_str())).collect::<Vec<_>>());
            }
            c
        };
        let model = WittenBell::estimate(&counts);
        let predicted: Vec<u32> = (1..counts.vocabulary.len() as u32).collect();
        let histories: Vec<Gram> = vec![vec![], vec![START_ID], vec![2], vec![START_ID, 2], vec![2, 3], vec![9, 9]];
        for history in histories {
            let total: f64 = predicted
                .iter()
                .map(|w| {
                    let mut gram = history.clone();
                    gram.push(*w);
                    model.probability(&gram)
                })
                .sum();
            assert!((total - 1.0).abs() < 1e-9, "P(·|{history:?}) sums to {total}");
        }
    }

    #[test]
    fn the_arpa_model_backs_off_to_what_it_interpolates() {
        let model =
            AdaptedModel::build("The cat sat.\nThe dog sat!\n", "", &dictionary()).unwrap_or_else(|e| panic!("{e}"));
        let arpa = model.arpa();
        assert!(
            arpa.starts_with("\\data\\\nngram 1=6\nngram 2=6\nngram 3=6\n") && arpa.ends_with("\\end\\\n"),
            "{arpa}"
        );
        let (unigrams, bigrams, trigrams) = (entries(arpa, 1), entries(arpa, 2), entries(arpa, 3));
        assert_eq!(unigrams["<s>"].0, -99.0);
        // "the" was followed by two words in two occurrences: λ = 2/4.
        assert!((unigrams["the"].1.unwrap_or(0.0) - 0.5f64.log10()).abs() < 1e-6);
        // Seen bigram: (c + T·P1) / (c(h) + T(h)) with P1(cat) = (1 + 5/5) / (8 + 5).
        let p1_cat: f64 = 2.0 / 13.0;
        assert!((bigrams["the cat"].0 - ((1.0 + 2.0 * p1_cat) / 4.0).log10()).abs() < 1e-6);
        assert!((unigrams["cat"].0 - p1_cat.log10()).abs() < 1e-6);
        assert!(trigrams.contains_key("<s> the cat") && trigrams.contains_key("dog sat </s>"));
        assert!(!bigrams.contains_key("cat dog"));
    }

    #[test]
    fn pronunciations_add_words_from_the_phones_of_their_spoken_form() {
        let model = AdaptedModel::build("byos on the mat\n", "byos\tbee oh ess\nThe\tthe\n", &dictionary())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            model.pronunciations(),
            [
                Pronunciation { entry: "byos".into(), phones: "B IY OW EH S".into() },
                Pronunciation { entry: "the(3)".into(), phones: "DH AH".into() },
            ]
        );
        assert!(entries(model.arpa(), 2).contains_key("byos on"));
        assert_eq!(model.report().pronunciations, 2);
    }

    #[test]
    fn unpronounceable_words_are_reported_and_left_out() {
        let model = AdaptedModel::build("the zork sat\nzork zork\nthe cat\n", "", &dictionary())
            .unwrap_or_else(|e| panic!("{e}"));
        let report = model.report();
        assert_eq!((report.sentences, report.words, report.unknown_occurrences), (3, 4, 3));
        assert_eq!(report.unknown_words, ["zork"]);
        assert!(!model.arpa().contains("zork"));
        // "the sat" never occurred: the unknown word between them does not join them.
        assert!(!entries(model.arpa(), 2).contains_key("the sat"));
        assert!(entries(model.arpa(), 2).contains_key("sat </s>"));
    }

    #[test]
    fn bad_data_is_refused_with_its_line() {
        let d = dictionary();
        assert_eq!(AdaptedModel::build("zork", "", &d), Err(AdaptError::NoText));
        assert_eq!(AdaptedModel::build("", "", &d), Err(AdaptError::NoText));
        assert_eq!(AdaptedModel::build("cat", "\nbyos bee oh ess", &d), Err(AdaptError::PronunciationLine { line: 2 }));
        assert_eq!(
            AdaptedModel::build("cat", "byos\tbee zed", &d),
            Err(AdaptError::UnknownSpokenWord { line: 1, word: "zed".into() })
        );
        // A pronunciation file alone is a model (of its words).
        assert!(AdaptedModel::build("", "byos\tbee oh ess", &d).is_ok());
    }

    #[test]
    fn the_cache_keeps_the_most_recently_used() {
        let mut cache = ModelCache::new(2);
        let id = |n: u8| ModelId([n; 32]);
        cache.insert(id(1), "one");
        cache.insert(id(2), "two");
        assert_eq!(cache.get(id(1)).copied(), Some("one"));
        cache.insert(id(3), "three");
        assert_eq!(cache.get(id(2)), None, "the least recently used went");
        assert_eq!((cache.get(id(1)).copied(), cache.get(id(3)).copied()), (Some("one"), Some("three")));
        *cache.insert(id(3), "again") = "replaced";
        assert_eq!(cache.get(id(3)).copied(), Some("replaced"));
    }

    #[test]
    fn a_model_survives_its_bytes_and_its_id_is_its_content() {
        let d = dictionary();
        let model =
            AdaptedModel::build("the cat sat on the mat", "byos\tbee oh ess", &d).unwrap_or_else(|e| panic!("{e}"));
        let again = AdaptedModel::from_bytes(&model.to_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again, model);
        assert_eq!(again.id(), model.id());
        let same =
            AdaptedModel::build("the cat sat on the mat", "byos\tbee oh ess", &d).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(same.id(), model.id());
        let other = AdaptedModel::build("the dog sat on the mat", "", &d).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(other.id(), model.id());
        assert_eq!(model.id().to_string().len(), 64);
        let mut bytes = model.to_bytes();
        bytes[MAGIC.len() + 3] = 9;
        assert!(matches!(AdaptedModel::from_bytes(&bytes), Err(AdaptError::Unreadable(_))));
        assert!(matches!(AdaptedModel::from_bytes(b"byos-lm"), Err(AdaptError::Unreadable(_))));
    }
}
